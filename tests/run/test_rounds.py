"""The rounds loop without a lab: a fake measuring function hands it each round's
samples, and the loop must stop as soon as every metric is decided, run to the
cap when one is not (reporting it unknown, with its samples), keep a decision once
made, and stop on a round that did not complete. Also: the two builds' variants
a lab and the command line name, and the usage errors of the commands."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import _rounds_request, build_parser, main
from harness.errors import EXIT_USAGE, UsageError
from harness.lab.spec import load_lab
from harness.results.records import Direction, Verdict
from harness.results.rounds import MetricId, RoundsReport, RoundsSettings, Side, Stop
from harness.results.sequential import ORDERS, Outcome, Round
from harness.run.rounds import Measured, RoundsRequest, paired_variants, run_adaptive, run_rounds
from harness.run.runner import RunOptions
from tests.support.paths import ROOT

TCP1 = MetricId("throughput", "tcp-1", "", "receiver_bps", "bit/s", Direction.HIGHER)
TCP4 = MetricId("throughput", "tcp-4", "", "receiver_bps", "bit/s", Direction.HIGHER)
# Round-to-round wobble of B against A, mean 0 (as in tests/results/test_sequential.py).
WOBBLE = (0.04, -0.03, 0.02, -0.05, 0.03, 0.0, -0.02, 0.05, -0.04, 0.0)


def fake(
    ratios: dict[MetricId, Sequence[float]], calls: list[tuple[int, str]]
) -> Callable[[int, str], Measured]:
    """Measures round k as A 700 Mbit/s twice, B ``ratio[k-1]`` times that twice."""

    def measure(k: int, order: str) -> Measured:
        calls.append((k, order))
        return Measured({m: Round((700e6, 700e6), (700e6 * r[k - 1],) * 2) for m, r in ratios.items()})

    return measure


def start(max_rounds: int = 20) -> RoundsReport:
    return RoundsReport(Side("v1"), Side("v2", "/opt/v2/wireguard-go"), RoundsSettings(max_rounds=max_rounds))


def test_stops_as_soon_as_every_metric_is_decided() -> None:
    calls: list[tuple[int, str]] = []
    heard: list[int] = []
    slower = [0.7 + w / 10 for w in WOBBLE * 2]  # 30% slower, hardly any spread
    report = run_rounds(fake({TCP1: slower}, calls), start(), lambda r: heard.append(r.rounds))
    assert report.stop is Stop.DECIDED and report.rounds < 20
    assert heard == list(range(1, report.rounds + 1)) and [k for k, _ in calls] == heard
    # A B B A, then B A A B, alternating.
    assert [o for _, o in calls] == [ORDERS[(k - 1) % 2] for k in heard]
    [m] = report.metrics
    assert (m.decision.verdict, m.label, m.decision.rounds) == (Verdict.REGRESSED, "regressed", report.rounds)
    assert len(m.rounds) == report.rounds and m.decision.change == pytest.approx(-0.3, abs=0.02)


def test_runs_to_the_cap_and_reports_unknown_with_its_samples() -> None:
    calls: list[tuple[int, str]] = []
    noisy = [1 + 3 * w for w in WOBBLE]  # 10% wobble: 6 rounds can tell nothing
    report = run_rounds(fake({TCP1: noisy}, calls), start(max_rounds=6))
    assert (report.stop, report.rounds, len(calls)) == (Stop.CAP, 6, 6)
    [m] = report.undecided
    assert (m.label, m.decision.outcome, m.decision.rounds) == ("unknown", Outcome.UNKNOWN, 6)
    assert "cap of 6 rounds" in m.decision.reason
    assert [r.b[0] / r.a[0] for r in m.rounds] == pytest.approx(noisy[:6])


def test_a_decision_is_kept_while_other_metrics_go_on() -> None:
    calls: list[tuple[int, str]] = []
    clear = [0.7 + w / 10 for w in WOBBLE * 2]
    slow_to_tell = [1 + w for w in WOBBLE * 2]  # same, with 3.4% wobble: takes longer
    report = run_rounds(fake({TCP1: clear, TCP4: slow_to_tell}, calls), start())
    assert report.stop is Stop.DECIDED
    early, late = (next(m for m in report.metrics if m.metric == x) for x in (TCP1, TCP4))
    assert early.decision.rounds < late.decision.rounds == report.rounds
    assert len(early.rounds) == report.rounds  # its samples go on, its decision does not change
    assert (early.label, late.label) == ("regressed", "same")


def test_a_round_that_did_not_complete_stops_the_rounds() -> None:
    def failing(k: int, order: str) -> Measured:
        samples = {TCP1: Round((700e6,) * 2, (690e6,) * 2)}
        return Measured(samples, "round 2: 1 test(s) failed or errored" if k == 2 else None)

    report = run_rounds(failing, start())
    assert (report.stop, report.rounds, report.note) == (
        Stop.FAILED,
        2,
        "round 2: 1 test(s) failed or errored",
    )

    def losing(k: int, order: str) -> Measured:  # the second metric's B value never came
        samples = {TCP1: Round((700e6,) * 2, (690e6,) * 2), TCP4: Round((1e9,) * 2, (1e9,) * 2)}
        return Measured(samples if k == 1 else {TCP1: samples[TCP1]})

    report = run_rounds(losing, start())
    assert report.stop is Stop.FAILED and "round 2: no value of tcp-4 receiver_bps" in report.note
    assert len(report.metrics) == 2

    report = run_rounds(lambda k, order: Measured({}), start())
    assert (report.stop, report.rounds) == (Stop.NOTHING, 1) and "receiver_bps" in report.note


def test_a_zero_is_decided_at_once() -> None:
    report = run_rounds(lambda k, o: Measured({TCP1: Round((700e6,) * 2, (0.0, 0.0))}), start())
    assert (report.stop, report.rounds, report.regressions[0].decision.change) == (Stop.DECIDED, 1, -1.0)


def _request(lab: str, baseline: str = "v1", candidate: str = "v2", **kw: str | None) -> RoundsRequest:
    return RoundsRequest(RunOptions(lab=lab, build=candidate), baseline, RoundsSettings(), **kw)  # type: ignore[arg-type]


def test_the_two_builds_variants() -> None:
    local = str(ROOT / "labs" / "local.toml")
    a, b = paired_variants(load_lab(local), _request(local, candidate_program="/usr/bin/true"))
    assert (a.build, a.program, b.build, b.program) == ("v1", None, "v2", "/usr/bin/true")
    assert a.hosts == b.hosts == ("a", "b")
    a, b = paired_variants(load_lab(local), replace(_request(local), ends=("b",)))  # a bisect's one end
    assert a.hosts == b.hosts == ("b",)
    variants = str(ROOT / "labs" / "local-variants.toml")
    a, b = paired_variants(load_lab(variants), _request(variants, "debian-b", "debian-a"))
    assert (a.name, b.name) == ("b", "a")
    for request, message in [
        (_request(variants, "v1", "debian-a"), "no variant has build 'v1'"),
        (_request(variants, "debian-a", "debian-b", baseline_program="/x"), "name the programs there"),
        (_request(local, "v1", "v1"), "both build 'v1'"),
        (_request(local, candidate_program="/nonexistent/wireguard-go"), "not an executable file"),
        (replace(_request(local), ends=("c",)), "c is no tunnel end"),
    ]:
        with pytest.raises(UsageError, match=message):
            paired_variants(load_lab(request.options.lab), request)


def test_adaptive_rounds_refuse_what_they_cannot_run(tmp_path: Path) -> None:
    local = str(ROOT / "labs" / "local.toml")
    handshake = tmp_path / "hs.toml"
    handshake.write_text((ROOT / "labs" / "local.toml").read_text() + "\n[suites.handshake]\n")
    with pytest.raises(UsageError, match="suite handshake does not run per build"):
        run_adaptive(_request(str(handshake)))
    with pytest.raises(UsageError, match="--repeat"):
        run_adaptive(RoundsRequest(RunOptions(lab=local, build="v2", repeat=4), "v1", RoundsSettings()))
    with pytest.raises(UsageError, match="--max-rounds: at least 3"):
        run_adaptive(RoundsRequest(RunOptions(lab=local, build="v2"), "v1", RoundsSettings(max_rounds=2)))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nightly", "L", "--build", "v2", "--baseline", "latest", "--out", "o", "--rounds", "adaptive"],
         "adaptive rounds run a build again: name it build:LABEL"),
        (["nightly", "L", "--build", "v2", "--baseline", "build:v1", "--out", "o", "--max-rounds", "5"],
         "--max-rounds: only with --rounds adaptive"),
        (["nightly", "L", "--build", "v2", "--baseline", "build:v1", "--out", "o", "--rounds", "adaptive",
          "--require-baseline"], "--require-baseline: not with --rounds adaptive"),
        (["compare", "build:v1", "build:v2", "--candidate-program", "/x"], "--candidate-program: only with --rerun"),
        (["compare", "build:v1", "latest", "--rerun", "L"], "CANDIDATE 'latest'"),
        (["compare", "build:v1", "build:v2", "--rerun", "L", "--impl", "kernel"], "--impl: not with --rerun"),
        (["compare", "build:v1", "build:v2", "--no-lock"], "--no-lock: only with --rerun"),
        (["compare", "build:v1", "build:v2", "--lock-timeout", "5"], "--lock-timeout: only with --rerun"),
        (["compare", "build:v1", "build:v2", "--runner", "ci-1"], "--runner: only with --rerun"),
    ],
)  # fmt: skip
def test_rounds_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["compare", "nightly"])
def test_a_rerun_takes_the_lock_and_runner_options_as_nightly_does(command: str) -> None:
    argv = (
        ["compare", "build:v1", "build:v2", "--rerun", "L"]
        if command == "compare"
        else ["nightly", "L", "--build", "v2", "--baseline", "build:v1", "--out", "o", "--rounds", "adaptive"]
    )
    args = build_parser().parse_args([*argv, "--no-lock", "--lock-timeout", "7", "--runner", "ci-1"])
    request = _rounds_request(args, "L", "v1", "v2", None)
    assert not request.options.lock.enabled and request.options.lock.timeout == 7
    assert request.options.runner == "ci-1"
    default = _rounds_request(build_parser().parse_args(argv), "L", "v1", "v2", None)
    assert default.options.lock.enabled and default.options.runner is None
