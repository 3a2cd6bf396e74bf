"""Adaptive rounds as records: the samples of a round read from measurements,
the exit status, the stored JSON read back, and what the reports say (progress
line, verdict, table, Markdown, JUnit, HTML)."""

from __future__ import annotations

import math
from xml.etree import ElementTree as ET

from harness.codec import from_json, to_json
from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from harness.results.records import Direction, Measurement, RunStatus
from harness.results.render.rounds import (
    html_page,
    junit_xml,
    progress_line,
    render_markdown,
    rounds_text,
    verdict_line,
)
from harness.results.rounds import (
    MetricId,
    MetricRounds,
    RoundsReport,
    RoundsSettings,
    Side,
    Stop,
    exit_status,
    round_samples,
)
from harness.results.sequential import Round, decide

TCP1 = MetricId("throughput", "tcp-1", "", "receiver_bps", "bit/s", Direction.HIGHER)
BIDIR = MetricId("throughput", "tcp-bidir", "reverse", "receiver_bps", "bit/s", Direction.HIGHER)


def metric(mid: MetricId, ratios: list[float], max_rounds: int = 10) -> MetricRounds:
    rounds = tuple(Round((700e6, 710e6), (700e6 * r, 710e6 * r)) for r in ratios)
    return MetricRounds(mid, rounds, decide(rounds, mid.direction, max_rounds=max_rounds))


def report(*metrics: MetricRounds, stop: Stop | None = Stop.DECIDED, note: str = "") -> RoundsReport:
    n = max((len(m.rounds) for m in metrics), default=0)
    return RoundsReport(
        Side("v1"), Side("v2", "/opt/wg"), RoundsSettings(max_rounds=10), n, metrics, stop, note
    )


def test_round_samples_pair_the_builds_of_a_round() -> None:
    def m(rep: int, build: str | None, value: float, name: str = "receiver_bps") -> Measurement:
        return Measurement("throughput", "tcp-1", rep, name, value, "bit/s", Direction.HIGHER, build=build)

    values = [m(3, "v1", 1.0), m(3, "v2", 2.0), m(4, "v2", 3.0), m(4, "v1", 4.0), m(5, "v1", 9.0),
              m(3, "v1", 7.0, "sender_bps"), m(4, None, 8.0)]  # fmt: skip
    counters = Measurement("counters", "a", 3, "wg_rx_bytes", 5.0, "B", Direction.NONE, build="v1")
    assert round_samples([*values, counters], 2, "v1", "v2", ("receiver_bps", "wg_rx_bytes")) == {
        TCP1: Round((1.0, 4.0), (2.0, 3.0))
    }
    assert round_samples(values, 1, "v1", "v2", ("receiver_bps",)) == {}
    assert round_samples(values, 3, "v1", "v2", ("receiver_bps",)) == {}  # only A's value


def test_exit_status() -> None:
    regressed = report(metric(TCP1, [0.7, 0.7, 0.7]))
    same = report(metric(TCP1, [1.0, 1.0, 1.0]))
    unknown = report(metric(TCP1, [0.9, 1.1, 0.95]), stop=Stop.CAP)
    assert exit_status(regressed, RunStatus.PASSED) == EXIT_FAILED
    assert exit_status(same, RunStatus.PASSED) == EXIT_OK
    assert exit_status(unknown, RunStatus.PASSED) == EXIT_OK  # loud, not a failure
    assert exit_status(same, RunStatus.FAILED) == EXIT_FAILED
    assert exit_status(regressed, RunStatus.ERROR) == EXIT_INFRA
    assert exit_status(None, RunStatus.PASSED) == EXIT_INFRA
    assert exit_status(same, RunStatus.INTERRUPTED) == EXIT_INTERRUPTED
    assert exit_status(report(stop=Stop.NOTHING), RunStatus.PASSED) == EXIT_USAGE


def test_the_stored_report_reads_back() -> None:
    r = report(metric(TCP1, [0.7, 0.7, 0.7]), metric(BIDIR, [1.0]), stop=Stop.INTERRUPTED, note="Ctrl-C")
    back = from_json(to_json(r, indent=1), RoundsReport)
    assert back.metrics[0] == r.metrics[0] and back.stop is Stop.INTERRUPTED
    # Before the first look the interval is NaN: kept as such.
    assert math.isnan(back.metrics[1].decision.interval[0]) and back.metrics[1].metric == BIDIR


def test_progress_line_names_what_is_undecided() -> None:
    r = report(metric(TCP1, [0.7, 0.7, 0.7]), metric(BIDIR, [0.97, 1.02, 0.93]), stop=None)
    line = progress_line(r)
    assert line.startswith(
        "round 3/10: 1 of 2 metrics decided; undecided: tcp-bidir/reverse receiver_bps (-2.7% ["
    )
    assert progress_line(report(metric(TCP1, [0.9]), stop=None)).endswith("(-10.0% after 1 round(s))")
    done = progress_line(report(metric(TCP1, [0.7, 0.7, 0.7])))
    assert done == "round 3/10: 1 of 1 metrics decided (1 regressed)"


def test_verdicts_and_reports() -> None:
    cap = report(metric(TCP1, [1.0, 1.0, 1.0]), metric(BIDIR, [0.9, 1.1, 0.95]), stop=Stop.CAP)
    line = verdict_line(cap, RunStatus.PASSED)
    assert line.startswith(
        "verdict: OK, BUT 1 UNKNOWN after 3 rounds (cap 10) - tcp-bidir/reverse receiver_bps"
    )
    text = rounds_text(cap)
    assert "baseline  (A): v1 (the lab's implementation)" in text and "candidate (B): v2 (/opt/wg)" in text
    assert "still unknown, throughput/tcp-bidir/reverse/receiver_bps:" in text
    assert "round 2: A 700.0 Mbit/s, 710.0 Mbit/s | B 770.0 Mbit/s, 781.0 Mbit/s | +10.0%" in text
    md = render_markdown(cap, RunStatus.PASSED)
    assert "| throughput/tcp-1/receiver_bps | same |" in md and "## Still unknown" in md
    suite = ET.fromstring(junit_xml(cap, RunStatus.PASSED))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "1")
    assert "UNKNOWN" in (suite.find("testcase/skipped").get("message") or "")  # type: ignore[union-attr]
    page = html_page("t", cap, RunStatus.PASSED)
    assert page.count("<svg") == 2 and "#c80" in page

    bad = report(metric(TCP1, [0.7, 0.7, 0.7]))
    assert verdict_line(bad, RunStatus.PASSED).startswith(
        "verdict: REGRESSION - tcp-1 receiver_bps -30.0% after 3"
    )
    assert ET.fromstring(junit_xml(bad, RunStatus.PASSED)).get("failures") == "1"
    failed = report(metric(TCP1, [1.0]), stop=Stop.FAILED, note="round 1: 2 test(s) failed or errored")
    assert verdict_line(failed, RunStatus.FAILED) == "verdict: FAILED - round 1: 2 test(s) failed or errored"
    broke = ET.fromstring(junit_xml(failed, RunStatus.ERROR, ["run x: lab could not be brought up"]))
    assert broke.get("errors") == "1"
    assert verdict_line(None, RunStatus.ERROR).startswith("verdict: INFRASTRUCTURE")
    assert "#c33" in html_page("t", None, RunStatus.ERROR)
    assert verdict_line(failed, RunStatus.INTERRUPTED).startswith("verdict: INTERRUPTED after 1 round(s)")
