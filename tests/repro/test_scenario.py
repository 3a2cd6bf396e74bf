"""Scenario files: the shipped ones load, every mistake is one line naming the
file and the field, and expectations turn observations into verdicts with
the measured value (pure: observations and packets made here)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.codec import decode, encode
from harness.errors import LabError, UsageError
from harness.impl import ImplName
from harness.parsers.pcap import UdpPacket
from harness.repro.expect import ExpectationResult, ExpectationStatus, evaluate
from harness.repro.run import compare, verdict_lines
from harness.repro.scenario import Scenario, load_scenario, parse_scenario
from harness.repro.timeline import Event, IperfLog, Observations, parse_ping
from harness.targets import HostKind
from tests.support.paths import ROOT

SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
SHIPPED = [p for p in SCENARIOS if p.name != "lab.toml"]

BASE = """
[scenario]
name = "t"
subject = "b"
lab = "{lab}"

[[steps]]
do = "ping"
name = "p"
from = "b"

[[steps]]
id = "nap"
do = "pause"
host = "b"
seconds = 3

[[steps]]
do = "stop"
name = "p"

[[expect]]
what = "resumes"
traffic = "p"
after = "nap"
within = 2
"""


def scenario_text(**replace: str) -> str:
    text = BASE.replace("{lab}", str(ROOT / "scenarios" / "lab.toml"))
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_every_shipped_scenario_loads() -> None:
    assert len(SHIPPED) >= 7
    for path in SHIPPED:
        s = load_scenario(str(path))
        assert s.expectations, path
        assert s.lab.hosts[s.reference].kind is HostKind.NETNS
        assert s.story


def test_impl_override_swaps_the_subject_only() -> None:
    s = load_scenario(str(ROOT / "scenarios" / "peer-restart.toml"))
    lab = s.lab_for("pyref")
    assert lab.end_for("b").impl == "pyref" and lab.end_for("a").impl == "pyref"
    kernel = s.lab_for("kernel")
    assert kernel.hosts["b"].kind is HostKind.VM and kernel.end_for("b").impl is ImplName.KERNEL
    assert kernel.hosts["a"].kind is HostKind.NETNS
    with pytest.raises(UsageError, match="--impl: 'nope'"):
        s.lab_for("nope")


def test_rate_impairment_goes_on_the_link() -> None:
    s = load_scenario(str(ROOT / "scenarios" / "wifi-like.toml"))
    assert s.lab_for(None).links[0].rate_bps == 50_000_000
    assert s.impairments.impairment.active


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ('do = "pause"', 'do = "snooze"', "steps[1].do", "must be one of"),
        ('host = "b"\nseconds = 3', 'host = "z"\nseconds = 3', "steps[1].host", "must be one of"),
        ("seconds = 3", "seconds = -1", "steps[1].seconds", "greater than 0"),
        ('after = "nap"', 'after = "nope"', "expect[0].after", "must be one of"),
        ('traffic = "p"\nafter', 'traffic = "q"\nafter', "expect[0].traffic", "not ping traffic"),
        ('what = "resumes"', 'what = "resumes"\ncolour = 1', "expect[0].colour", "unknown field"),
        ('subject = "b"', 'subject = "c"', "scenario.subject", "must be one of"),
        ('id = "nap"', 'id = "Nap!"', "steps[1].id", "lower-case"),
        ('name = "p"\nfrom', 'name = "p"\nfrom = "a"\nto = "a"\nx', "steps[0].to", "other tunnel end"),
        ('do = "stop"\nname = "p"', 'do = "stop"\nname = "q"', "steps[2].name", "not traffic started"),
    ],
)
def test_mistakes_name_file_and_field(old: str, new: str, field: str, words: str) -> None:
    text = scenario_text()
    assert old in text, old
    with pytest.raises(LabError) as info:
        parse_scenario(text.replace(old, new, 1), "s.toml")
    assert info.value.file == "s.toml"
    assert info.value.field == field, str(info.value)
    assert words in info.value.reason


def test_lab_tables_and_lab_path_exclude_each_other() -> None:
    with pytest.raises(LabError, match="hosts: the lab is named by scenario.lab"):
        parse_scenario(scenario_text() + '\n[hosts.a]\ntarget = "netns"\n', "s.toml")
    with pytest.raises(LabError, match="scenario.lab: required"):
        parse_scenario(scenario_text().replace(f'lab = "{ROOT}/scenarios/lab.toml"', ""), "s.toml")


def test_check_cli_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(scenario_text().replace("seconds = 3", 'seconds = "x"'))
    done = subprocess.run([sys.executable, "-m", "harness", "repro", str(bad), "--check"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "steps[1].seconds: must be a number" in done.stderr
    ok = subprocess.run([sys.executable, "-m", "harness", "repro", str(SHIPPED[0]), "--check"],
                        capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr


# -- expectations -------------------------------------------------------------------


def ping_text(replies: list[tuple[int, float]], sent: int) -> str:
    lines = [f"[{t:.6f}] 64 bytes from 198.19.0.1: icmp_seq={seq} ttl=64 time=300 ms" for seq, t in replies]
    answered = {seq for seq, _ in replies}
    # ping -O reports a request unanswered as it sends the next one (interval 1 s, request n at 999 + n).
    lines += [
        f"[{1000 + n:.6f}] no answer yet for icmp_seq={n}" for n in range(1, sent + 1) if n not in answered
    ]
    return "\n".join(lines)


def observations() -> Observations:
    obs = Observations(started=1000.0, ended=1030.0)
    obs.events = [Event("ping-1", "ping", 1000, 1000), Event("nap", "pause", 1002, 1012)]
    obs.addresses = {"a": {"198.18.0.1"}, "b": {"198.18.0.2"}}
    return obs


def test_resume_verdict_carries_the_measured_delay() -> None:
    s = parse_scenario(scenario_text(), "s.toml")
    obs = observations()
    # Replies every second until the pause, then the first one 3.5 s after it ended.
    replies = [(n, 1000.0 + n) for n in range(1, 3)] + [(n, 1000.0 + n) for n in range(16, 20)]
    obs.pings["p"] = parse_ping("p", ping_text(replies, 20), 1000.0, 1020.0, 1.0)
    (v,) = evaluate(s, obs, [])
    assert v.status is ExpectationStatus.FAIL
    assert v.measured == pytest.approx(4.0)
    assert "4.00s after nap" in v.message
    fast = [(n, 1000.0 + n) for n in range(1, 3)] + [(n, 1000.0 + n + 0.5) for n in range(12, 20)]
    obs.pings["p"] = parse_ping("p", ping_text(fast, 20), 1000.0, 1020.0, 1.0)
    (v,) = evaluate(s, obs, [])
    assert v.status is ExpectationStatus.PASS and v.measured == pytest.approx(0.5)


def test_ping_loss_counts_unanswered_requests() -> None:
    log = parse_ping("p", ping_text([(1, 1001.0), (2, 1002.0), (4, 1004.0)], 5), 1000.0, 1006.0, 1.0)
    assert log.sent == 5
    assert log.loss_pct() == pytest.approx(40.0)
    assert log.loss_pct(1000.0, 1001.5) == pytest.approx(0.0)  # seq 1 and 2, sent at 1000 and 1001
    assert log.loss_pct(1001.5, 1003.5) == pytest.approx(50.0)  # seq 3 lost, seq 4 answered
    assert log.loss_pct(2000.0, 3000.0) is None


def wg_initiation() -> bytes:
    return bytes([1, 0, 0, 0]) + bytes(144)


def wg_response() -> bytes:
    return bytes([2, 0, 0, 0]) + bytes(88)


def test_packet_expectations() -> None:
    text = scenario_text().replace(
        'what = "resumes"\ntraffic = "p"\nafter = "nap"\nwithin = 2',
        'what = "handshakes"\nfrom = "b"\nat_most = 1\n\n[[expect]]\nwhat = "no_packets"\nfrom = "b"\n'
        'after = "nap"\nedge = "start"\nuntil = "stop-3"\n\n[[expect]]\nwhat = "handshake"\nafter = "nap"\nwithin = 2',
    )
    s = parse_scenario(text, "s.toml")
    obs = observations()
    obs.events.append(Event("stop-3", "stop", 1020, 1020))
    packets = [
        UdpPacket(1001.0, "198.18.0.2", "198.18.0.1", 51821, 51820, wg_initiation()),
        UdpPacket(1001.1, "198.18.0.1", "198.18.0.2", 51820, 51821, wg_response()),
        UdpPacket(1013.0, "198.18.0.2", "198.18.0.1", 51821, 51820, wg_initiation()),
        UdpPacket(1013.5, "198.18.0.1", "198.18.0.2", 51820, 51821, wg_response()),
    ]
    handshakes, quiet, handshake = evaluate(s, obs, packets)
    assert handshakes.status is ExpectationStatus.FAIL and handshakes.measured == 2
    # The initiation at 1013 is inside 1002..1020.
    assert quiet.status is ExpectationStatus.FAIL and quiet.measured == 1
    assert handshake.status is ExpectationStatus.PASS and handshake.measured == pytest.approx(1.5)


def counters_and_throughput() -> Scenario:
    """A scenario expecting equal counters and one flow at half another's rate."""
    text = scenario_text().replace(
        'what = "resumes"\ntraffic = "p"\nafter = "nap"\nwithin = 2',
        'what = "counters_equal"\n\n[[expect]]\nwhat = "throughput"\ntraffic = "t"\nat_least_ratio = 0.5\nof = "q"',
    ).replace('[[steps]]\nid = "nap"', '[[steps]]\ndo = "iperf3"\nname = "q"\nfrom = "b"\nseconds = 1\n\n'
              '[[steps]]\ndo = "iperf3"\nname = "t"\nfrom = "b"\nseconds = 1\n\n[[steps]]\nid = "nap"')  # fmt: skip
    return parse_scenario(text, "s.toml")


def test_throughput_and_counters() -> None:
    s = counters_and_throughput()
    obs = observations()
    obs.counters = {"a": (100, 200), "b": (200, 90)}
    obs.iperfs = {"q": IperfLog("q", 0, 1, 100e6, None), "t": IperfLog("t", 1, 2, 40e6, None)}
    counters, ratio = evaluate(s, obs, [])
    assert counters.status is ExpectationStatus.FAIL and counters.measured == 10
    assert ratio.status is ExpectationStatus.FAIL and "0.40 x q" in ratio.message
    obs.counters = {"a": (100, 200)}
    obs.iperfs["t"] = IperfLog("t", 1, 2, None, "the server went away")
    counters, ratio = evaluate(s, obs, [])
    assert counters.status is ExpectationStatus.UNMEASURED
    assert ratio.status is ExpectationStatus.FAIL and "server went away" in ratio.message


def test_results_round_trip_through_a_bundles_verdicts_json() -> None:
    """A result goes into verdicts.json with its status as the word (pass, fail,
    unmeasured) and comes back as the member; its lines and the comparison of a
    bundle's results with a run's print those words."""
    obs = observations()
    obs.counters = {"a": (100, 200), "b": (200, 90)}
    obs.iperfs = {"q": IperfLog("q", 0, 1, 100e6, None), "t": IperfLog("t", 1, 2, 60e6, None)}
    results = evaluate(counters_and_throughput(), obs, [])
    stored = json.loads(json.dumps({"verdicts": [encode(r) for r in results]}))["verdicts"]
    assert [v["status"] for v in stored] == ["fail", "pass"]
    back = [decode(v, ExpectationResult) for v in stored]
    assert back == results and all(type(r.status) is ExpectationStatus for r in back)
    unmeasured = replace(back[0], status=ExpectationStatus.UNMEASURED, measured=None)
    lines = verdict_lines([*back, unmeasured])
    assert [line.split()[0] for line in lines] == ["FAIL", "PASS", "UNMEASURED"]
    table, same = compare(back, [unmeasured, back[1]])
    assert not same and "fail (10 B)" in table and "unmeasured (-)" in table and "CHANGED" in table
    with pytest.raises(ValueError, match="'passed'"):
        decode({**stored[0], "status": "passed"}, ExpectationResult)


def test_a_bundle_whose_verdicts_do_not_read_is_one_line_and_exit_2(
    tmp_path: Path, nothing_runs: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main
    from harness.repro.bundle import FORMAT, Manifest, write_bundle

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the scenario ran")

    monkeypatch.setattr("harness.repro.run.run_scenario", refuse)
    bundle = str(tmp_path / "b.tar.gz")
    manifest = Manifest(FORMAT, "t", None, "b", "a", "0123456789ab", "failed", "2026-01-01T00:00:00+00:00",
                        "0", "wgharness repro t.toml")  # fmt: skip
    verdict = {"id": "e1", "what": "resumes", "description": "", "status": "passed", "measured": None,
               "unit": "s", "message": ""}  # fmt: skip
    files = {
        "scenario.toml": scenario_text().encode(),
        "lab.toml": (ROOT / "scenarios" / "lab.toml").read_bytes(),
        "verdicts.json": json.dumps({"verdicts": [verdict]}).encode(),
    }
    write_bundle(bundle, manifest, files)
    assert main(["repro", bundle]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bundle}: verdicts.json: " in err and "'passed'" in err


def test_ping_times_follow_the_senders_clock() -> None:
    """A sender that was itself paused sent nothing meanwhile: its requests are placed by
    its own timestamps, not by the interval; a guest's clock offset is taken off."""
    # Requests 1-3 at 1000-1002, then the sender sleeps 20 s; 4-6 at 1023-1025, 5 lost.
    text = ping_text([(1, 1000.3), (2, 1001.3), (3, 1002.3), (4, 1023.3), (6, 1025.3)], 6)
    text = text.replace(
        "[1005.000000] no answer yet for icmp_seq=5", "[1025.000000] no answer yet for icmp_seq=5"
    )
    log = parse_ping("p", text, 1000.0, 1026.0, 1.0)
    assert log.loss_pct(1010.0, 1030.0) == pytest.approx(100 / 3)
    assert log.loss_pct(1003.0, 1022.0) is None
    shifted = parse_ping("p", text, 1000.0, 1026.0, 1.0, offset=10.0)
    assert shifted.replies[0][2] == pytest.approx(990.3)
    assert shifted.loss_pct(1000.0, 1020.0) == pytest.approx(100 / 3)


def test_an_iperf3_step_on_a_tunnel_port_is_refused_by_the_check() -> None:
    text = scenario_text().replace('do = "ping"\nname = "p"', 'do = "iperf3"\nname = "t"\nfrom = "b"\nseconds = 2\nport = 51821\n'
                                   '[[steps]]\ndo = "ping"\nname = "p"')  # fmt: skip
    with pytest.raises(LabError, match=r"^s.toml: steps\[0\].port: 51821 is tunnel.ends\[1\].listen_port"):
        parse_scenario(text, "s.toml")
