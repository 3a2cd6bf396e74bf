"""A Windows host in a dry run: the real `WindowsTarget` over a conduit that
writes each PowerShell script down (decoded from its -EncodedCommand, so it
reads and can be pasted into PowerShell) instead of sending it, and answers
just enough for the drivers to go through up and down: versions, a `wg.exe
show NAME dump` that matches the configuration the driver wrote (until the
tunnel is uninstalled), a scheduled task's PID, the tunnel service present.
`harness.targets.make` chooses it for ``target = "windows"`` and ``dry=`` a log.
"""

from __future__ import annotations

import re

from harness.keys import public_key
from harness.targets.base import CommandResult
from harness.targets.dry import DryRunLog
from harness.targets.windows.powershell import PREAMBLE, decode_command
from harness.targets.windows.target import WindowsTarget

_VERSIONS = "client=(dry-run)\nwg=wireguard-tools v(dry-run)\nnt=(dry-run)\n"


def dry_windows_target(name: str, url: str, dry: DryRunLog) -> WindowsTarget:
    target = WindowsTarget(name, RecordingConduit(name, url, dry))
    target.dry = dry
    preamble = "; ".join(PREAMBLE.strip().splitlines())
    dry.note(f"{name} ({url}, Windows)", f"[preamble] of every script: {preamble}")
    return target


def _conf_values(text: str) -> tuple[str, str, list[str]]:
    """(private key, listen port, peer public keys) of a wg-quick or setconf text."""
    private = re.search(r"^PrivateKey\s*=\s*(\S+)", text, re.M)
    port = re.search(r"^ListenPort\s*=\s*(\d+)", text, re.M)
    peers = re.findall(r"^PublicKey\s*=\s*(\S+)", text, re.M)
    return (private.group(1) if private else ""), (port.group(1) if port else "0"), peers


class RecordingConduit:
    """A `Conduit` that writes each script to ``dry`` and answers it from the above."""

    def __init__(self, name: str, url: str, dry: DryRunLog) -> None:
        self.name = name
        self._dry = dry
        self._where = f"{name} ({url}, Windows)"
        self._files: dict[str, bytes] = {}
        self._gone: set[str] = set()

    def exec(
        self, command: str, *, input: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        script = decode_command(command).strip()
        body = script.removeprefix(PREAMBLE.strip()).strip()  # the same four lines open every script
        shown = "powershell -EncodedCommand of [preamble] +\n" + "\n".join(
            f"          | {line}" for line in body.splitlines()
        )
        self._dry.record(self._where, shown)
        dump = re.search(r"'show' '([^']+)' 'dump'", script)
        if dump and dump.group(1) in self._gone:  # uninstalled: wg.exe finds no such interface
            return CommandResult((command,), 1, b"", b"Unable to access interface: not found\n")
        return CommandResult((command,), 0, self._answer(script).encode(), b"")

    def _answer(self, script: str) -> str:
        if "'client=' +" in script:
            return _VERSIONS
        if "'present'" in script and "Get-Service" in script:
            return "present"
        # wireguard.exe is a GUI program: its arguments go as one -ArgumentList string.
        uninstall = re.search(r"/uninstalltunnelservice'? '?([A-Za-z0-9_.=+@-]+)", script)
        if uninstall:
            self._gone.add(uninstall.group(1))
            return ""
        dump = re.search(r"'show' '([^']+)' 'dump'", script)
        if dump:
            return self._dump(dump.group(1))
        if "Register-ScheduledTask" in script:
            return "4242"
        if "ConvertTo-Json" in script:
            return "{}"
        return ""

    def _dump(self, tunnel: str) -> str:
        if tunnel in self._gone:
            return ""
        conf = next((v.decode("utf-8", "replace") for k, v in self._files.items() if tunnel in k), "")
        private, port, peers = _conf_values(conf)
        key = public_key(private) if private else "A" * 43 + "="
        lines = [f"{private or key}\t{key}\t{port}\toff"]
        lines += [f"{peer}\t(none)\t(none)\t198.19.0.0/32\t1700000000\t0\t0\toff" for peer in peers]
        return "\n".join(lines) + "\n"

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        self._files[path] = data
        self._dry.note(self._where, f"write {path} ({len(data)} bytes) over SFTP")

    def get(self, path: str) -> bytes:
        self._dry.note(self._where, f"read {path} over SFTP")
        return b""

    def close(self) -> None:
        pass
