"""The recording side of a dry run: a host made with ``dry=log`` (`harness.targets.make`)
hands each command line to a `DryRunLog` instead of running it, and gets a canned
answer back, enough for the orchestrator and the drivers to go through their whole
life cycle (a version string, a socket that appears once its program was started, a
`wg show` dump with a handshake). Nothing here runs a command or opens a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.targets.base import CommandResult, Process

_KEY = "A" * 43 + "="  # a syntactically valid key for canned dumps (never a real one)
_CANNED_VERSION = "(dry-run)"
_CANNED_VERSIONS = (
    "".join(f"{tool} v{_CANNED_VERSION}\n" for tool in ("wireguard-go", "wireguard-tools", "wgharness"))
    + f"iperf {_CANNED_VERSION}\nip utility, iproute2-{_CANNED_VERSION}, libbpf\n"
)
"""What any program asked its version answers: a program names itself, not its file (a
custom wireguard-go build may be called anything), so every tool's line is there."""


@dataclass
class DryRunLog:
    """Every command of a dry run, in order, with the host it was meant for."""

    entries: list[tuple[str, str]] = field(default_factory=list)
    """(host, command line) in the order the run would execute them."""
    _sockets: set[str] = field(default_factory=set)

    def record(self, host: str, line: str) -> None:
        self.entries.append((host, line))

    def note(self, host: str, text: str) -> None:
        self.entries.append((host, f"# {text}"))

    def answer(self, argv: Sequence[str]) -> CommandResult:
        """A canned result for ``argv`` that lets the run go on."""
        args = list(argv)
        out = ""
        status = 0
        if len(args) >= 3 and args[0] == "test" and args[1] == "-S":
            # A UAPI socket is absent until asked for a second time (the driver's
            # check before starting its program), then present (its wait after).
            status = 0 if args[2] in self._sockets else 1
            self._sockets.add(args[2])
        elif args[:2] == ["rm", "-f"]:
            self._sockets.difference_update(args[2:])
        elif "--version" in args or args[-1:] == ["-V"]:
            out = _CANNED_VERSIONS
        elif args[:1] == ["ss"]:
            out = "LISTEN 0 5 *:5201 *:*\n"
        elif args[:2] == ["wg", "show"] and args[-1:] == ["dump"]:
            out = (
                f"{_KEY}\t{_KEY}\t51820\toff\n{_KEY}\t(none)\t(none)\t198.19.0.0/32\t1700000000\t0\t0\toff\n"
            )
        return CommandResult(tuple(args), status, out.encode(), b"")


class DryProcess(Process):
    """A background process that was only written down."""

    def __init__(self, argv: Sequence[str], host: str, log: DryRunLog) -> None:
        self.argv = tuple(argv)
        self.host = host
        self._log = log
        self._stopped = False

    @property
    def pid(self) -> int:
        return 0

    def poll(self) -> int | None:
        return None

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def kill(self, grace: float = 3.0) -> int | None:
        if not self._stopped:
            self._stopped = True
            self._log.note(self.host, f"stop `{self.argv[0]}` by its PID (TERM, KILL after {grace:g}s)")
        return None

    def output(self) -> tuple[bytes, bytes]:
        return b"", b""
