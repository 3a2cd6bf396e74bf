"""A Windows host reached over a `Conduit` (OpenSSH for Windows), driven by PowerShell.

Every command becomes a PowerShell script, and every script is sent as
``powershell.exe ... -EncodedCommand BASE64`` (base64 of the script in
UTF-16LE: Microsoft's ``about_PowerShell_exe``), so nothing in a command line
is ever quoted for cmd.exe or PowerShell by hand. Inside a script, each value
is a single-quoted PowerShell literal (`ps_quote`). A native program's exit
status is kept (``exit $LASTEXITCODE``); a program that is not found exits 127
as on POSIX.

Two kinds of program need more than ``& program args``:

* GUI-subsystem programs (``wireguard.exe`` is linked ``-H windowsgui``,
  ``msiexec.exe`` too): PowerShell does not wait for them, and wireguard.exe
  shows a message box, not an error on stderr, when it has no standard
  handles. `render_powershell(argv, gui=True)` runs them with ``Start-Process
  -Wait`` and files for stdout and stderr, then prints those and exits with the
  program's status.
* Background programs: OpenSSH for Windows ends a session's processes with the
  session, so `WindowsTarget.start` runs the program from a scheduled task (as
  SYSTEM, at normal priority: `ScheduledTaskProcess`) through a small runner
  script that records its PID, output and exit status in a folder of its own
  under ``C:\\ProgramData\\wgharness\\tasks``.

Files holding a private key are written with `WindowsTarget.put_secret`: the
file is made (empty) and given an ACL of SYSTEM and Administrators only before
the key goes in; the harness's folder gets the same ACL, inherited, at `setup`.
Firewall rules the harness adds (iperf3's port, wireguard-go's UDP port, ping
on the tunnel's addresses) are in the group ``wgharness`` and removed by whoever
added them, and at `teardown`.

Windows PowerShell 5.1 (the ``powershell.exe`` of every Windows) passes
arguments to native programs by wrapping those with spaces in double quotes
and does not escape embedded ones, and drops empty arguments; such arguments
cannot reach a program intact, so rendering refuses them (ValueError) rather
than send a different argv.

Nothing here has run on a real Windows machine: it is tested on the rendered
commands and on recorded output (tests/test_windows.py).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

from harness.errors import CommandError, InfraError
from harness.parsers.facts import HostFacts
from harness.parsers.windows import parse_windows_facts, powershell_error_summary
from harness.targets.base import CommandResult, Process, Target
from harness.targets.conduit import Conduit

POWERSHELL = "powershell.exe"
POWERSHELL_FLAGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
MAX_COMMAND_LINE = 8191
"""cmd.exe's limit on a command line (OpenSSH for Windows' default shell is cmd.exe)."""
ROOT = r"C:\ProgramData\wgharness"
TASK_PATH = "\\wgharness\\"
FIREWALL_GROUP = "wgharness"
NOT_FOUND = 127
TASK_PRIORITY = 4
"""Task Scheduler priority of background programs: 4 is a normal-priority process.
The default, 7, is below normal (with lower I/O and memory priority), and the
program inherits it: an iperf3 or wireguard-go started so would be slowed
(Microsoft, Task Scheduler ``TaskSettings.Priority``: 4-6 normal, 7-8 below
normal; 7 unless set)."""
SECRET_TRUSTEES = ("*S-1-5-18", "*S-1-5-32-544")
"""LocalSystem and BUILTIN\\Administrators, by SID (their names are localized)."""
ICMP_ECHO = {4: ("ICMPv4", 8), 6: ("ICMPv6", 128)}
"""Echo request per IP version: ICMPv4 type 8 (RFC 792), ICMPv6 type 128 (RFC 4443)."""

# PowerShell accepts these as single quotes too (the tokenizer's IsSingleQuote:
# U+0027 and U+2018..U+201B); each is doubled inside a literal.
_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"

# Set at the top of every script: errors stop the script, no progress records
# on stderr, UTF-8 both ways for native programs.
PREAMBLE = (
    "$ErrorActionPreference = 'Stop'\n"
    "$ProgressPreference = 'SilentlyContinue'\n"
    "try { [Console]::OutputEncoding = [System.Text.UTF8Encoding]::new($false) } catch { }\n"
    "$OutputEncoding = [System.Text.UTF8Encoding]::new($false)\n"
)


def ps_quote(value: str) -> str:
    """``value`` as a single-quoted PowerShell literal: nothing in it ($, `, ", spaces)
    is interpreted; every single-quote character is doubled."""
    return "'" + "".join(c + c if c in _SINGLE_QUOTES else c for c in value) + "'"


def windows_cmdline(argv: Sequence[str]) -> str:
    """``argv`` as one Windows command line that CommandLineToArgvW and the C runtime
    split back into ``argv`` (Microsoft, "Parsing C command-line arguments"): an
    argument with a space, tab or quote, or an empty one, is put in double quotes;
    backslashes are doubled only before a quote."""
    parts = []
    for arg in argv:
        if arg and not any(c in arg for c in ' \t\n\v"'):
            parts.append(arg)
            continue
        out = ['"']
        backslashes = 0
        for c in arg:
            if c == "\\":
                backslashes += 1
            elif c == '"':
                out.append("\\" * (2 * backslashes + 1) + '"')
                backslashes = 0
            else:
                out.append("\\" * backslashes + c)
                backslashes = 0
        out.append("\\" * (2 * backslashes) + '"')
        parts.append("".join(out))
    return " ".join(parts)


def _check_native_args(argv: Sequence[str]) -> None:
    if not argv:
        raise ValueError("empty argv")
    for arg in argv[1:]:
        if arg == "" or '"' in arg:
            raise ValueError(
                f"argument {arg!r} cannot be passed intact to a native program by Windows PowerShell 5.1 "
                "(it drops empty arguments and does not escape double quotes)"
            )


def _env_lines(env: Mapping[str, str] | None) -> str:
    lines = []
    for key, value in (env or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"environment variable name {key!r} is not NAME")
        lines.append(f"${{env:{key}}} = {ps_quote(value)}\n")
    return "".join(lines)


def render_powershell(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin_path: str | None = None,
    gui: bool = False,
) -> str:
    """A PowerShell script that runs the native program ``argv`` and exits with its status.

    ``env``: variables set for it; ``stdin_path``: a file on the host whose text is
    piped to its standard input (then removed); ``gui``: a GUI-subsystem program
    (see the module docstring), run by Start-Process with its output in files.
    """
    _check_native_args(argv)
    program, args = ps_quote(argv[0]), " ".join(ps_quote(a) for a in argv[1:])
    script = PREAMBLE + _env_lines(env)
    if gui:
        arglist = f" -ArgumentList {ps_quote(windows_cmdline(argv[1:]))}" if len(argv) > 1 else ""
        script += (
            "$o = [System.IO.Path]::GetTempFileName()\n"
            "$e = [System.IO.Path]::GetTempFileName()\n"
            "try {\n"
            f"  $p = Start-Process -FilePath {program}{arglist} -NoNewWindow -Wait -PassThru "
            "-RedirectStandardOutput $o -RedirectStandardError $e\n"
            "} catch {\n"
            "  [Console]::Error.WriteLine($_.Exception.Message); exit 127\n"
            "}\n"
            "[Console]::Out.Write([System.IO.File]::ReadAllText($o))\n"
            "[Console]::Error.Write([System.IO.File]::ReadAllText($e))\n"
            "Remove-Item -LiteralPath $o, $e -Force -ErrorAction SilentlyContinue\n"
            "exit $p.ExitCode\n"
        )
        return script
    call = f"& {program} {args}".rstrip()
    if stdin_path is not None:
        source = ps_quote(stdin_path)
        call = (
            f"try {{ [System.IO.File]::ReadAllText({source}) | {call} }} "
            f"finally {{ Remove-Item -LiteralPath {source} -Force -ErrorAction SilentlyContinue }}"
        )
    # 'Continue' for the call: a native program's stderr must not stop the script
    # where PowerShell turns it into error records.
    script += (
        "$ErrorActionPreference = 'Continue'\n"
        f"try {{ {call} }} catch [System.Management.Automation.CommandNotFoundException] {{\n"
        "  [Console]::Error.WriteLine($_.Exception.Message); exit 127\n"
        "}\n"
        "exit $LASTEXITCODE\n"
    )
    return script


def encoded_command(script: str) -> str:
    """The one command line that runs ``script``:
    ``powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand B64``
    with B64 the base64 of the script in UTF-16LE. ValueError past cmd.exe's 8191 characters."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    line = " ".join((POWERSHELL, *POWERSHELL_FLAGS, "-EncodedCommand", encoded))
    if len(line) > MAX_COMMAND_LINE:
        raise ValueError(
            f"PowerShell script of {len(script)} characters makes a {len(line)}-character command line "
            f"(cmd.exe takes {MAX_COMMAND_LINE}): put it in a file instead"
        )
    return line


def decode_command(line: str) -> str:
    """The script inside a command line made by `encoded_command` (for tests and dry runs)."""
    encoded = line.rsplit(" ", 1)[-1]
    return base64.b64decode(encoded).decode("utf-16-le")


def sftp_path(path: str) -> str:
    r"""``C:\ProgramData\x`` as OpenSSH for Windows' SFTP server names it: ``/C:/ProgramData/x``."""
    forward = path.replace("\\", "/")
    return forward if forward.startswith("/") else "/" + forward


def facts_script(wireguard_dir: str = r"C:\Program Files\WireGuard", iperf3: str = "iperf3.exe") -> str:
    """A script printing one JSON object that `parse_windows_facts` reads (run by
    `WindowsTarget.run_ps`, which adds the preamble; a missing piece is left empty)."""
    d = ps_quote(wireguard_dir)
    return "$ErrorActionPreference = 'SilentlyContinue'\n" + (
        "$os = Get-CimInstance Win32_OperatingSystem\n"
        "$cs = Get-CimInstance Win32_ComputerSystem | Select-Object Manufacturer, Model, HypervisorPresent\n"
        "$v = { param($p) if (Test-Path -LiteralPath $p) { (Get-Item -LiteralPath $p).VersionInfo } }\n"
        "$t = { param($p) try { (& $p --version 2>&1 | Select-Object -First 1) -join '' } catch { '' } }\n"
        "[pscustomobject]@{\n"
        "  hostname = $env:COMPUTERNAME; arch = $env:PROCESSOR_ARCHITECTURE\n"
        "  os = $os | Select-Object Caption, Version, BuildNumber, OSArchitecture, TotalVisibleMemorySize\n"
        "  system = $cs\n"
        "  ubr = (Get-ItemProperty -LiteralPath 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion').UBR\n"
        "  cpu = @(Get-CimInstance Win32_Processor | Select-Object Name, NumberOfCores, NumberOfLogicalProcessors)\n"
        "  nics = @(Get-NetAdapter | Select-Object Name, InterfaceDescription, Status, LinkSpeed, "
        "ReceiveLinkSpeed, TransmitLinkSpeed, MtuSize)\n"
        f"  wireguard = (& $v (Join-Path {d} 'wireguard.exe')).ProductVersion\n"
        f"  wg = & $t (Join-Path {d} 'wg.exe')\n"
        "  nt = (& $v (Join-Path $env:SystemRoot 'System32\\drivers\\wireguard.sys')).FileVersion\n"
        f"  iperf3 = & $t {ps_quote(iperf3)}\n"
        "} | ConvertTo-Json -Depth 4 -Compress\n"
    )


class WindowsTarget(Target):
    """A Windows host; every command is PowerShell sent over ``conduit``.

    ``root`` is the harness's folder on the host (configuration files, background
    tasks' output); `setup` creates it, `teardown` removes what the harness left
    (firewall rules it added, its scheduled tasks).
    """

    kind = "windows"

    def __init__(self, name: str, conduit: Conduit, *, root: str = ROOT) -> None:
        super().__init__(name)
        self.conduit = conduit
        self.root = root
        self._rules: list[str] = []
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
        self._processes.append(process)
        return process

    # -- firewall -----------------------------------------------------------
    def _add_rule(self, what: str, match: str) -> str:
        """Add the inbound allow rule ``match`` (New-NetFirewallRule parameters) named
        ``wgharness HOST WHAT ID``; its DisplayName, kept for `teardown`."""
        name = f"wgharness {self.name} {what} {uuid.uuid4().hex[:8]}"
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


def secure_script(path: str, *, folder: bool = False) -> str:
    """A script that gives ``path`` an ACL of SYSTEM and Administrators (full control)
    and nothing inherited, with ``icacls /inheritance:r /grant:r``. A file is made,
    or emptied, first: a key never sits in it under the old ACL. A ``folder``'s
    entries are inherited by what is made in it (``(OI)(CI)``). The owner is kept.
    C:\\ProgramData lets every user read what is made under it, by inheritance."""
    p = ps_quote(path)
    inherit = "(OI)(CI)" if folder else ""
    grants = " ".join(ps_quote(f"{sid}:{inherit}(F)") for sid in SECRET_TRUSTEES)
    make = (
        f"$null = New-Item -ItemType Directory -Force -Path {p}\n"
        if folder
        else f"[System.IO.File]::WriteAllBytes({p}, [byte[]]::new(0))\n"
    )
    return (
        make + f"& 'icacls.exe' {p} '/inheritance:r' '/grant:r' {grants} '/q' | Out-Null\n"
        'if ($LASTEXITCODE -ne 0) { [Console]::Error.WriteLine("icacls exited with $LASTEXITCODE"); '
        "exit $LASTEXITCODE }\n"
    )


def runner_script(folder: str, argv: Sequence[str], env: Mapping[str, str] | None) -> str:
    """The script a scheduled task runs: start ``argv`` with its output in ``folder``,
    write its PID to ``pid`` and, when it ends, its status to ``exit``."""
    _check_native_args(argv)
    f = ps_quote(folder)
    arglist = f" -ArgumentList {ps_quote(windows_cmdline(argv[1:]))}" if len(argv) > 1 else ""
    return (
        PREAMBLE
        + _env_lines(env)
        + (
            f"$d = {f}\n"
            "function Put($n, $v) { [System.IO.File]::WriteAllText((Join-Path $d ($n + '.tmp')), [string]$v); "
            "Move-Item -Force (Join-Path $d ($n + '.tmp')) (Join-Path $d $n) }\n"
            "try {\n"
            f"  $p = Start-Process -FilePath {ps_quote(argv[0])}{arglist} -WorkingDirectory $d -NoNewWindow -PassThru "
            "-RedirectStandardOutput (Join-Path $d 'stdout') -RedirectStandardError (Join-Path $d 'stderr')\n"
            "} catch {\n"
            "  [System.IO.File]::WriteAllText((Join-Path $d 'stderr'), $_.Exception.Message)\n"
            "  Put 'pid' 0; Put 'exit' 127; exit 127\n"
            "}\n"
            "$null = $p.Handle  # keeps ExitCode readable after the exit (Windows PowerShell 5.1)\n"
            "Put 'pid' $p.Id\n"
            "$p.WaitForExit()\n"
            "Put 'exit' $p.ExitCode\n"
        )
    )


class ScheduledTaskProcess(Process):
    """A program run by a scheduled task as SYSTEM (survives the SSH session), at
    priority `TASK_PRIORITY` (normal) rather than the scheduler's below-normal 7.

    Why SYSTEM, not the SSH user: wg.exe talks to a userspace interface only over
    a named pipe owned by LocalSystem and refuses any other (wireguard-tools
    ``ipc-uapi-windows.h`` ``userspace_interface_file`` compares the pipe's owner
    with WinLocalSystemSid), and wireguard-go asks for that owner in the pipe's
    security descriptor (``ipc/uapi_windows.go``: ``O:SY``), which only a SYSTEM
    process gets without further privileges.

    Its folder ``ROOT\\tasks\\NAME`` holds ``run.ps1``, ``stdout``, ``stderr``,
    ``pid`` and ``exit``; the task is ``\\wgharness\\NAME``. `kill` stops the
    program (TerminateProcess: Windows has no SIGTERM for a console program
    without a console) and unregisters the task.
    """

    START_TIMEOUT = 30.0

    def __init__(self, target: WindowsTarget, argv: Sequence[str], task: str, folder: str, pid: int) -> None:
        self.argv = tuple(argv)
        self.target = target
        self.task = task
        self.folder = folder
        self._pid = pid
        self._status: int | None = None
        self._killed = False

    @staticmethod
    def register_script(task: str, folder: str) -> str:
        """Register and start the task, then wait for the runner's ``pid`` file and print it."""
        runner = windows_cmdline([POWERSHELL, *POWERSHELL_FLAGS, "-File", folder + "\\run.ps1"]).split(
            " ", 1
        )[1]
        wait = int(ScheduledTaskProcess.START_TIMEOUT * 10)
        return (
            f"$a = New-ScheduledTaskAction -Execute {ps_quote(POWERSHELL)} -Argument {ps_quote(runner)}\n"
            "$u = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest\n"
            "$s = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) "
            f"-AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -Priority {TASK_PRIORITY}\n"
            f"$null = Register-ScheduledTask -TaskPath {ps_quote(TASK_PATH)} -TaskName {ps_quote(task)} "
            "-Action $a -Principal $u -Settings $s -Force\n"
            f"Start-ScheduledTask -TaskPath {ps_quote(TASK_PATH)} -TaskName {ps_quote(task)}\n"
            f"$f = Join-Path {ps_quote(folder)} 'pid'\n"
            f"for ($i = 0; $i -lt {wait}; $i++) {{\n"
            "  if (Test-Path -LiteralPath $f) { Get-Content -LiteralPath $f -Raw; exit 0 }\n"
            "  Start-Sleep -Milliseconds 100\n"
            "}\n"
            "[Console]::Error.WriteLine('the scheduled task wrote no pid file'); exit 3\n"
        )

    @classmethod
    def launch(
        cls, target: WindowsTarget, argv: Sequence[str], env: Mapping[str, str] | None
    ) -> ScheduledTaskProcess:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", argv[0].replace("\\", "/").rsplit("/", 1)[-1])[:24]
        task = f"{stem}-{uuid.uuid4().hex[:10]}"
        folder = target.path("tasks", task)
        target.mkdir(folder)
        target.put(runner_script(folder, argv, env).encode("utf-8-sig"), folder + "\\run.ps1")
        result = target.check_ps(
            cls.register_script(task, folder),
            f"starting `{' '.join(argv)}` as scheduled task {task}",
            timeout=cls.START_TIMEOUT + 30,
        )
        pid = result.stdout.strip()
        if not pid.isdigit():
            raise InfraError(f"{target.name}: task {task} wrote pid {pid[:40]!r}")
        return cls(target, argv, task, folder, int(pid))

    @property
    def pid(self) -> int:
        return self._pid

    def _read_exit(self) -> int | None:
        f = ps_quote(self.folder + "\\exit")
        result = self.target.run_ps(
            f"if (Test-Path -LiteralPath {f}) {{ Get-Content -LiteralPath {f} -Raw }}\n", timeout=30
        )
        text = result.stdout.strip()
        return int(text) if re.fullmatch(r"-?\d+", text) else None

    def poll(self) -> int | None:
        if self._status is None:
            self._status = self._read_exit()
        return self._status

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.poll()
            if status is not None:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"`{' '.join(self.argv)}` still running after {timeout}s")
            time.sleep(0.5)

    def kill_script(self, grace: float = 3.0) -> str:
        exit_file = ps_quote(self.folder + "\\exit")
        steps = max(1, int(grace * 10))
        return (
            f"if (-not (Test-Path -LiteralPath {exit_file})) {{\n"
            f"  Stop-Process -Id {self._pid} -Force -ErrorAction SilentlyContinue\n"
            f"  for ($i = 0; $i -lt {steps} -and -not (Test-Path -LiteralPath {exit_file}); $i++) "
            "{ Start-Sleep -Milliseconds 100 }\n"
            "}\n"
            f"Unregister-ScheduledTask -TaskPath {ps_quote(TASK_PATH)} -TaskName {ps_quote(self.task)} "
            "-Confirm:$false -ErrorAction SilentlyContinue\n"
            f"if (Test-Path -LiteralPath {exit_file}) {{ Get-Content -LiteralPath {exit_file} -Raw }}\n"
            "exit 0\n"
        )

    def kill(self, grace: float = 3.0) -> int | None:
        if self._killed:
            return self._status
        result = self.target.run_ps(self.kill_script(grace), timeout=grace + 30)
        text = result.stdout.strip()
        if re.fullmatch(r"-?\d+", text):
            self._status = int(text)
        self._killed = result.ok
        return self._status

    def output(self) -> tuple[bytes, bytes]:
        out = []
        for name in ("stdout", "stderr"):
            try:
                out.append(self.target.get(self.folder + "\\" + name))
            except (OSError, InfraError):
                out.append(b"")
        return out[0], out[1]
