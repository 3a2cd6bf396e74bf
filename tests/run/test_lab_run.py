"""The whole spine for real, as root: `wgharness run` on the local lab with
wireguard-go and iperf3, stored and shown, and nothing left behind after a
pass, an infrastructure failure, or Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.parsers.facts import SOCKET_BUFFERS
from harness.results.fingerprint import fingerprint
from harness.results.store import Store
from tests.support.leftovers import stop
from tests.support.paths import ROOT

WGH = [sys.executable, "-m", "harness"]
LOCAL = str(ROOT / "labs" / "local.toml")


def wgh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WGH, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def test_local_lab_run_is_measured_stored_and_shown(no_leftovers: None, store_url: str) -> None:
    done = wgh("run", LOCAL, "--duration", "2", "--build", "ci-test", "--store", store_url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_id = re.search(r"run ([0-9a-f]{12})", done.stderr).group(1)  # type: ignore[union-attr]

    store = Store.open(store_url)
    details = store.get_run(run_id)
    assert details.summary.status == "passed" and details.run.build == "ci-test"
    cases = {m.case for m in details.measurements if m.suite == "throughput"}
    assert cases == {"tcp-1", "tcp-4", "tcp-reverse", "tcp-bidir", "udp-300m"}
    recv = [m for m in details.measurements if m.metric == "receiver_bps"]
    # One direction per flow, two for the bidirectional one; all carried traffic.
    assert len(recv) == 6 and all(m.value > 1e6 for m in recv)
    assert {m.flow_direction for m in recv if m.case == "tcp-bidir"} == {"forward", "reverse"}
    assert all(m.series for m in recv), "per-interval series kept"
    udp = [m for m in details.measurements if m.case == "udp-300m"]
    assert {"lost_percent", "jitter_ms"} <= {m.metric for m in udp}
    hosts = {h.host: h for h in details.hosts}
    assert hosts["a"].impl == "wireguard-go" and hosts["a"].impl_version
    assert hosts["b"].facts["kernel"] and hosts["b"].facts["tools"]["iperf3"]
    assert "iperf3-tcp-1-r1.json" in details.artifacts
    dump = store.get_artifact(run_id, "wg-dump-a.txt").decode()
    assert "(hidden)" in dump
    counters = {(m.case, m.metric): m.value for m in details.measurements if m.suite == "counters"}
    # The tunnel carried the iperf3 traffic: each end received at least what was measured.
    assert counters["a", "wg_rx_bytes"] > 1e6 and counters["b", "wg_rx_bytes"] > 1e6
    frame = store.measurements_frame([run_id])
    assert set(frame["case"]) >= cases and (frame["impl_a"] == "wireguard-go").all()
    store.close()

    # The summary table ended the run; list and show read the same store.
    assert "recv Mbit/s" in done.stdout and "tcp-bidir" in done.stdout
    listed = wgh("results", "list", "--store", store_url)
    assert listed.returncode == 0 and run_id in listed.stdout and "passed" in listed.stdout
    shown = wgh("results", "show", run_id[:6], "--store", store_url)
    assert shown.returncode == 0 and "udp-300m" in shown.stdout and "wireguard-go" in shown.stdout


def test_a_run_stores_its_runner_and_fingerprint(no_leftovers: None, store_url: str) -> None:
    """`--runner`, each host's TCP congestion control, socket buffer limits and its lab
    link's offloads (asked once the veth exists) are stored with the run, and each TCP
    measurement carries the congestion control iperf3 reported for its ends."""
    done = wgh("run", LOCAL, "--duration", "1", "--repeat", "1", "--runner", "lab-test", "--store", store_url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with Store.open(store_url) as store:
        [run] = store.list_runs()
        details = store.get_run(run.id)
    assert details.run.runner == "lab-test"
    available = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
    facts = {h.host: h.facts for h in details.hosts}
    for host, side in (("a", "a"), ("b", "b")):
        f = facts[host]
        assert f["tcp_congestion_control"] in available
        assert set(f["socket_buffers"]) == set(SOCKET_BUFFERS) and all(f["socket_buffers"].values())
        assert re.fullmatch(rf"wgh[0-9a-z]+l0{side}", f["link_interface"])  # the veth end of links[0]
        assert {"generic-segmentation-offload", "generic-receive-offload", "tcp-segmentation-offload",
                "tx-checksumming"} <= set(f["link_offloads"])  # fmt: skip
    tcp = [m for m in details.measurements if m.metric == "receiver_bps" and not m.case.startswith("udp")]
    assert tcp and all(m.params["sender_tcp_congestion"] in available for m in tcp)
    ends = {"forward": ("a", "b"), "reverse": ("b", "a")}  # the client is a
    for m in tcp:
        sender, receiver = ends["reverse" if m.case == "tcp-reverse" else m.flow_direction or "forward"]
        assert m.params["sender_tcp_congestion"] == facts[sender]["tcp_congestion_control"]
        assert m.params["receiver_tcp_congestion"] == facts[receiver]["tcp_congestion_control"]
    udp = [m for m in details.measurements if m.case.startswith("udp")]
    assert udp and not any("sender_tcp_congestion" in m.params for m in udp)
    fields = dict(fingerprint(details).fields)
    assert fields["runner"] == "lab-test"
    assert fields["host a: tcp congestion control"] == facts["a"]["tcp_congestion_control"]
    assert "host b: offload generic-receive-offload" in fields
    shown = wgh("results", "show", run.id, "--store", store_url)
    assert f"fingerprint {fingerprint(details).label}:" in shown.stdout
    assert "  host a: net.core.rmem_max: " in shown.stdout


def test_pytest_suites_with_lab_option_stores_the_run(no_leftovers: None, store_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "suites", "--lab", LOCAL, "--lab-store", store_url,
         "--lab-duration", "1", "-k", "tcp-1", "-p", "no:cacheprovider", "-q"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = Store.open(store_url)
    [run] = store.list_runs()
    assert run.status == "passed"
    details = store.get_run(run.id)
    assert {m.case for m in details.measurements if m.suite == "throughput"} == {"tcp-1"}
    store.close()


def _broken_lab(tmp_path: Path) -> Path:
    """The local lab, but both endpoints are addresses nobody has: no handshake can happen."""
    text = (ROOT / "labs" / "local.toml").read_text()
    for n in (1, 2):
        text = text.replace(
            f'address = "198.19.0.{n}/24"',
            f'address = "198.19.0.{n}/24"\nendpoint = "198.18.0.9{n}"',
        )
    assert "handshake_timeout = 10" in text
    text = text.replace("handshake_timeout = 10", "handshake_timeout = 2")
    path = tmp_path / "broken.toml"
    path.write_text(text)
    return path


def test_infrastructure_failure_is_stored_as_error_and_cleaned(
    no_leftovers: None, store_url: str, tmp_path: Path
) -> None:
    lab = _broken_lab(tmp_path)
    assert "endpoint" in lab.read_text()
    done = wgh("run", str(lab), "--duration", "1", "--store", store_url)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    store = Store.open(store_url)
    [run] = store.list_runs()
    assert run.status == "error" and "no traffic through it" in (run.error or "")
    store.close()


def _default_signals() -> None:
    """Run in the child before exec: SIGINT and SIGTERM at their default disposition,
    unblocked, whatever this process has (started as a background job, it ignores SIGINT,
    and so would a harness it starts: a Python started with SIGINT ignored never raises
    KeyboardInterrupt)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def test_ctrl_c_mid_run_tears_down_and_stores_interrupted(no_leftovers: None, store_url: str) -> None:
    proc = subprocess.Popen(
        [*WGH, "run", LOCAL, "--duration", "30", "--store", store_url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = ""
        deadline = time.monotonic() + 60
        while "handshake done" not in seen and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "handshake done" in seen, seen
        time.sleep(1.5)  # inside the first iperf3 flow
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc, 60)  # if the test failed half-way: SIGTERM, which the harness takes as Ctrl-C
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    store = Store.open(store_url)
    [run] = store.list_runs()
    assert run.status == "interrupted"
    store.close()


def test_bad_lab_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (ROOT / "labs" / "local.toml").read_text().replace('target = "netns"', 'target = "nets"', 1)
    )
    done = wgh("run", str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "hosts.a.target" in lines[0]
    assert "Traceback" not in done.stderr


def test_tbf_rate_limit_on_the_link_caps_throughput(
    no_leftovers: None, store_url: str, tmp_path: Path
) -> None:
    text = (ROOT / "benchmarks" / "overhead.toml").read_text()
    text = text.replace('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nrate = "100mbit"')
    lab = tmp_path / "limited.toml"
    lab.write_text(text)
    done = wgh("run", str(lab), "--duration", "3", "--store", store_url)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    store = Store.open(store_url)
    [recv] = [m.value for m in store.get_run("latest").measurements if m.metric == "receiver_bps"]
    store.close()
    # The tunnel's payload rides under the 100 Mbit/s link with WireGuard's overhead on top.
    assert 50e6 < recv < 100e6, recv


def test_variants_are_interleaved_abba_and_compared(no_leftovers: None, store_url: str) -> None:
    import json

    done = wgh(
        "run",
        str(ROOT / "labs" / "local-variants.toml"),
        "--duration",
        "1",
        "--repeat",
        "2",
        "--store",
        store_url,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    store = Store.open(store_url)
    run = store.get_run("latest")
    outcomes = json.loads(store.get_artifact(run.run.id, "outcomes.json"))
    # The logs of the tunnels a variant replaced are kept too.
    assert any(name.startswith(("a-wireguard-go", "b-wireguard-go")) for name in run.artifacts), run.artifacts
    store.close()
    order = [o["test_id"].rsplit("[", 1)[1].rstrip("]") for o in outcomes]
    assert order == ["tcp-1-r1-a", "tcp-1-r1-b", "tcp-1-r2-b", "tcp-1-r2-a"]
    builds = [m.build for m in run.measurements if m.metric == "receiver_bps"]
    assert builds == ["debian-a", "debian-b", "debian-b", "debian-a"]
    compared = wgh("compare", "build:debian-a", "build:debian-b", "--store", store_url)
    assert compared.returncode == 0 and "2/2" in compared.stdout, compared.stdout + compared.stderr


def test_pyref_lab_races_every_pairing_through_iperf3(no_leftovers: None, store_url: str) -> None:
    """labs/pyref.toml: pyref and wireguard-go in all four pairings, iperf3 TCP both ways."""
    done = wgh("run", str(ROOT / "labs" / "pyref.toml"), "--duration", "1", "--store", store_url)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    store = Store.open(store_url)
    run = store.get_run("latest")
    store.close()
    recv = [m for m in run.measurements if m.metric == "receiver_bps"]
    seen = {(m.build, m.case): m for m in recv}
    pairings = {"go-go", "pyref-go", "go-pyref", "pyref-pyref"}
    assert {b for b, _ in seen} == pairings and {c for _, c in seen} == {"tcp-1", "tcp-reverse"}
    assert all(m.value > 1e6 for m in recv), [(m.build, m.case, m.value) for m in recv]
    # Each measurement names what ran on each end.
    m = seen["pyref-go", "tcp-1"]
    assert m.params["impl_a"].startswith("pyref ") and m.params["impl_b"].startswith("wireguard-go ")
    assert seen["pyref-pyref", "tcp-reverse"].params["impl_b"].startswith("pyref ")
    assert "pyref-pyref: a=pyref" in done.stdout


def _short_handshake_lab(tmp_path: Path) -> Path:
    """labs/handshake.toml with every count and duration cut down for CI."""
    text = (ROOT / "labs" / "handshake.toml").read_text()
    for old, new in (
        ("latency_count = 200", "latency_count = 20"),
        ("rate_peers = 2000", "rate_peers = 100"),
        ("rate_duration = 3", "rate_duration = 1"),
        ("load_rates = [128, 512, 2048, 8192, 16384]", "load_rates = [64, 1024]"),
        ("load_step = 1.0", "load_step = 0.5"),
        ("flood_duration = 5", "flood_duration = 2"),
        ("keepalive_interval = 2", "keepalive_interval = 1"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "handshake-short.toml"
    path.write_text(text)
    return path


def test_handshake_and_conformance_suites_against_both_implementations(
    no_leftovers: None, store_url: str, tmp_path: Path
) -> None:
    done = wgh("run", str(_short_handshake_lab(tmp_path)), "--store", store_url, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = Store.open(store_url)
    run = store.get_run("latest")
    store.close()
    verdicts = {
        (m.params["impl"].split()[0], m.case): m.value
        for m in run.measurements
        if m.suite == "conformance" and m.metric == "conformant"
    }
    probes = {
        "replayed-initiation", "replayed-transport", "bad-mac1", "persistent-keepalive", "roaming",
        "cryptokey-routing", "low-order-key", "exact-counters", "key-rotation", "mtu",
    }  # fmt: skip
    timer_probes = {
        "keepalive-starts-handshake", "peer-restart", "initiation-rate", "initiation-flood",
        "crossed-initiations", "replay-window", "reordering-8000", "keepalive-rearmed-on-receive",
        "passive-keepalive",
    }  # fmt: skip
    assert set(verdicts) == {(impl, p) for impl in ("wireguard-go", "pyref") for p in probes | timer_probes}
    failed = {key for key, v in verdicts.items() if v != 1.0}
    assert not failed, failed  # pyref's timers as upstream's (issue 11), so every probe passes on both
    figures = {(m.build, m.case, m.metric): m.value for m in run.measurements if m.suite == "handshake"}
    for build in ("wireguard-go", "pyref"):
        assert 0 < figures[build, "time-to-tunnel", "seconds"] < 10
        assert 0 < figures[build, "latency", "p50_ms"] <= figures[build, "latency", "p99_ms"]
        assert figures[build, "responder-rate", "handshakes_per_s"] > 10
        assert figures[build, "flood", "receiver_bps_flooded"] > 1e6
    # The run ends with the matrix and the figures.
    assert "implementation" in done.stdout and "latency p50 (ms)" in done.stdout


def test_vm_lab_runs_kernel_wireguard_against_pyref_and_wireguard_go(
    no_leftovers: None, store_url: str
) -> None:
    """labs/vm-kernel.toml: a QEMU guest with kernel WireGuard, booted by the harness, on
    the lab's link; iperf3 through the tunnel against pyref and wireguard-go; the
    accelerator recorded with the run."""
    done = wgh(
        "run", str(ROOT / "labs" / "vm-kernel.toml"), "--suite", "throughput", "--duration", "1",
        "--store", store_url, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = Store.open(store_url)
    run = store.get_run("latest")
    store.close()
    recv = {(m.build, m.case): m.value for m in run.measurements if m.metric == "receiver_bps"}
    assert set(recv) == {(b, c) for b in ("kernel-pyref", "kernel-go") for c in ("tcp-1", "tcp-reverse")}
    assert all(v > 1e6 for v in recv.values()), recv
    guest = next(h for h in run.hosts if h.host == "k")
    assert guest.impl == "kernel" and guest.facts["extra"]["accelerator"] in ("kvm", "tcg")
    assert guest.facts["extra"]["qemu_cpu"] and guest.facts["kernel"]
