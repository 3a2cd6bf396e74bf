"""A bisect's builds: a builds file and a folder read in order, and a git range
built commit by commit in worktrees that are removed after, cached by commit,
with a failing build one line and skipped."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.results.bisect import Build
from harness.run.builds import GitRange, build_commit, choose_range, git_builds, read_builds
from tests.support.gitrepo import commit_all, git


def make_repo(tmp_path: Path, n: int, broken: int | None = None) -> tuple[Path, list[str]]:
    """A repository of ``n`` commits, each a script printing its number (commit ``broken``
    holds no script: its build fails)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    shas = []
    for i in range(n):
        script = repo / "prog.sh"
        if i == broken:
            script.unlink()
        else:
            script.write_text(f"#!/bin/sh\necho {i}\n")
            script.chmod(0o755)
        shas.append(commit_all(repo, f"commit {i}"))
    return repo, shas


def test_a_builds_file_in_order(tmp_path: Path) -> None:
    (tmp_path / "wg-old").write_text("")
    (tmp_path / "list").write_text(
        "# nightly builds\n\nv1 wg-old\nv2   /opt/wg two/wireguard-go\nv3 python3 -m x\n"
    )
    builds = read_builds(str(tmp_path / "list"))
    assert builds == (
        Build("v1", str(tmp_path / "wg-old")),
        Build("v2", "/opt/wg two/wireguard-go"),
        Build("v3", "python3 -m x"),
    )
    assert [b.label for b in choose_range(builds, "v2", None, "list")] == ["v2", "v3"]


def test_a_folder_of_programs_by_name_numbers_as_numbers(tmp_path: Path) -> None:
    for name in ("wg-10", "wg-9", "wg-100", "notes.txt"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        if name != "notes.txt":
            (tmp_path / name).chmod(0o755)
    assert [b.label for b in read_builds(str(tmp_path))] == ["wg-9", "wg-10", "wg-100"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v1 /bin/true\n", "1 build(s): a bisect needs a good and a bad one"),
        ("v1 /bin/true\nv2\n", "line 2: expected LABEL PROGRAM"),
        ("v1 /bin/true\nv1 /bin/false\n", "build v1 named twice"),
    ],
)
def test_a_bad_builds_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "list").write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)):
        read_builds(str(tmp_path / "list"))


def test_a_missing_builds_file_and_bad_labels(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read it"):
        read_builds(str(tmp_path / "none"))
    builds = (Build("a", "/x"), Build("b", "/y"))
    with pytest.raises(UsageError, match="--good c: no such build"):
        choose_range(builds, "c", None, "f")
    with pytest.raises(UsageError, match="must come before"):
        choose_range(builds, "b", "a", "f")


def test_a_git_range_built_once_cached_and_cleaned(tmp_path: Path) -> None:
    repo, shas = make_repo(tmp_path, 5, broken=3)
    before = set(Path(tempfile.gettempdir()).glob("wgh-bisect-*"))
    r = GitRange(
        str(repo), shas[0][:8], "HEAD", "cp prog.sh {out} && echo {commit} >> ../built", str(tmp_path / "c")
    )
    builds = git_builds(r)
    assert [b.commit for b in builds] == shas and all(b.program is None for b in builds)
    made = build_commit(r, builds[2])
    assert made.problem is None and made.program == str(r.folder() / shas[2])
    assert subprocess.run([made.program], capture_output=True, text=True).stdout == "2\n"
    failed = build_commit(r, builds[3])
    assert failed.program is None and failed.problem is not None
    assert failed.problem.startswith("build failed: exit status 1: cp:") and "\n" not in failed.problem
    assert build_commit(r, builds[2]) == made  # from the cache: not built again
    assert build_commit(GitRange(r.repo, r.good, r.bad, r.build_cmd, r.cache), builds[2]) == made
    assert git(repo, "worktree", "list").count("\n") == 0  # only the main worktree is left
    assert sorted(os.listdir(r.folder())) == [shas[2]]  # no half-made output
    assert set(Path(tempfile.gettempdir()).glob("wgh-bisect-*")) <= before  # the worktrees' folders too


def test_a_build_that_makes_nothing_is_skipped(tmp_path: Path) -> None:
    repo, shas = make_repo(tmp_path, 2)
    r = GitRange(str(repo), shas[0], shas[1], "true {out}", str(tmp_path / "c"))
    assert build_commit(r, git_builds(r)[1]).problem == "build failed: made no executable file at {out}"


@pytest.mark.parametrize(
    ("good", "bad", "cmd", "message"),
    [
        ("nope", "HEAD", "cp prog.sh {out}", "--good nope: not a commit of"),
        ("HEAD~2", "HEAD~3", "cp prog.sh {out}", "the good commit is not an ancestor of the bad one"),
        ("HEAD", "HEAD", "cp prog.sh {out}", "the good commit is not an ancestor of the bad one"),
        ("HEAD~2", "HEAD", "cp prog.sh out", "it must name its output as {out}"),
        ("--all", "HEAD", "cp prog.sh {out}", "--good --all: not a commit"),
    ],
)
def test_a_bad_git_range_is_one_line(tmp_path: Path, good: str, bad: str, cmd: str, message: str) -> None:
    repo, _ = make_repo(tmp_path, 4)
    with pytest.raises(UsageError, match=re.escape(message)):
        git_builds(GitRange(str(repo), good, bad, cmd))


def test_no_repository(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        git_builds(GitRange(str(tmp_path / "none"), "a", "b", "{out}"))
    with pytest.raises(UsageError, match="not a git repository"):
        git_builds(GitRange(str(tmp_path), "a", "b", "{out}"))
