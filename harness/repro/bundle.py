"""Repro bundles: one .tar.gz with everything a run of a scenario produced,
enough to read the bug without the machine it ran on and to run it again.

Files (all under ``bundle/``): manifest.json, scenario.toml, lab.toml (when
the scenario names a lab file), verdicts.json, timeline.json, facts.json,
configs/HOST.conf (this run's keys only), samples.jsonl (`wg show` dumps over
time), dumps/, logs/, capture.pcap (the outer link), keylog.txt (Wireshark's
WireGuard key log for it), relay.json (when the relay impaired the path),
host-checks.txt (the host checks' table: the reporter's tools and kernel) and
README.txt. Written to a temporary name and renamed, so a bundle is whole or
absent; readable by its owner only (0600, in folders made 0700): its configs
and key log decrypt its capture. A lab file's own keys are not in it (see
`harness.repro.run`), only the keys made for the run.

Read as untrusted input: streamed, never unpacked to disk, within caps on the
unpacked size (`MAX_TOTAL`), the members (`MAX_MEMBERS`), a member kept in memory
(`MAX_MEMBER`) and a header (`MAX_HEADER`); a reader names the files it needs and
holds only those. The bundle's own files come first (`FIRST`), so a rerun stops
reading after them.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.codec import decode, to_json
from harness.errors import UsageError
from harness.keys import create_private

FORMAT = 1
ROOT = "bundle"
FIRST = ("manifest.json", "scenario.toml", "lab.toml", "verdicts.json")
"""Written before the other files: all a rerun or a check reads."""
MAX_TOTAL = 1024 * 1024 * 1024
"""Bytes a bundle may unpack to, all its members and headers together."""
MAX_MEMBER = 512 * 1024 * 1024
"""Bytes of one member kept in memory."""
MAX_MEMBERS = 10_000
MAX_HEADER = 1024 * 1024
"""Bytes of one PAX or GNU long-name header (tarfile holds it in memory)."""
_LONG_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                 tarfile.GNUTYPE_LONGLINK)  # fmt: skip


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
    order = [n for n in FIRST if n in entries] + sorted(n for n in entries if n not in FIRST)
    tmp = f"{path}.partial"
    Path(tmp).unlink(missing_ok=True)
    try:
        with (
            os.fdopen(create_private(Path(tmp)), "wb") as raw,
            tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in order:
                data = entries[name]
                info = tarfile.TarInfo(f"{ROOT}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o600, 0
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_bundle(path: str, names: Collection[str] | None = None) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and files of a bundle (``names``: only these, the reading stopped
    once they are found); UsageError naming the file if it is not one, or too big."""
    files = _members(path, None if names is None else {"manifest.json", *names})
    raw = files.pop("manifest.json", None)
    if raw is None or "scenario.toml" not in files:
        raise UsageError(f"{path}: not a repro bundle (no manifest.json and scenario.toml in {ROOT}/)")
    try:
        data = json.loads(raw)
        # The format first: another format may have other fields.
        if isinstance(data, dict) and data.get("format", FORMAT) != FORMAT:
            raise UsageError(f"{path}: manifest.json: format {data['format']}, this harness reads {FORMAT}")
        manifest = decode(data, Manifest)
    except (ValueError, RecursionError) as exc:
        reason = exc if isinstance(exc, ValueError) else "nested too deeply"
        raise UsageError(f"{path}: manifest.json: not a bundle manifest ({reason})") from None
    return manifest, files


def _members(path: str, names: set[str] | None) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except OSError as exc:
        raise UsageError(f"{path}: not a readable repro bundle ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{path}: not a regular file")
        try:
            unpacked = _Capped(gzip.GzipFile(fileobj=file, mode="rb"), path)
            with tarfile.open(fileobj=unpacked, mode="r|", tarinfo=_CheckedInfo) as tar:
                for count, member in enumerate(tar):
                    if count >= MAX_MEMBERS:
                        raise UsageError(f"{path}: more than {MAX_MEMBERS} members: not a repro bundle")
                    name = member.name
                    if not member.isfile() or not name.startswith(f"{ROOT}/") or ".." in name.split("/"):
                        continue
                    name = name[len(ROOT) + 1 :]
                    if name in files:
                        raise UsageError(f"{path}: {name} twice: not a repro bundle")
                    if names is not None and name not in names:
                        continue
                    if member.size > MAX_MEMBER:
                        raise UsageError(f"{path}: {name} is larger than {MAX_MEMBER} bytes")
                    handle = tar.extractfile(member)
                    files[name] = handle.read() if handle is not None else b""
                    if names is not None and names <= files.keys():
                        break
        except _HeaderTooLarge:
            raise UsageError(
                f"{path}: a header of more than {MAX_HEADER} bytes: not a repro bundle"
            ) from None
        except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
            raise UsageError(f"{path}: not a readable repro bundle ({exc})") from None
    return files


class _Capped(io.RawIOBase):
    """The unpacked stream of a bundle; reading past `MAX_TOTAL` bytes is a UsageError."""

    def __init__(self, stream: io.BufferedIOBase, path: str) -> None:
        self.stream = stream
        self.path = path
        self.total = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(min(size, MAX_TOTAL + 1) if size >= 0 else MAX_TOTAL + 1)
        self.total += len(data)
        if self.total > MAX_TOTAL:
            raise UsageError(f"{self.path}: unpacks to more than {MAX_TOTAL} bytes: not a repro bundle")
        return data


class _HeaderTooLarge(Exception):
    pass


class _CheckedInfo(tarfile.TarInfo):
    """A member header that refuses a PAX or GNU long-name header larger than
    `MAX_HEADER` before tarfile reads it whole into memory."""

    def _proc_member(self, tarfile: Any) -> Any:
        if self.type in _LONG_HEADERS and self.size > MAX_HEADER:
            raise _HeaderTooLarge
        return super()._proc_member(tarfile)  # type: ignore[misc]
