"""Repro bundles: one .tar.gz with everything a run of a scenario produced,
enough to read the bug without the machine it ran on and to run it again.

Files (all under ``bundle/``): manifest.json, scenario.toml, lab.toml (when
the scenario names a lab file), verdicts.json, timeline.json, facts.json,
configs/HOST.conf (this run's keys only), samples.jsonl (`wg show` dumps over
time), dumps/, logs/, capture.pcap (the outer link), keylog.txt (Wireshark's
WireGuard key log for it), relay.json (when the relay impaired the path) and
README.txt. Written to a temporary name and renamed, so a bundle is whole or
absent.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.codec import decode, to_json
from harness.errors import UsageError

FORMAT = 1
ROOT = "bundle"
MAX_MEMBER = 512 * 1024 * 1024


@dataclass(frozen=True)
class Manifest:
    format: int
    scenario: str
    impl: str | None
    """The --impl the run swapped in for the subject (None: the scenario's own)."""
    subject: str
    reference: str
    run_id: str
    status: str
    created: str
    harness_version: str
    command: str


def is_bundle(path: str) -> bool:
    return path.endswith((".tar.gz", ".tgz"))


def write_bundle(path: str, manifest: Manifest, files: dict[str, bytes]) -> None:
    entries = {"manifest.json": to_json(manifest, indent=1).encode(), **files}
    tmp = f"{path}.partial"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(entries):
                data = entries[name]
                info = tarfile.TarInfo(f"{ROOT}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_bundle(path: str) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and files of a bundle; UsageError naming the file if it is not one."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name
                if not member.isfile() or not name.startswith(f"{ROOT}/") or ".." in name.split("/"):
                    continue
                if member.size > MAX_MEMBER:
                    raise UsageError(f"{path}: {name} is larger than {MAX_MEMBER} bytes")
                handle = tar.extractfile(member)
                if handle is not None:
                    files[name[len(ROOT) + 1 :]] = handle.read()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise UsageError(f"{path}: not a readable repro bundle ({exc})") from None
    raw = files.pop("manifest.json", None)
    if raw is None or "scenario.toml" not in files:
        raise UsageError(f"{path}: not a repro bundle (no manifest.json and scenario.toml in {ROOT}/)")
    try:
        data = json.loads(raw)
        # The format first: another format may have other fields.
        if isinstance(data, dict) and data.get("format", FORMAT) != FORMAT:
            raise UsageError(f"{path}: manifest.json: format {data['format']}, this harness reads {FORMAT}")
        manifest = decode(data, Manifest)
    except ValueError as exc:
        raise UsageError(f"{path}: manifest.json: not a bundle manifest ({exc})") from None
    return manifest, files
