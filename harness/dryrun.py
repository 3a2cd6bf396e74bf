"""`wgharness run LAB --dry-run`: every command the run would execute, host by
host, with nothing executed and no connection made.

While `recording()` is active, the one place where commands become processes
on this machine (`LocalTarget`) and the connection of a remote target hand each
command line to the `DryRunLog` instead, and get a canned answer back: enough
for the orchestrator and the drivers to go through their whole life cycle (a
version string, a socket that appears once its program was started, a `wg show`
dump with a handshake). The suites are not run; their commands are listed from
the same functions the suites use to build them.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.targets.base import CommandResult, Process

_KEY = "A" * 43 + "="  # a syntactically valid key for canned dumps (never a real one)
_CANNED_VERSION = "(dry-run)"


@dataclass
class DryRunLog:
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
            name = re.sub(r".*/", "", args[0])
            tool = {"wg": "wireguard-tools", "ip": "iproute2", "iperf3": "iperf"}.get(name, name)
            if "harness" in args:
                tool = "wgharness"
            out = f"{tool} v{_CANNED_VERSION}\n" if tool != "iperf" else f"iperf {_CANNED_VERSION}\n"
            if tool == "iproute2":
                out = f"ip utility, iproute2-{_CANNED_VERSION}, libbpf\n"
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
        self._host = host
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
            self._log.note(self._host, f"stop `{self.argv[0]}` by its PID (TERM, KILL after {grace:g}s)")
        return None

    def output(self) -> tuple[bytes, bytes]:
        return b"", b""


_ACTIVE: contextvars.ContextVar[DryRunLog | None] = contextvars.ContextVar("wgh_dry_run", default=None)


def active() -> DryRunLog | None:
    """The log of the dry run in progress, if any."""
    return _ACTIVE.get()


@contextmanager
def recording() -> Iterator[DryRunLog]:
    log = DryRunLog()
    token = _ACTIVE.set(log)
    try:
        yield log
    finally:
        _ACTIVE.reset(token)


def render(log: DryRunLog) -> str:
    """Host by host, each command numbered in the order of the whole run."""
    hosts: dict[str, list[str]] = {}
    for n, (host, line) in enumerate(log.entries, 1):
        hosts.setdefault(host, []).append(f"  {n:4d}  {line}")
    return "\n\n".join(f"{host}:\n" + "\n".join(lines) for host, lines in hosts.items())


def plan(lab: Lab) -> str:
    """What `wgharness run` would execute for ``lab``, nothing executed."""
    from harness.orchestrator import LabInstance
    from harness.progress import Progress

    with recording() as log:
        instance = LabInstance(lab, progress=Progress(quiet=True))
        instance.up()
        try:
            variants: list[str | None] = [v.name for v in lab.variants] or [None]
            for variant in variants:
                if variant is not None:
                    log.note("orchestrator", f"variant {variant}")
                    instance.switch_variant(variant)
                _suites(instance, lab, log)
        finally:
            for error in instance.down():
                log.note("orchestrator", f"TEARDOWN ERROR (the real run would report it too): {error}")
    return render(log)


def _suites(instance: LabInstance, lab: Lab, log: DryRunLog) -> None:
    from harness.lab import ConformanceParams, HandshakeParams, ThroughputParams
    from harness.parsers import ParseError
    from harness.parsers.iperf import IperfError
    from harness.throughput import run_flow

    for suite in lab.suites:
        p = suite.params
        if isinstance(p, ThroughputParams):
            client = instance.end(p.client)
            server = next(e for e in instance.ends if e is not client)
            for rep in range(1, p.repeat + 1):
                for flow in p.flows:
                    log.note(
                        server.spec.host, f"throughput {flow.name} r{rep}: iperf3 server, then the client"
                    )
                    # The very function the suite calls; nothing comes back to parse.
                    with contextlib.suppress(IperfError, ParseError):
                        run_flow(client.host, server.host, server.inner_ip, flow, p)
        elif isinstance(p, HandshakeParams | ConformanceParams):
            dut = instance.end(p.dut)
            prober = next(e for e in instance.ends if e is not dut)
            log.note(
                prober.spec.host,
                f"{suite.name} suite: prober identities added to {dut.spec.host} with "
                f"`wg addconf {dut.driver.ifname} /dev/stdin` and removed after each test; each test runs "
                f"`python -m harness.probe` here with its job on stdin (see docs/suites.md)",
            )


if TYPE_CHECKING:
    from harness.lab import Lab
    from harness.orchestrator import LabInstance
