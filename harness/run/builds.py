"""Where a bisect's builds come from: an ordered list (a builds file or a folder of
programs), or a git range built commit by commit.

* A builds file: one build a line, ``LABEL PROGRAM`` (the label has no spaces; the
  program is the rest of the line, a path relative to the file's folder made
  absolute when it names a file there). Blank lines and lines starting with ``#``
  are skipped. The first build is the good end, the last the bad end.
* A folder: every executable regular file in it, ordered by name with numbers
  compared as numbers (``wg-9`` before ``wg-10``); the label is the file's name.
* A git range (`GitRange`): the good commit, then every commit on the way from it
  to the bad one (``git rev-list --ancestry-path``), oldest first. A commit is
  built when the bisect first needs it, in a worktree of its own (``git worktree
  add --detach``, removed after, whatever happens), by the build command with
  ``{out}`` and ``{commit}`` filled in; its output is kept in the cache folder by
  the build command's hash and the commit's, and found there by later bisects.
  A build that fails is one line and that commit is skipped; it is tried again by
  the next bisect (a failure is never cached).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import InfraError, UsageError
from harness.results.bisect import Build

BUILD_TIMEOUT = 1800.0
"""Seconds a build command may take before it counts as failed."""
DEFAULT_CACHE = "results/bisect-cache"


def read_builds(path: str) -> tuple[Build, ...]:
    """The builds a file or a folder names (see the top); UsageError, one line, on a bad one."""
    where = Path(path)
    if where.is_dir():
        found = sorted(
            (p for p in where.iterdir() if p.is_file() and os.access(p, os.X_OK)),
            key=lambda p: _natural(p.name),
        )
        builds = tuple(Build(p.name, str(p.resolve())) for p in found)
    else:
        try:
            text = where.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"--builds {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        builds = tuple(_builds_lines(path, where.parent, text))
    if len(builds) < 2:
        raise UsageError(f"--builds {path}: {len(builds)} build(s): a bisect needs a good and a bad one")
    labels = [b.label for b in builds]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise UsageError(f"--builds {path}: build {', '.join(twice)} named twice")
    return builds


def _builds_lines(path: str, folder: Path, text: str) -> Iterator[Build]:
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, _, program = line.partition(" ")
        program = program.strip()
        if not program:
            raise UsageError(f"--builds {path}: line {n}: expected LABEL PROGRAM, got {line!r}")
        if len(label) > 255:
            raise UsageError(f"--builds {path}: line {n}: a label is at most 255 characters")
        if not program.startswith("/") and (folder / program).is_file():
            program = str((folder / program).resolve())
        yield Build(label, program)


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def choose_range(
    builds: tuple[Build, ...], good: str | None, bad: str | None, where: str
) -> tuple[Build, ...]:
    """The builds from label ``good`` to label ``bad`` (None: the first, the last)."""
    labels = [b.label for b in builds]
    for option, label in (("--good", good), ("--bad", bad)):
        if label is not None and label not in labels:
            raise UsageError(f"{option} {label}: no such build in {where}")
    start = labels.index(good) if good is not None else 0
    end = labels.index(bad) if bad is not None else len(builds) - 1
    if end - start < 1:
        raise UsageError(
            f"--good {labels[start]} --bad {labels[end]}: the good build must come before the bad one"
        )
    return builds[start : end + 1]


@dataclass(frozen=True)
class GitRange:
    """Commits of a git repository, built by a command (see the top)."""

    repo: str
    good: str
    bad: str
    build_cmd: str
    cache: str = DEFAULT_CACHE

    def folder(self) -> Path:
        """Where this build command's outputs are cached, one file per commit."""
        digest = hashlib.sha256(self.build_cmd.encode()).hexdigest()[:16]
        return Path(self.cache).resolve() / digest


def _git(repo: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise UsageError("git is not installed") from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def git_builds(r: GitRange) -> tuple[Build, ...]:
    """The range's commits as builds (not built yet): the good one, then each on the
    way to the bad one. UsageError on a repository, commit or command that will not do."""
    if "{out}" not in r.build_cmd:
        raise UsageError(f"--build-cmd {r.build_cmd!r}: it must name its output as {{out}}")
    if not Path(r.repo).is_dir():
        raise UsageError(f"--repo {r.repo}: no such folder")
    top = _git(r.repo, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise UsageError(f"--repo {r.repo}: not a git repository")
    commits = []
    for option, ref in (("--good", r.good), ("--bad", r.bad)):
        done = _git(r.repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if done.returncode != 0 or not ref or ref.startswith("-"):
            raise UsageError(f"{option} {ref}: not a commit of {r.repo}")
        commits.append(done.stdout.strip())
    good, bad = commits
    if _git(r.repo, "merge-base", "--is-ancestor", good, bad).returncode != 0 or good == bad:
        raise UsageError(f"--good {r.good} --bad {r.bad}: the good commit is not an ancestor of the bad one")
    path = _git(r.repo, "rev-list", "--reverse", "--ancestry-path", f"{good}..{bad}")
    if path.returncode != 0:
        raise UsageError(f"--repo {r.repo}: git rev-list: {_first_line(path.stderr)}")
    shas = [good, *path.stdout.split()]
    return tuple(Build(sha[:12], None, sha) for sha in shas)


def build_commit(r: GitRange, build: Build, log: list[str] | None = None) -> Build:
    """``build`` (a commit of ``r``) with its program: from the cache, or built now in a
    worktree of its own; on failure, with ``problem`` (one line) and no program."""
    assert build.commit is not None
    out = r.folder() / build.commit
    if out.is_file() and os.access(out, os.X_OK):
        return replace(build, program=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    with _worktree(r.repo, build.commit) as tree:
        fd, tmp = tempfile.mkstemp(prefix=f".{build.commit[:12]}-", dir=out.parent)
        os.close(fd)
        os.unlink(tmp)  # the build command makes it
        try:
            problem = _run_build(r.build_cmd, tree, tmp, build.commit)
            if problem is None and not (os.path.isfile(tmp) and os.access(tmp, os.X_OK)):
                problem = "made no executable file at {out}"
            if problem is None:
                os.replace(tmp, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    if problem is not None:
        return replace(build, problem=f"build failed: {problem}")
    return replace(build, program=str(out))


def _run_build(command: str, cwd: str, out: str, commit: str) -> str | None:
    """Run the build command in ``cwd``; None, or why it failed (one line)."""
    line = command.replace("{out}", shlex.quote(out)).replace("{commit}", shlex.quote(commit))
    proc = subprocess.Popen(
        ["/bin/sh", "-c", line],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # the whole build (go, make...) is stopped with it
    )
    try:
        output, _ = proc.communicate(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"took more than {BUILD_TIMEOUT:.0f} s"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        return f"exit status {proc.returncode}: {_first_line(output)}"
    return None


@contextlib.contextmanager
def _worktree(repo: str, commit: str) -> Iterator[str]:
    """A detached worktree of ``commit``, removed (and pruned) when done."""
    parent = tempfile.mkdtemp(prefix="wgh-bisect-")
    tree = os.path.join(parent, commit[:12])
    try:
        done = _git(repo, "worktree", "add", "--detach", "--quiet", tree, commit)
        if done.returncode != 0:
            raise InfraError(f"--repo {repo}: git worktree add {commit[:12]}: {_first_line(done.stderr)}")
        yield tree
    finally:
        _git(repo, "worktree", "remove", "--force", tree)
        _git(repo, "worktree", "prune")
        shutil.rmtree(parent, ignore_errors=True)  # and whatever the build left beside it
