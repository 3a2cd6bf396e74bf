"""`wgharness repro` for real (root): a shipped scenario runs on the local lab
against wireguard-go, gives its verdicts, is stored as a run whose timeline
`results show` prints, and writes a bundle whose capture tshark decrypts
with the bundle's key log; the bundle reruns with the same verdicts; and a
scenario that must fail fails with the measured value in its message."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.capture.tshark import decrypted_protocols
from harness.repro.bundle import read_bundle
from tests.support.paths import DATA, ROOT


def wgharness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def test_shipped_scenario_bundle_decrypts_and_reruns(tmp_path: Path, store: str, no_leftovers: None) -> None:
    bundle = tmp_path / "mtu-black-hole.tar.gz"
    done = wgharness(
        "repro", str(ROOT / "scenarios" / "mtu-black-hole.toml"), "--out", str(bundle), "--store", store
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS e1: stalled throughput <= 1 Mbit/s" in done.stdout
    manifest, files = read_bundle(str(bundle))
    assert manifest.scenario == "mtu-black-hole" and manifest.status == "passed"
    for name in ("scenario.toml", "lab.toml", "timeline.json", "verdicts.json", "facts.json", "capture.pcap",
                 "keylog.txt", "configs/a.conf", "configs/b.conf", "samples.jsonl", "README.txt",
                 "host-checks.txt"):  # fmt: skip
        assert name in files, name
    checks = files["host-checks.txt"].decode()  # the reporter's environment, tcpdump for the capture
    assert (
        re.search(r"^\w+ +tcpdump +\S+ at /\S+ +ok$", checks, re.M) and "everything the lab needs" in checks
    )
    assert any(n.startswith("logs/") for n in files)
    assert b"LOCAL_EPHEMERAL_PRIVATE_KEY = " in files["keylog.txt"]
    samples = [json.loads(line) for line in files["samples.jsonl"].splitlines()]
    assert {s["host"] for s in samples} == {"a", "b"} and len(samples) >= 10
    assert "PrivateKey" not in files["samples.jsonl"].decode()

    # The capture decrypts with the key log, and only with it: inner ICMP of the pings, TCP of iperf3.
    out = tmp_path / "x"
    with tarfile.open(bundle) as tar:
        tar.extractall(out, filter="data")
    pcap, keylog = str(out / "bundle" / "capture.pcap"), str(out / "bundle" / "keylog.txt")
    protocols = decrypted_protocols(pcap, keylog)
    assert any(":wg:ip:icmp" in p for p in protocols), set(protocols)
    assert any(":wg:ip:tcp" in p for p in protocols), set(protocols)
    assert not any(":wg:ip:" in p for p in decrypted_protocols(pcap, None))

    # Stored as a run; `results show` prints its timeline and verdicts.
    listed = wgharness("results", "list", "--store", store)
    assert "repro:mtu-black-hole" in listed.stdout
    shown = wgharness("results", "show", manifest.run_id, "--store", store)
    assert shown.returncode == 0, shown.stderr
    assert "timeline" in shown.stdout and "black-hole" in shown.stdout and "mtu 1280" in shown.stdout
    assert "stalled throughput <= 1 Mbit/s" in shown.stdout

    # Rerun from the bundle alone: the same verdicts, exit 0.
    again = wgharness("repro", str(bundle), "--out", str(tmp_path / "again.tar.gz"), "--store", store)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "same verdicts" in again.stdout and "CHANGED" not in again.stdout


def test_a_scenario_that_must_fail_says_by_how_much(tmp_path: Path, store: str, no_leftovers: None) -> None:
    done = wgharness("repro", str(DATA / "must-fail-pause.toml"), "--out", str(tmp_path / "b.tar.gz"),
                     "--store", store)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("FAIL "))
    # Resume is measured from the start of a 30 s pause: it cannot be under 30 s.
    measured = float(line.split("first reply ")[1].split("s after")[0])
    assert measured >= 30.0, line
    _, files = read_bundle(str(tmp_path / "b.tar.gz"))
    verdict = json.loads(files["verdicts.json"])["verdicts"][0]
    assert verdict["status"] == "fail" and verdict["measured"] == pytest.approx(measured, abs=0.01)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    done = wgharness("repro", str(junk))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "not a readable repro bundle" in done.stderr
    done = wgharness("repro", str(ROOT / "scenarios" / "roaming.toml"), "--impl", "nope")
    assert done.returncode == 2 and "--impl: 'nope'" in done.stderr


DELAYED = """
[scenario]
name = "delayed"
subject = "b"
lab = "{lab}"

[impairments]
delay_ms = 50
backend = "relay"

[[steps]]
do = "ping"
name = "p"
from = "b"
interval = 0.1

[[steps]]
do = "wait"
seconds = 3

[[steps]]
do = "stop"
name = "p"

[[expect]]
what = "ping_loss"
traffic = "p"
at_most_pct = 10
"""


def test_relay_delay_shows_in_the_tunnels_round_trip(tmp_path: Path, store: str, no_leftovers: None) -> None:
    """50 ms each way through the relay: every ping through the tunnel takes at least 100 ms."""
    scenario = tmp_path / "delayed.toml"
    scenario.write_text(DELAYED.replace("{lab}", str(ROOT / "scenarios" / "lab.toml")))
    bundle = tmp_path / "d.tar.gz"
    done = wgharness("repro", str(scenario), "--out", str(bundle), "--store", store)
    assert done.returncode == 0, done.stdout + done.stderr
    _, files = read_bundle(str(bundle))
    rtts = [float(x.split("time=")[1].split()[0]) for x in files["traffic/p.ping.txt"].decode().splitlines()
            if "time=" in x]  # fmt: skip
    assert len(rtts) >= 20
    assert min(rtts) >= 100.0, sorted(rtts)[:5]
    relay = json.loads(files["relay.json"])  # the relay's own account of what it forwarded
    assert relay["b_to_a"]["forwarded"] >= len(rtts) and relay["a_to_b"]["dropped"] == 0


def test_keys_a_lab_gives_are_in_neither_bundle_nor_store(
    tmp_path: Path, store: str, no_leftovers: None
) -> None:
    """Issue 22, item 1, for real: both ends run with the lab file's own keys; the
    bundle (0600) and the stored run hold neither, and the bundle reruns."""
    import os
    import stat

    from harness.keys import generate_private_key
    from harness.results.store import Store

    keys = [generate_private_key(), generate_private_key()]
    lab = (ROOT / "scenarios" / "lab.toml").read_text()
    for port, key in zip(("51820", "51821"), keys, strict=True):
        lab = lab.replace(f"listen_port = {port}", f'listen_port = {port}\nprivate_key = "{key}"')
    scenario = tmp_path / "keyed.toml"
    scenario.write_text(DELAYED.replace('lab = "{lab}"\n', "").replace("delay_ms = 50", "delay_ms = 1") + lab)
    bundle = tmp_path / "k.tar.gz"
    old = os.umask(0o022)
    try:
        done = wgharness("repro", str(scenario), "--out", str(bundle), "--store", store)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    _, files = read_bundle(str(bundle))
    with Store.open(store, create=False) as db:
        run = db.get_run("latest")
        files.update({f"stored {n}": db.get_artifact(run.run.id, n) for n in run.artifacts})
    files["stored lab text"] = run.run.lab_text.encode()
    for name, data in files.items():
        assert not any(k.encode() in data for k in keys), name
    assert b"PrivateKey = " in files["configs/a.conf"] and b"(redacted)" in files["configs/a.conf"]
    again = wgharness("repro", str(bundle), "--out", str(tmp_path / "again.tar.gz"), "--store", store)
    assert again.returncode == 0 and "same verdicts" in again.stdout, again.stdout + again.stderr
