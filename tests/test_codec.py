"""The one dataclass <-> JSON codec (`harness/codec.py`) and its users: records
written before it (by ``json.dumps(dataclasses.asdict(...))``, the texts below)
read back the same and are written again byte for byte. The prober's result
types are tested in test_probe_results.py. No root."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from harness.codec import decode, encode, from_json, to_json
from harness.errors import UsageError
from harness.impair.relay import RelayStats, parse_stats
from harness.parsers.facts import HostFacts
from harness.repro.bundle import Manifest, read_bundle, write_bundle
from harness.repro.expect import ExpectationResult

# Written by the harness before the codec (891f216), each exactly as stored.
MANIFEST_JSON = (
    '{\n "format": 1,\n "scenario": "handshake-after-pause",\n "impl": null,\n "subject": "b",\n'
    ' "reference": "a",\n "run_id": "3f2a9c1e0b7d",\n "status": "passed",\n'
    ' "created": "2026-11-02T10:15:00+00:00",\n "harness_version": "0.9.0",\n'
    ' "command": "wgharness repro scenarios/pause.toml"\n}'
)
VERDICTS_JSON = (
    '{\n "impl": null,\n "impairments": "netem",\n "warnings": [],\n "verdicts": [\n  {\n   "id": "resumes",\n'
    '   "what": "resumes",\n   "description": "ping p resumes within 2 s after nap",\n   "status": "pass",\n'
    '   "measured": 0.41,\n   "unit": "s",\n   "message": "first reply 0.41 s after nap"\n  },\n  {\n'
    '   "id": "hs",\n   "what": "handshake",\n   "description": "a handshake after nap",\n'
    '   "status": "unmeasured",\n   "measured": null,\n   "unit": "",\n   "message": "no capture"\n  }\n ]\n}'
)
FACTS_COLUMN = (
    '{"arch": "x86_64", "cores": 2, "cpu_model": "Intel(R) Xeon(R) CPU", "extra": {"namespace": "wgh-a"},'
    ' "hostname": "a", "kernel": "6.1.0-13-amd64", "memory_bytes": 4123456789,'
    ' "os": "Debian GNU/Linux 12 (bookworm)", "tools": {"iperf3": "", "wg": "1.0.20210914"},'
    ' "virtualization": "KVM"}'
)
"""The store's hosts.facts column (``json.dumps(facts, sort_keys=True)``), as written
before the fingerprint's facts were recorded."""
FINGERPRINT_FACTS = (
    '"cpu_governor": "", "link_interface": "wgh1a2bl0a", "link_offloads": {"generic-receive-offload": "off"},'
    ' "socket_buffers": {"net.core.rmem_max": "212992"}, "tcp_congestion_control": "cubic"'
)
"""The facts recorded for the fingerprint (harness/results/fingerprint.py)."""
RELAY_LINE = (
    '{"event": "stats", "a_to_b": {"received": 10, "forwarded": 9, "dropped": 1, "duplicated": 0,'
    ' "reordered": 0, "bytes": 1280, "send_errors": 0, "unsent": 0, "overflow": 0}, "b_to_a": {"received": 8,'
    ' "forwarded": 8, "dropped": 0, "duplicated": 0, "reordered": 0, "bytes": 1024, "send_errors": 0,'
    ' "unsent": 0, "overflow": 0}, "seed": 7}'
)
RELAY_JSON = (
    '{\n "a_to_b": {\n  "received": 10,\n  "forwarded": 9,\n  "dropped": 1,\n  "duplicated": 0,\n'
    '  "reordered": 0,\n  "bytes": 1280,\n  "send_errors": 0,\n  "unsent": 0,\n  "overflow": 0\n },\n'
    ' "b_to_a": {\n  "received": 8,\n  "forwarded": 8,\n  "dropped": 0,\n  "duplicated": 0,\n'
    '  "reordered": 0,\n  "bytes": 1024,\n  "send_errors": 0,\n  "unsent": 0,\n  "overflow": 0\n },\n'
    ' "seed": 7\n}'
)


def test_a_bundle_manifest_written_before_reads_back_and_is_written_the_same() -> None:
    manifest = from_json(MANIFEST_JSON, Manifest)
    assert manifest.impl is None and manifest.run_id == "3f2a9c1e0b7d"
    assert to_json(manifest, indent=1) == MANIFEST_JSON


def test_bundle_verdicts_written_before_read_back_the_same() -> None:
    doc = json.loads(VERDICTS_JSON)
    verdicts = [decode(v, ExpectationResult) for v in doc["verdicts"]]
    assert verdicts[0].measured == 0.41 and verdicts[1].measured is None
    assert json.dumps({**doc, "verdicts": encode(verdicts)}, indent=1) == VERDICTS_JSON


def test_stored_host_facts_read_back_the_same() -> None:
    """Facts stored before the fingerprint's fields read back with those empty; facts
    with them are written again byte for byte."""
    facts = decode(json.loads(FACTS_COLUMN), HostFacts)
    assert facts.tools == {"iperf3": "", "wg": "1.0.20210914"} and facts.virtualization == "KVM"
    assert (facts.tcp_congestion_control, facts.socket_buffers, facts.link_offloads) == ("", {}, {})
    column = json.dumps(json.loads(FACTS_COLUMN) | json.loads("{" + FINGERPRINT_FACTS + "}"), sort_keys=True)
    facts = decode(json.loads(column), HostFacts)
    assert facts.tcp_congestion_control == "cubic" and facts.link_offloads == {
        "generic-receive-offload": "off"
    }
    assert json.dumps(encode(facts), sort_keys=True) == column


def test_relay_statistics_read_and_written_as_before() -> None:
    stats = parse_stats(RELAY_LINE)
    assert stats.a_to_b.dropped == 1 and stats.seed == 7
    assert json.dumps(encode(stats), indent=1) == RELAY_JSON
    assert decode(json.loads(RELAY_JSON), RelayStats) == stats
    with pytest.raises(ValueError, match="not the relay's statistics"):
        parse_stats(RELAY_LINE.replace('"seed": 7', '"seed": "7"'))


def _bundle(tmp_path: Path, manifest: str) -> str:
    """A bundle whose manifest.json is ``manifest``."""
    path = str(tmp_path / "b.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("manifest.json", manifest.encode()), ("scenario.toml", b"x")):
            info = tarfile.TarInfo(f"bundle/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_bundle_manifest_is_checked_field_by_field(tmp_path: Path) -> None:
    path = str(tmp_path / "ok.tar.gz")
    write_bundle(path, from_json(MANIFEST_JSON, Manifest), {"scenario.toml": b"x"})
    manifest, files = read_bundle(path)
    assert to_json(manifest, indent=1) == MANIFEST_JSON and files == {"scenario.toml": b"x"}
    bad = MANIFEST_JSON.replace('"subject": "b"', '"subject": 2')
    with pytest.raises(
        UsageError, match=r"manifest.json: not a bundle manifest \(Manifest.subject: expected a string"
    ):
        read_bundle(_bundle(tmp_path, bad))
    later = MANIFEST_JSON.replace('"format": 1', '"format": 2, "new": 1')
    with pytest.raises(UsageError, match="manifest.json: format 2, this harness reads 1"):
        read_bundle(_bundle(tmp_path, later))


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    n: int


@dataclass(frozen=True)
class Outer:
    colour: Colour
    by_name: dict[str, Inner]
    pair: tuple[int, str]
    anything: Any = None
    notes: list[str] = field(default_factory=list)


def test_dicts_enums_and_defaults_round_trip() -> None:
    value = Outer(Colour.BLUE, {"x": Inner(1)}, (2, "b"), {"free": [1]})
    assert encode(value) == {
        "colour": "blue", "by_name": {"x": {"n": 1}}, "pair": [2, "b"], "anything": {"free": [1]}, "notes": [],
    }  # fmt: skip
    assert from_json(to_json(value), Outer) == value
    assert decode({"colour": "red", "by_name": {}, "pair": [1, "a"]}, Outer) == Outer(
        Colour.RED, {}, (1, "a")
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "green"}, r"Outer\.colour: expected one of 'red', 'blue', got 'green'"),
        ({"by_name": {"x": {"n": "1"}}}, r"Outer\.by_name\['x'\]\.n: expected an integer"),
        ({"by_name": []}, r"Outer\.by_name: expected an object"),
        ({"pair": [1]}, r"Outer\.pair: expected 2 items, got 1"),
    ],
)
def test_a_malformed_value_names_its_field(change: dict[str, object], message: str) -> None:
    good = {"colour": "red", "by_name": {}, "pair": [1, "a"]}
    with pytest.raises(ValueError, match=message):
        decode({**good, **change}, Outer)
