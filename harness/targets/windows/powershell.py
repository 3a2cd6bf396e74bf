"""PowerShell for a Windows host, rendered: pure functions from argv and paths to
script text and to the one command line that carries a script. Nothing here
opens a connection, runs a program or touches a file (tests/targets/test_windows.py
checks its imports); `WindowsTarget` sends what these make.

Every command becomes a PowerShell script, and every script is sent as
``powershell.exe ... -EncodedCommand BASE64`` (base64 of the script in
UTF-16LE: Microsoft's ``about_PowerShell_exe``), so nothing in a command line
is ever quoted for cmd.exe or PowerShell by hand. Inside a script, each value
is a single-quoted PowerShell literal (`ps_quote`). A native program's exit
status is kept (``exit $LASTEXITCODE``); a program that is not found exits 127
as on POSIX.

GUI-subsystem programs (``wireguard.exe`` is linked ``-H windowsgui``,
``msiexec.exe`` too) need more than ``& program args``: PowerShell does not
wait for them, and wireguard.exe shows a message box, not an error on stderr,
when it has no standard handles. `render_powershell(argv, gui=True)` runs them
with ``Start-Process -Wait`` and files for stdout and stderr, then prints those
and exits with the program's status.

Windows PowerShell 5.1 (the ``powershell.exe`` of every Windows) passes
arguments to native programs by wrapping those with spaces in double quotes
and does not escape embedded ones, and drops empty arguments; such arguments
cannot reach a program intact, so rendering refuses them (ValueError) rather
than send a different argv.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence

POWERSHELL = "powershell.exe"
POWERSHELL_FLAGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
MAX_COMMAND_LINE = 8191
"""cmd.exe's limit on a command line (OpenSSH for Windows' default shell is cmd.exe)."""
TASK_PATH = "\\wgharness\\"
NOT_FOUND = 127
TASK_PRIORITY = 4
"""Task Scheduler priority of background programs: 4 is a normal-priority process.
The default, 7, is below normal (with lower I/O and memory priority), and the
program inherits it: an iperf3 or wireguard-go started so would be slowed
(Microsoft, Task Scheduler ``TaskSettings.Priority``: 4-6 normal, 7-8 below
normal; 7 unless set)."""
SECRET_TRUSTEES = ("*S-1-5-18", "*S-1-5-32-544")
"""LocalSystem and BUILTIN\\Administrators, by SID (their names are localized)."""

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
        "  tcp = @(Get-NetTCPSetting | Where-Object CongestionProvider | Select-Object SettingName, "
        "@{n='CongestionProvider';e={[string]$_.CongestionProvider}}, "
        "@{n='AutoTuningLevelLocal';e={[string]$_.AutoTuningLevelLocal}})\n"
        "  powerplan = (powercfg.exe /getactivescheme) -join ' '\n"
        "} | ConvertTo-Json -Depth 4 -Compress\n"
    )


def link_script(address: str) -> str:
    """A script printing one JSON object that `parse_windows_link` reads: the interface
    a packet to ``address`` leaves by (``Find-NetRoute``, a lookup that sends nothing)
    and its offloads; an adapter without one of them leaves it empty."""
    return "$ErrorActionPreference = 'SilentlyContinue'\n" + (
        f"$a = (Find-NetRoute -RemoteIPAddress {ps_quote(address)} | Where-Object InterfaceAlias | "
        "Select-Object -First 1).InterfaceAlias\n"
        "$l = if ($a) { Get-NetAdapterLso -Name $a }\n"
        "$r = if ($a) { Get-NetAdapterRsc -Name $a }\n"
        "$c = if ($a) { Get-NetAdapterChecksumOffload -Name $a }\n"
        "$u = if ($a) { Get-NetAdapterUso -Name $a }\n"
        "[pscustomobject]@{\n"
        "  interface = $a; LsoIPv4 = $l.IPv4Enabled; LsoIPv6 = $l.IPv6Enabled\n"
        "  RscIPv4 = $r.IPv4Enabled; RscIPv6 = $r.IPv6Enabled; UsoIPv4 = $u.IPv4Enabled\n"
        "  ChecksumTcpIPv4 = [string]$c.TcpIPv4Enabled; ChecksumUdpIPv4 = [string]$c.UdpIPv4Enabled\n"
        "} | ConvertTo-Json -Compress\n"
    )


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


def register_task_script(task: str, folder: str, timeout: float) -> str:
    """Register the scheduled task ``task`` that runs ``folder``\\run.ps1 (a `runner_script`)
    as SYSTEM and start it, then wait up to ``timeout`` seconds for the runner's
    ``pid`` file and print it."""
    runner = windows_cmdline([POWERSHELL, *POWERSHELL_FLAGS, "-File", folder + "\\run.ps1"]).split(" ", 1)[1]
    wait = int(timeout * 10)
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


def kill_task_script(task: str, folder: str, pid: int, grace: float = 3.0) -> str:
    """Stop the program ``pid`` that the task ``task`` started, unless it has written
    its ``exit`` file, waiting up to ``grace`` seconds for that file; unregister the
    task; print the exit status if there is one."""
    exit_file = ps_quote(folder + "\\exit")
    steps = max(1, int(grace * 10))
    return (
        f"if (-not (Test-Path -LiteralPath {exit_file})) {{\n"
        f"  Stop-Process -Id {pid} -Force -ErrorAction SilentlyContinue\n"
        f"  for ($i = 0; $i -lt {steps} -and -not (Test-Path -LiteralPath {exit_file}); $i++) "
        "{ Start-Sleep -Milliseconds 100 }\n"
        "}\n"
        f"Unregister-ScheduledTask -TaskPath {ps_quote(TASK_PATH)} -TaskName {ps_quote(task)} "
        "-Confirm:$false -ErrorAction SilentlyContinue\n"
        f"if (Test-Path -LiteralPath {exit_file}) {{ Get-Content -LiteralPath {exit_file} -Raw }}\n"
        "exit 0\n"
    )
