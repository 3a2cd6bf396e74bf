"""`wgharness bisect` with its steps made up (no lab): the bisect stored as a run of
lab bisect:LAB with its plan, steps and report; resumed after an interruption
without measuring a step twice; exit statuses; one-line usage errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import cli
from harness.codec import from_json, to_json
from harness.results.bisect import BISECT_ARTIFACT, BisectReport, StepLabel
from harness.results.records import RunStatus
from harness.results.store import Store
from harness.run import bisect as bisect_run
from harness.run.bisect import StepRequest, StepResult
from tests.support.paths import ROOT

LAB = str(ROOT / "benchmarks" / "overhead.toml")


class FakeSteps:
    """Steps measured on made-up throughputs by build label; ``stop_at``: the step
    number that is interrupted (as a signal ends its run)."""

    def __init__(self, values: dict[str, float], stop_at: int | None = None) -> None:
        self.values = values
        self.stop_at = stop_at
        self.asked: list[tuple[str, str]] = []

    def __call__(self, request: StepRequest) -> StepResult:
        self.asked.append((request.candidate.label, request.baseline.label))
        if len(self.asked) == self.stop_at:
            return StepResult(
                "r-int", RunStatus.INTERRUPTED, StepLabel.FAILED, 1, (), "interrupted in round 2"
            )
        ratio = self.values[request.candidate.label] / self.values[request.baseline.label]
        label = (
            StepLabel.REGRESSED if ratio < 0.95 else StepLabel.IMPROVED if ratio > 1.05 else StepLabel.SAME
        )
        return StepResult(f"r{len(self.asked)}", RunStatus.PASSED, label, 3)


@pytest.fixture
def builds(tmp_path: Path) -> Path:
    """Seven programs b0..b6 in a builds file."""
    lines = []
    for i in range(7):
        prog = tmp_path / f"b{i}"
        prog.write_text('#!/bin/sh\nexec wireguard-go "$@"\n')
        prog.chmod(0o755)
        lines.append(f"b{i} {prog}")
    (tmp_path / "builds.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "builds.txt"


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import harness.run.pytest_plugin as plugin

    monkeypatch.setattr(plugin, "root_problem", lambda: None)
    yield


Install = Callable[..., FakeSteps]


@pytest.fixture
def use_steps(as_root: None, monkeypatch: pytest.MonkeyPatch) -> Install:
    """Makes the bisect's steps up: ``use_steps(values, stop_at=None)`` installs them."""

    def install(values: dict[str, float], stop_at: int | None = None) -> FakeSteps:
        steps = FakeSteps(values, stop_at)
        monkeypatch.setattr(bisect_run, "run_step", steps)
        return steps

    return install


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store: SQLite, or a schema of its own in the test PostgreSQL (skipped
    without WGH_TEST_POSTGRES_URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.db'}"
        return
    from tests.support.postgres import own_schema

    with own_schema() as (url, _):
        yield url


def bisect(builds: Path, store: str, *more: str) -> int:
    return cli.main(["bisect", LAB, "--end", "a,b", "--builds", str(builds), "--max-rounds", "3", "--store", store,
                     *more])  # fmt: skip


def test_a_culprit_is_stored_and_listed(
    builds: Path,
    tmp_path: Path,
    use_steps: Install,
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = use_steps({f"b{i}": 1.0 if i < 5 else 0.8 for i in range(7)})
    store = f"sqlite:///{tmp_path / 'r.db'}"
    assert bisect(builds, store, "--out", str(tmp_path / "out")) == 1
    out = capsys.readouterr().out
    assert "bisect: FIRST BAD b5, last good b4" in out
    assert steps.asked == [("b3", "b0"), ("b4", "b0"), ("b5", "b0"), ("b5", "b6")]
    assert "**bisect: FIRST BAD b5" in (tmp_path / "out" / "summary.md").read_text()
    assert "FIRST BAD b5" in (tmp_path / "out" / "report.html").read_text()
    with Store.open(store) as s:
        [run] = s.list_runs()
        report = from_json(s.get_artifact(run.id, BISECT_ARTIFACT), BisectReport)
    assert (run.lab_name, run.build, run.status) == ("bisect:overhead", "b0..b6", RunStatus.FAILED)
    assert report.conclusion is not None and report.conclusion.first_bad == 5
    assert [s.run_id for s in report.steps] == ["r1", "r2", "r3", "r4"]
    assert cli.main(["results", "list", "--store", store]) == 0
    assert "bisect:overhead" in capsys.readouterr().out
    assert cli.main(["results", "show", run.id, "--store", store]) == 0
    assert "bisect: FIRST BAD b5" in capsys.readouterr().out


def test_no_regression_and_ambiguous_exit_statuses(
    builds: Path,
    tmp_path: Path,
    use_steps: Install,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_steps({f"b{i}": 1.0 for i in range(7)})
    assert bisect(builds, f"sqlite:///{tmp_path / 'a.db'}") == 0
    assert "bisect: NO REGRESSION IN RANGE" in capsys.readouterr().out
    two = {f"b{i}": 1.0 if i < 2 else 0.9 if i < 5 else 0.8 for i in range(7)}
    use_steps(two)
    assert bisect(builds, f"sqlite:///{tmp_path / 'b.db'}") == 4
    assert "bisect: AMBIGUOUS - build b2 is slower than the good end" in capsys.readouterr().out


def test_an_interrupted_bisect_is_resumed_without_measuring_a_step_twice(
    builds: Path,
    store_url: str,
    use_steps: Install,
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = {f"b{i}": 1.0 if i < 5 else 0.8 for i in range(7)}
    store = store_url
    use_steps(values, stop_at=3)
    assert bisect(builds, store) == 130
    assert "bisect: NOT CONCLUDED - step 3: interrupted in round 2" in capsys.readouterr().out
    with Store.open(store) as s:
        [stopped] = s.list_runs()
    assert stopped.status is RunStatus.INTERRUPTED

    # The same command again: the two measured steps are taken over.
    again = use_steps(values)
    assert bisect(builds, store) == 1
    assert again.asked == [("b5", "b0"), ("b5", "b6")]
    captured = capsys.readouterr()
    assert f"taking over 2 measured step(s) of bisect {stopped.id}" in captured.err
    assert "FIRST BAD b5" in captured.out and f"(bisect {stopped.id})" in captured.out

    # Other settings are another bisect; --resume of one with other settings is refused.
    fresh = use_steps(values)
    assert bisect(builds, store, "--min-effect", "0.1") == 1 and len(fresh.asked) == 4
    assert bisect(builds, store, "--min-effect", "0.2", "--resume", stopped.id) == 2
    assert "was of other builds, ends, lab file or settings" in capsys.readouterr().err


def test_a_broken_step_stops_the_bisect_as_infrastructure(
    builds: Path, tmp_path: Path, as_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: StepRequest) -> StepResult:
        return StepResult("rx", RunStatus.ERROR, StepLabel.FAILED, 0, (), "the lab did not come up")

    monkeypatch.setattr(bisect_run, "run_step", broken)
    store = f"sqlite:///{tmp_path / 'r.db'}"
    assert bisect(builds, store) == 3
    with Store.open(store) as s:
        [run] = s.list_runs()
        details = s.get_run(run.id)
    assert run.status is RunStatus.ERROR and "step 1: the lab did not come up (run rx)" in (run.error or "")
    assert BISECT_ARTIFACT not in details.artifacts


def test_a_step_request_is_json(builds: Path) -> None:
    from harness.codec import decode, encode
    from harness.results.bisect import Build
    from harness.results.rounds import RoundsSettings

    step = StepRequest(LAB, ("a",), Build("v1", "/x"), Build("v2", "/y"), RoundsSettings(max_rounds=5))
    assert from_json(to_json(step), StepRequest) == step and decode(encode(step), StepRequest) == step


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--builds", "{tmp}/none"], "--builds {tmp}/none: cannot read it"),
        (["--repo", "{tmp}/none", "--good", "a", "--bad", "b", "--build-cmd", "x {out}"], "no such folder"),
        (["--repo", "{tmp}", "--good", "a"], "--repo needs --bad, --build-cmd"),
        (["--builds", "{builds}", "--build-cmd", "x"], "--build-cmd: only with --repo DIR"),
        (["--builds", "{builds}", "--end", "c"], "--end c: no tunnel end of"),
        (["--builds", "{builds}"], "name the tunnel end whose build changes with --end"),
        (["--builds", "{builds}", "--end", "a", "--good", "b9"], "--good b9: no such build"),
        (["--builds", "{builds}", "--end", "a", "--max-rounds", "2"], "--max-rounds: at least 3"),
        (["--builds", "{builds}", "--end", "a", "--suite", "handshake"], "is not a suite of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    builds: Path,
    tmp_path: Path,
    as_root: None,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{builds}", str(builds)) for a in args]
    store = f"sqlite:///{tmp_path / 'r.db'}"
    assert cli.main(["bisect", LAB, *argv, "--store", store]) == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.db").exists()  # nothing stored


def test_a_git_range_skips_a_commit_that_fails_to_build(
    tmp_path: Path, use_steps: Install, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.gitrepo import commit_all, git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    shas = []
    for i in range(6):  # commit 3 breaks the build; the tunnel is slower from commit 4 on
        (repo / "Makefile").write_text("all:\n\tfalse\n" if i == 3 else "all:\n\tcp wg.sh $(OUT)\n")
        (repo / "wg.sh").write_text(f'#!/bin/sh\n# {i}\nexec wireguard-go "$@"\n')
        (repo / "wg.sh").chmod(0o755)
        shas.append(commit_all(repo, f"commit {i}"))
    steps = use_steps({sha[:12]: 1.0 if i < 4 else 0.8 for i, sha in enumerate(shas)})
    argv = ["bisect", LAB, "--end", "a", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1],
            "--build-cmd", "make OUT={out}", "--cache", str(tmp_path / "cache"), "--max-rounds", "3",
            "--store", f"sqlite:///{tmp_path / 'r.db'}"]  # fmt: skip
    assert cli.main(argv) == 4
    captured = capsys.readouterr()
    assert (
        f"bisect: {shas[3][:12]}: build failed: exit status 2: make: *** [Makefile:2: all] Error 1: skipped"
        in (captured.err)
    )
    assert f"the first bad build is one of build {shas[3][:12]} or build {shas[4][:12]}" in captured.out
    assert all(candidate != shas[3][:12] for candidate, _ in steps.asked)
    assert git(repo, "worktree", "list").count("\n") == 0

    (repo / "Makefile").write_text("all:\n\tfalse\n")
    bad = commit_all(repo, "the bad end does not build")
    assert cli.main([*argv[:9], bad, *argv[10:]]) == 3
    assert f"wgharness: the bad end {bad[:12]}: build failed: exit status 2" in capsys.readouterr().err
