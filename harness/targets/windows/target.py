"""A Windows host reached over a `Conduit` (OpenSSH for Windows), driven by
PowerShell: `WindowsTarget`. Every command is a script rendered by
`harness.targets.windows.powershell` and sent as one ``-EncodedCommand`` line;
background programs are scheduled tasks (`ScheduledTaskProcess`).

Files holding a private key are written with `WindowsTarget.put_secret`: the
file is made (empty) and given an ACL of SYSTEM and Administrators only before
the key goes in; the harness's folder gets the same ACL, inherited, at `setup`.
Firewall rules the harness adds (iperf3's port, wireguard-go's UDP port, ping
on the tunnel's addresses) are in the group ``wgharness`` and removed by whoever
added them, and at `teardown`.

Nothing here has run on a real Windows machine: it is tested on the rendered
commands and on recorded output (tests/targets/test_windows.py).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

from harness.errors import CommandError, InfraError
from harness.parsers import ParseError
from harness.parsers.facts import HostFacts
from harness.parsers.windows import parse_windows_facts, parse_windows_link, powershell_error_summary
from harness.targets.base import CommandResult, HostKind, Process, Target
from harness.targets.conduit import Conduit
from harness.targets.ledger import Forget, ResourceKind, nothing
from harness.targets.windows.powershell import (
    PREAMBLE,
    TASK_PRIORITY,
    encoded_command,
    facts_script,
    link_script,
    ps_quote,
    render_powershell,
    secure_script,
    sftp_path,
)
from harness.targets.windows.process import ScheduledTaskProcess

ROOT = r"C:\ProgramData\wgharness"
FIREWALL_GROUP = "wgharness"
ICMP_ECHO = {4: ("ICMPv4", 8), 6: ("ICMPv6", 128)}
"""Echo request per IP version: ICMPv4 type 8 (RFC 792), ICMPv6 type 128 (RFC 4443)."""


class WindowsTarget(Target):
    """A Windows host; every command is PowerShell sent over ``conduit``.

    ``root`` is the harness's folder on the host (configuration files, background
    tasks' output); `setup` creates it, `teardown` removes what the harness left
    (firewall rules it added, its scheduled tasks).
    """

    kind = HostKind.WINDOWS

    def __init__(self, name: str, conduit: Conduit, *, root: str = ROOT) -> None:
        super().__init__(name)
        self.conduit = conduit
        self.root = root
        self._rules: list[str] = []
        self._forget_rule: dict[str, Forget] = {}
        self._processes: list[ScheduledTaskProcess] = []

    # -- commands --------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
        gui: bool = False,
    ) -> CommandResult:
        stdin_path = None
        if input is not None:
            stdin_path = self.path("stdin-" + uuid.uuid4().hex[:12])
            self.put(input, stdin_path)
        script = render_powershell(argv, env=env, stdin_path=stdin_path, gui=gui)
        result = self.conduit.exec(encoded_command(script), timeout=timeout)
        return CommandResult(tuple(argv), result.status, result.stdout_bytes, result.stderr_bytes)

    def check(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
        gui: bool = False,
    ) -> CommandResult:
        """Like `run`; a non-zero status raises CommandError whose one line is the
        PowerShell error record's message (not its ``+ CategoryInfo`` tail)."""
        result = self.run(argv, input=input, timeout=timeout, env=env, gui=gui)
        if not result.ok:
            raise CommandError(self.name, list(argv), result.status, powershell_error_summary(result.stderr))
        return result

    def run_ps(self, script: str, *, timeout: float | None = 60.0) -> CommandResult:
        """Run a PowerShell script (the preamble is added) with the same encoding.
        The result's argv is ``("powershell", script)``."""
        result = self.conduit.exec(encoded_command(PREAMBLE + script), timeout=timeout)
        return CommandResult(("powershell", script), result.status, result.stdout_bytes, result.stderr_bytes)

    def check_ps(self, script: str, what: str, *, timeout: float | None = 60.0) -> CommandResult:
        """`run_ps`; a non-zero status raises InfraError ``HOST: WHAT failed (status N): MESSAGE``."""
        result = self.run_ps(script, timeout=timeout)
        if not result.ok:
            message = powershell_error_summary(result.stderr) or "no output on stderr"
            raise InfraError(f"{self.name}: {what} failed (status {result.status}): {message}")
        return result

    def describe(self, argv: Sequence[str]) -> str:
        """The full command line sent for ``argv``."""
        return encoded_command(render_powershell(argv))

    # -- what differs from a POSIX host ------------------------------------
    tools: dict[str, str] = {"iperf3": "iperf3.exe"}  # noqa: RUF012 (replaced per instance, never mutated)

    def ping_argv(self, address: str, count: int = 1, interval: float = 0.2, wait: float = 1.0) -> list[str]:
        # Windows' ping has no interval; -w is the wait for each reply in milliseconds.
        return ["ping.exe", "-n", str(count), "-w", str(int(wait * 1000)), address]

    def is_listening(self, port: int, protocol: str = "tcp") -> bool:
        cmdlet = (
            f"Get-NetTCPConnection -State Listen -LocalPort {int(port)}"
            if protocol == "tcp"
            else f"Get-NetUDPEndpoint -LocalPort {int(port)}"
        )
        result = self.run_ps(f"if ({cmdlet} -ErrorAction SilentlyContinue) {{ 'yes' }} else {{ 'no' }}\n")
        return result.stdout.strip() == "yes"

    def path(self, *parts: str) -> str:
        """A path under the harness folder on the host."""
        return "\\".join((self.root, *parts))

    # -- files -----------------------------------------------------------
    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        self.conduit.put(data, sftp_path(path), mode)

    def put_secret(self, data: bytes, path: str) -> None:
        """Write a file that holds a key: make it empty with an ACL of SYSTEM and
        Administrators only (`secure_script`), then write ``data`` into it (a write
        over SFTP keeps an existing file's ACL)."""
        self.check_ps(secure_script(path), f"restricting {path} to SYSTEM and Administrators")
        self.put(data, path)

    def get(self, path: str) -> bytes:
        return self.conduit.get(sftp_path(path))

    def mkdir(self, path: str) -> None:
        self.check_ps(
            f"$null = New-Item -ItemType Directory -Force -Path {ps_quote(path)}\n", f"creating {path}"
        )

    def remove(self, path: str) -> None:
        """Remove a file or folder if it exists (never raises for a missing one)."""
        self.run_ps(
            f"Remove-Item -LiteralPath {ps_quote(path)} -Recurse -Force -ErrorAction SilentlyContinue\nexit 0\n"
        )

    # -- background processes ---------------------------------------------
    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        process = ScheduledTaskProcess.launch(self, argv, env)
        process.on_end = self.noted(ResourceKind.TASK, process.task, pid=process.pid, path=process.folder)
        self._processes.append(process)
        return process

    # -- firewall -----------------------------------------------------------
    def _add_rule(self, what: str, match: str) -> str:
        """Add the inbound allow rule ``match`` (New-NetFirewallRule parameters) named
        ``wgharness HOST WHAT ID``; its DisplayName, kept for `teardown`."""
        name = f"wgharness {self.name} {what} {uuid.uuid4().hex[:8]}"
        self._forget_rule[name] = self.noted(ResourceKind.FIREWALL_RULE, name)
        self.check_ps(
            f"$null = New-NetFirewallRule -DisplayName {ps_quote(name)} -Group {ps_quote(FIREWALL_GROUP)} "
            f"-Direction Inbound -Action Allow {match} -Profile Any\n",
            f"adding firewall rule {name!r}",
        )
        self._rules.append(name)
        return name

    def allow_inbound(
        self, port: int, protocol: str = "TCP", program: str = "iperf3", *, program_path: str | None = None
    ) -> str:
        """Add an inbound allow rule for ``port`` (only for the program at
        ``program_path`` when given) and return its DisplayName (unique; the harness
        removes it with `remove_rule` or at `teardown`)."""
        protocol = protocol.upper()
        if protocol not in ("TCP", "UDP") or not 0 < port < 65536:
            raise ValueError(f"bad firewall rule {protocol}/{port}")
        only = f" -Program {ps_quote(program_path)}" if program_path else ""
        return self._add_rule(f"{program} {protocol}/{port}", f"-Protocol {protocol} -LocalPort {port}{only}")

    def allow_ping(self, addresses: Sequence[str], program: str = "tunnel") -> list[str]:
        """Allow inbound echo requests to ``addresses`` (with or without a prefix):
        one rule per IP version among them, ICMPv4 type 8 or ICMPv6 type 128, scoped
        to those local addresses. Windows blocks them on a new network, which it puts
        in the Public profile, so a tunnel's first ping would go unanswered. Their
        DisplayNames (removed with `remove_rule`, or at `teardown`)."""
        by_version: dict[int, list[str]] = {}
        for address in addresses:
            ip = ipaddress.ip_interface(address).ip
            by_version.setdefault(ip.version, []).append(str(ip))
        names = []
        for version, ips in sorted(by_version.items()):
            protocol, icmp_type = ICMP_ECHO[version]
            local = ", ".join(ps_quote(ip) for ip in ips)
            names.append(
                self._add_rule(
                    f"{program} {protocol} echo",
                    f"-Protocol {protocol} -IcmpType {icmp_type} -LocalAddress {local}",
                )
            )
        return names

    def remove_rule(self, name: str) -> None:
        """Remove a rule `allow_inbound` added; safe when it is already gone."""
        self.run_ps(
            f"Remove-NetFirewallRule -DisplayName {ps_quote(name)} -ErrorAction SilentlyContinue\nexit 0\n"
        )
        if name in self._rules:
            self._rules.remove(name)
        self._forget_rule.pop(name, nothing)()

    # -- life cycle ------------------------------------------------------
    def setup(self) -> None:
        self.check_ps(
            secure_script(self.root, folder=True), f"restricting {self.root} to SYSTEM and Administrators"
        )
        self.mkdir(self.path("tasks"))

    def teardown(self) -> None:
        for process in list(self._processes):
            process.kill()
        self._processes.clear()
        for name in list(self._rules):
            self.remove_rule(name)

    def facts(self) -> HostFacts:
        result = self.check_ps(facts_script(), "collecting facts")
        facts = parse_windows_facts(result.stdout)
        extra = {**facts.extra, "task_priority": f"{TASK_PRIORITY} (normal; background programs)"}
        return replace(facts, extra=extra)

    def link_facts(self, address: str) -> tuple[str, dict[str, str]]:
        result = self.run_ps(link_script(address))
        try:
            return parse_windows_link(result.stdout) if result.ok else ("", {})
        except ParseError:
            return ("", {})
