"""Windows hosts: PowerShell rendering, the parsers, and every driver step's commands.

No Windows machine is involved: a recording fake `Conduit` answers each
PowerShell script from recorded output (tests/data/windows, whose headers say
where each format comes from; none was captured on a real machine).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable

import pytest

from harness.errors import CommandError, InfraError, UsageError
from harness.impl.config import InterfaceConfig, PeerConfig
from harness.impl.windows import (
    implementation_switch,
    remove_driver_flag,
    render_tunnel_conf,
    routes_for,
    split_default_routes,
    tunnel_name_problem,
)
from harness.impl.wireguard_go_windows import WireguardGoWindows
from harness.impl.wireguard_nt import WireguardNT, parse_versions
from harness.parsers import ParseError
from harness.parsers.wgdump import parse_wg_dump
from harness.parsers.windows import (
    decode_clixml,
    filter_dumplog,
    msi_version_from_name,
    parse_dumplog,
    parse_windows_facts,
    parse_windows_link,
    powershell_error_summary,
)
from harness.targets.base import CommandResult
from harness.targets.windows.powershell import (
    MAX_COMMAND_LINE,
    PREAMBLE,
    decode_command,
    encoded_command,
    facts_script,
    kill_task_script,
    ps_quote,
    register_task_script,
    render_powershell,
    runner_script,
    secure_script,
    sftp_path,
    windows_cmdline,
)
from harness.targets.windows.target import WindowsTarget
from tests.support.paths import DATA, ROOT

WINDOWS_DATA = DATA / "windows"
PRIV = "YDq75GTMlSrNJX9whEcxCnaEXY9FaxN5g1Zzw6zvRi8="
PUB = "SBFtetVxD5e65jYcFrvUR4ObrgONf+k+41SM+ryIKaA="
PEER = "6K2Jz/CaLoapgSDeCIg141UIwa70V6opYsyGl2V1JeI="
WG = r"C:\Program Files\WireGuard\wg.exe"
WIREGUARD = r"C:\Program Files\WireGuard\wireguard.exe"


def recorded(name: str) -> str:
    """A recorded output without its '## ' header (bytes kept: CRLF stays)."""
    text = (WINDOWS_DATA / name).read_bytes().decode("utf-8")
    head, sep, body = text.partition("## ----\n")
    assert sep and all(line.startswith("## ") for line in head.splitlines()), name
    return body


Reply = tuple[int, str, str]


class FakeConduit:
    """Records every command line and answers it with the first rule whose pattern is
    found in the decoded script; rules may be callables for state."""

    def __init__(self, name: str = "bench-w1") -> None:
        self.name = name
        self.lines: list[str] = []
        self.scripts: list[str] = []
        self.files: dict[str, bytes] = {}
        self.rules: list[tuple[str, Reply | Callable[[str], Reply]]] = []
        self.events: list[str] = []
        """``exec: SCRIPT`` and ``put: PATH`` in the order they happened."""

    def on(self, pattern: str, reply: Reply | Callable[[str], Reply]) -> None:
        self.rules.append((pattern, reply))

    def exec(
        self, command: str, *, input: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        assert command.startswith(
            "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
        )
        assert len(command) <= MAX_COMMAND_LINE
        script = decode_command(command)
        self.lines.append(command)
        self.scripts.append(script)
        self.events.append("exec: " + script)
        for pattern, reply in self.rules:
            if re.search(pattern, script):
                status, out, err = reply(script) if callable(reply) else reply
                return CommandResult((command,), status, out.encode(), err.encode())
        return CommandResult((command,), 0, b"", b"")

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        self.files[path] = data
        self.events.append("put: " + path)

    def get(self, path: str) -> bytes:
        if path not in self.files:
            raise OSError(f"{path}: no such file")
        return self.files[path]

    def close(self) -> None:
        pass

    def calls(self, pattern: str) -> list[str]:
        """The scripts matching ``pattern``, without the common preamble."""
        return [s.removeprefix(PREAMBLE) for s in self.scripts if re.search(pattern, s)]


def ps_literals(text: str) -> list[str]:
    """Every single-quoted PowerShell literal in ``text``, unquoted (the tokenizer's rule:
    any of the five single-quote characters; a doubled one stands for itself)."""
    quotes = "'\u2018\u2019\u201a\u201b"
    out, i = [], 0
    while i < len(text):
        if text[i] in quotes:
            i += 1
            value = []
            while True:
                c = text[i]
                if c in quotes:
                    if i + 1 < len(text) and text[i + 1] in quotes:
                        value.append(text[i + 1])
                        i += 2
                        continue
                    break
                value.append(c)
                i += 1
            out.append("".join(value))
        i += 1
    return out


def cfg(allowed: tuple[str, ...] = ("0.0.0.0/0",), name: str = "wgh0") -> InterfaceConfig:
    peer = PeerConfig(PEER, allowed, endpoint="198.18.0.1:51820")
    return InterfaceConfig(name, PRIV, 51820, ("198.19.0.2/24",), 1420, (peer,))


# -- PowerShell rendering ----------------------------------------------------

TRICKY = ["it's", "$env:PATH", "a b  c", "ünïcødé ☃", "`n", "\u2018curly\u2019", "C:\\dir\\", "50%", "@(1)"]


def test_encoded_command_is_base64_utf16le_of_the_script():
    line = encoded_command("Write-Output 'é'\n")
    prefix = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
    assert line.startswith(prefix)
    assert base64.b64decode(line[len(prefix) :]).decode("utf-16-le") == "Write-Output 'é'\n"


def test_arguments_come_through_as_literals():
    script = decode_command(encoded_command(render_powershell(["C:\\x\\prog.exe", *TRICKY])))
    call = next(line for line in script.splitlines() if "& " in line)
    assert ps_literals(call.split("& ", 1)[1].split(" }", 1)[0]) == ["C:\\x\\prog.exe", *TRICKY]
    assert script.endswith("exit $LASTEXITCODE\n")
    assert '"' not in call  # no double-quoted (expanding) strings


def test_ps_quote_doubles_every_single_quote_character():
    assert ps_quote("it's") == "'it''s'"
    assert ps_quote("\u2019") == "'\u2019\u2019'"
    assert ps_literals(ps_quote('say "$x" `n')) == ['say "$x" `n']


def test_arguments_powershell_51_cannot_pass_are_refused():
    with pytest.raises(ValueError, match="double quotes"):
        render_powershell(["prog.exe", 'a"b'])
    with pytest.raises(ValueError, match="empty"):
        render_powershell(["prog.exe", ""])


def test_env_and_stdin_are_rendered_as_literals():
    script = render_powershell(
        ["wg.exe", "setconf", "x", "-"], env={"LOG_LEVEL": "it's"}, stdin_path="C:\\t\\in"
    )
    assert "${env:LOG_LEVEL} = 'it''s'" in script
    assert "[System.IO.File]::ReadAllText('C:\\t\\in') | & 'wg.exe'" in script
    with pytest.raises(ValueError):
        render_powershell(["x"], env={"A;B": "1"})


def test_gui_programs_are_waited_for_with_their_status():
    script = render_powershell([WIREGUARD, "/installtunnelservice", "C:\\a b\\wgh0.conf"], gui=True)
    assert (
        f"Start-Process -FilePath '{WIREGUARD}' -ArgumentList '/installtunnelservice \"C:\\a b\\wgh0.conf\"'"
        in (script)
    )
    assert "-Wait -PassThru" in script and script.endswith("exit $p.ExitCode\n")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["a", "b c"], 'a "b c"'),
        (['c"d'], '"c\\"d"'),
        (["e\\"], "e\\"),
        (["f\\ g\\"], '"f\\ g\\\\"'),
        ([""], '""'),
        (['a\\"b'], '"a\\\\\\"b"'),
    ],
)
def test_windows_cmdline_follows_the_c_runtime_rules(argv, line):
    assert windows_cmdline(argv) == line
    assert split_cmdline(line) == argv


def split_cmdline(line: str) -> list[str]:
    """The C runtime's splitting (Microsoft, "Parsing C command-line arguments"): 2n
    backslashes and a quote are n backslashes and a quote toggle, 2n+1 are n and a quote."""
    args: list[str] = []
    current: list[str] | None = None
    quoted, i = False, 0
    while i < len(line):
        c = line[i]
        if c in " \t" and not quoted:
            if current is not None:
                args.append("".join(current))
                current = None
            i += 1
            continue
        current = current if current is not None else []
        if c == "\\":
            n = len(line[i:]) - len(line[i:].lstrip("\\"))
            if line[i + n : i + n + 1] == '"':
                current.append("\\" * (n // 2))
                if n % 2:
                    current.append('"')
                    i += n + 1
                else:
                    i += n
            else:
                current.append("\\" * n)
                i += n
            continue
        if c == '"':
            quoted = not quoted
        else:
            current.append(c)
        i += 1
    if current is not None:
        args.append("".join(current))
    return args


def test_windows_cmdline_round_trips_tricky_arguments():
    argv = [*TRICKY, 'x"y', "", "tail\\", 'q\\"', "a\tb"]
    assert split_cmdline(windows_cmdline(argv)) == argv


def test_too_long_a_script_is_refused_and_facts_fit():
    with pytest.raises(ValueError, match="8191"):
        encoded_command("x" * 4000)
    assert len(encoded_command(PREAMBLE + facts_script())) <= MAX_COMMAND_LINE


# Renderings as the code made them before the rendering got its own module
# (harness/targets/windows.py at 891f216), kept as strings: moving it changed nothing.
PREAMBLE_891F216 = (
    "$ErrorActionPreference = 'Stop'\n"
    "$ProgressPreference = 'SilentlyContinue'\n"
    "try { [Console]::OutputEncoding = [System.Text.UTF8Encoding]::new($false) } catch { }\n"
    "$OutputEncoding = [System.Text.UTF8Encoding]::new($false)\n"
)
TASK = "iperf3.exe-0123456789"
TASK_FOLDER = "C:\\ProgramData\\wgharness\\tasks\\" + TASK
KNOWN_RENDERINGS = [
    pytest.param(
        lambda: ps_quote("it's $HOME `n \u2019q\""), "'it''s $HOME `n \u2019\u2019q\"'", id="ps_quote"
    ),
    pytest.param(
        lambda: windows_cmdline(["a b", 'say "hi"', "", "C:\\dir\\", "plain"]),
        '"a b" "say \\"hi\\"" "" C:\\dir\\ plain',
        id="windows_cmdline",
    ),
    pytest.param(
        lambda: sftp_path("C:\\ProgramData\\wgharness\\wg0.conf"),
        "/C:/ProgramData/wgharness/wg0.conf",
        id="sftp_path",
    ),
    pytest.param(
        lambda: render_powershell([WG, "show", "wg0", "dump"]),
        PREAMBLE_891F216 + "$ErrorActionPreference = 'Continue'\n"
        "try { & 'C:\\Program Files\\WireGuard\\wg.exe' 'show' 'wg0' 'dump' } "
        "catch [System.Management.Automation.CommandNotFoundException] {\n"
        "  [Console]::Error.WriteLine($_.Exception.Message); exit 127\n"
        "}\n"
        "exit $LASTEXITCODE\n",
        id="native",
    ),
    pytest.param(
        lambda: render_powershell(
            ["iperf3.exe", "-c", "10.0.0.1", "it's"],
            env={"A": "x y"},
            stdin_path="C:\\ProgramData\\wgharness\\stdin-1",
        ),
        PREAMBLE_891F216 + "${env:A} = 'x y'\n"
        "$ErrorActionPreference = 'Continue'\n"
        "try { try { [System.IO.File]::ReadAllText('C:\\ProgramData\\wgharness\\stdin-1') "
        "| & 'iperf3.exe' '-c' '10.0.0.1' 'it''s' } "
        "finally { Remove-Item -LiteralPath 'C:\\ProgramData\\wgharness\\stdin-1' -Force -ErrorAction SilentlyContinue } } "
        "catch [System.Management.Automation.CommandNotFoundException] {\n"
        "  [Console]::Error.WriteLine($_.Exception.Message); exit 127\n"
        "}\n"
        "exit $LASTEXITCODE\n",
        id="native-env-stdin",
    ),
    pytest.param(
        lambda: render_powershell([WIREGUARD, "/installtunnelservice", "C:\\a b\\wg0.conf"], gui=True),
        PREAMBLE_891F216 + "$o = [System.IO.Path]::GetTempFileName()\n"
        "$e = [System.IO.Path]::GetTempFileName()\n"
        "try {\n"
        "  $p = Start-Process -FilePath 'C:\\Program Files\\WireGuard\\wireguard.exe' "
        "-ArgumentList '/installtunnelservice \"C:\\a b\\wg0.conf\"' -NoNewWindow -Wait -PassThru "
        "-RedirectStandardOutput $o -RedirectStandardError $e\n"
        "} catch {\n"
        "  [Console]::Error.WriteLine($_.Exception.Message); exit 127\n"
        "}\n"
        "[Console]::Out.Write([System.IO.File]::ReadAllText($o))\n"
        "[Console]::Error.Write([System.IO.File]::ReadAllText($e))\n"
        "Remove-Item -LiteralPath $o, $e -Force -ErrorAction SilentlyContinue\n"
        "exit $p.ExitCode\n",
        id="gui",
    ),
    pytest.param(
        lambda: encoded_command("exit 0\n"),
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ZQB4AGkAdAAgADAACgA=",
        id="encoded_command",
    ),
    pytest.param(
        lambda: runner_script(TASK_FOLDER, ["C:\\iperf\\iperf3.exe", "-s", "-p", "5201"], {"X": "1"}),
        PREAMBLE_891F216 + "${env:X} = '1'\n"
        "$d = 'C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-0123456789'\n"
        "function Put($n, $v) { [System.IO.File]::WriteAllText((Join-Path $d ($n + '.tmp')), [string]$v); "
        "Move-Item -Force (Join-Path $d ($n + '.tmp')) (Join-Path $d $n) }\n"
        "try {\n"
        "  $p = Start-Process -FilePath 'C:\\iperf\\iperf3.exe' -ArgumentList '-s -p 5201' -WorkingDirectory $d "
        "-NoNewWindow -PassThru -RedirectStandardOutput (Join-Path $d 'stdout') "
        "-RedirectStandardError (Join-Path $d 'stderr')\n"
        "} catch {\n"
        "  [System.IO.File]::WriteAllText((Join-Path $d 'stderr'), $_.Exception.Message)\n"
        "  Put 'pid' 0; Put 'exit' 127; exit 127\n"
        "}\n"
        "$null = $p.Handle  # keeps ExitCode readable after the exit (Windows PowerShell 5.1)\n"
        "Put 'pid' $p.Id\n"
        "$p.WaitForExit()\n"
        "Put 'exit' $p.ExitCode\n",
        id="runner_script",
    ),
    pytest.param(
        lambda: secure_script("C:\\ProgramData\\wgharness\\wg0.conf"),
        "[System.IO.File]::WriteAllBytes('C:\\ProgramData\\wgharness\\wg0.conf', [byte[]]::new(0))\n"
        "& 'icacls.exe' 'C:\\ProgramData\\wgharness\\wg0.conf' '/inheritance:r' '/grant:r' "
        "'*S-1-5-18:(F)' '*S-1-5-32-544:(F)' '/q' | Out-Null\n"
        'if ($LASTEXITCODE -ne 0) { [Console]::Error.WriteLine("icacls exited with $LASTEXITCODE"); '
        "exit $LASTEXITCODE }\n",
        id="secure_script-file",
    ),
    pytest.param(
        lambda: secure_script("C:\\ProgramData\\wgharness", folder=True),
        "$null = New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\wgharness'\n"
        "& 'icacls.exe' 'C:\\ProgramData\\wgharness' '/inheritance:r' '/grant:r' "
        "'*S-1-5-18:(OI)(CI)(F)' '*S-1-5-32-544:(OI)(CI)(F)' '/q' | Out-Null\n"
        'if ($LASTEXITCODE -ne 0) { [Console]::Error.WriteLine("icacls exited with $LASTEXITCODE"); '
        "exit $LASTEXITCODE }\n",
        id="secure_script-folder",
    ),
    pytest.param(
        lambda: register_task_script(TASK, TASK_FOLDER, 30.0),
        "$a = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument '-NoProfile -NonInteractive "
        "-ExecutionPolicy Bypass -File C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-0123456789\\run.ps1'\n"
        "$u = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest\n"
        "$s = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -AllowStartIfOnBatteries "
        "-DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -Priority 4\n"
        "$null = Register-ScheduledTask -TaskPath '\\wgharness\\' -TaskName 'iperf3.exe-0123456789' "
        "-Action $a -Principal $u -Settings $s -Force\n"
        "Start-ScheduledTask -TaskPath '\\wgharness\\' -TaskName 'iperf3.exe-0123456789'\n"
        "$f = Join-Path 'C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-0123456789' 'pid'\n"
        "for ($i = 0; $i -lt 300; $i++) {\n"
        "  if (Test-Path -LiteralPath $f) { Get-Content -LiteralPath $f -Raw; exit 0 }\n"
        "  Start-Sleep -Milliseconds 100\n"
        "}\n"
        "[Console]::Error.WriteLine('the scheduled task wrote no pid file'); exit 3\n",
        id="register_task_script",
    ),
    pytest.param(
        lambda: kill_task_script(TASK, TASK_FOLDER, 4242, 2.0),
        "if (-not (Test-Path -LiteralPath 'C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-0123456789\\exit')) {\n"
        "  Stop-Process -Id 4242 -Force -ErrorAction SilentlyContinue\n"
        "  for ($i = 0; $i -lt 20 -and -not (Test-Path -LiteralPath "
        "'C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-0123456789\\exit'); $i++) { Start-Sleep -Milliseconds 100 }\n"
        "}\n"
        "Unregister-ScheduledTask -TaskPath '\\wgharness\\' -TaskName 'iperf3.exe-0123456789' "
        "-Confirm:$false -ErrorAction SilentlyContinue\n"
        "if (Test-Path -LiteralPath 'C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-0123456789\\exit') "
        "{ Get-Content -LiteralPath 'C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-0123456789\\exit' -Raw }\n"
        "exit 0\n",
        id="kill_task_script",
    ),
]


@pytest.mark.parametrize(("render", "expected"), KNOWN_RENDERINGS)
def test_known_renderings_are_what_they_were(render: Callable[[], str], expected: str) -> None:
    assert render() == expected


# -- the target -------------------------------------------------------------


def target() -> tuple[WindowsTarget, FakeConduit]:
    fake = FakeConduit()
    return WindowsTarget("bench-w1", fake), fake


def test_run_keeps_the_exit_status_and_the_callers_argv():
    host, fake = target()
    fake.on(r"'iperf3\.exe'", (3, "out\r\n", ""))
    result = host.run(["iperf3.exe", "-s"])
    assert (result.status, result.argv, result.stdout) == (3, ("iperf3.exe", "-s"), "out\r\n")
    assert host.describe(["iperf3.exe", "-s"]) == fake.lines[0]


def test_input_goes_through_a_file_on_the_host():
    host, fake = target()
    host.run(["wg.exe", "setconf", "wgh0", "-"], input=b"[Interface]\n")
    [(path, data)] = fake.files.items()
    assert path.startswith("/C:/ProgramData/wgharness/stdin-") and data == b"[Interface]\n"
    assert "ReadAllText('C:\\ProgramData\\wgharness\\stdin-" in fake.scripts[0]


def test_check_turns_a_native_error_record_into_one_line():
    host, fake = target()
    fake.on(r"'show'", (1, "", recorded("ps_error_native_clixml.txt")))
    with pytest.raises(CommandError) as info:
        host.check([WG, "show", "wgh0", "dump"])
    message = str(info.value)
    assert message == (
        f"bench-w1: `{WG} show wgh0 dump` exited with 1: "
        "wg.exe : Unable to access interface: No such file or directory"
    )
    assert "\n" not in message


def test_check_ps_names_host_and_command_for_a_cmdlet_error():
    host, fake = target()
    fake.on("New-NetFirewallRule", (1, "", recorded("ps_error_firewall_clixml.txt")))
    with pytest.raises(InfraError) as info:
        host.allow_inbound(5201)
    assert re.fullmatch(
        r"bench-w1: adding firewall rule 'wgharness bench-w1 iperf3 TCP/5201 [0-9a-f]{8}' failed \(status 1\): "
        r"New-NetFirewallRule : Access is denied\.",
        str(info.value),
    )


def test_error_summaries_of_recorded_stderr():
    assert powershell_error_summary(recorded("ps_error_getitem.txt")) == (
        "Get-Item : Cannot find path 'C:\\ProgramData\\wgharness\\tasks\\iperf3.exe-5f0c9a7e21\\exit' "
        "because it does not exist."
    )
    assert powershell_error_summary(recorded("wireguard_exe_error.txt")) == (
        "2024/05/03 10:20:30 Error: Tunnel already installed and running"
    )
    assert powershell_error_summary("") == ""
    text = decode_clixml(recorded("ps_error_firewall_clixml.txt"))
    assert "Preparing modules" not in text
    assert text.splitlines()[-2] == "    + FullyQualifiedErrorId : Windows System Error 5,New-NetFirewallRule"


def test_firewall_rules_are_added_and_removed_at_teardown():
    host, fake = target()
    tcp = host.allow_inbound(5201)
    udp = host.allow_inbound(5201, "udp")
    [add_tcp, add_udp] = fake.calls("New-NetFirewallRule")
    assert (
        f"-DisplayName {ps_quote(tcp)} -Group 'wgharness' -Direction Inbound -Action Allow -Protocol TCP"
        in add_tcp
    )
    assert "-LocalPort 5201 -Profile Any" in add_tcp and "-Protocol UDP" in add_udp
    host.remove_rule(tcp)
    host.teardown()
    removed = fake.calls("Remove-NetFirewallRule")
    assert [ps_literals(s)[0] for s in removed] == [tcp, udp]
    with pytest.raises(ValueError):
        host.allow_inbound(0)


def test_facts_from_recorded_json():
    host, fake = target()
    fake.on("ConvertTo-Json", (0, recorded("facts.json"), ""))
    facts = host.facts()
    assert (facts.hostname, facts.os, facts.kernel, facts.arch) == (
        "BENCH-W1",
        "Microsoft Windows Server 2022 Datacenter",
        "10.0.20348.2340",
        "x86_64",
    )
    assert (facts.cpu_model, facts.cores, facts.memory_bytes) == (
        "AMD EPYC 7443P 24-Core Processor",
        48,
        67108348 * 1024,
    )
    assert facts.tools == {"wireguard": "0.5.3", "wg": "1.0.20210914", "iperf3": "3.16"}
    assert facts.extra == {
        "windows_build": "20348.2340",
        "client_version": "0.5.3",
        "nt_version": "0.10.1",
        "nic": "Ethernet 2: Mellanox ConnectX-5 Adapter (Up, 25 Gbps); "
        "Ethernet: Intel(R) Ethernet Connection (7) I219-LM (Up, 1 Gbps)",
        "system": "Supermicro AS -1114S-WTRT",
        "task_priority": "4 (normal; background programs)",
    }
    assert facts.virtualization == "bare metal"
    assert facts.tcp_congestion_control == "Compat=NewReno, Datacenter=CUBIC, Internet=CUBIC"
    assert facts.socket_buffers == {"autotuning": "Compat=Normal, Datacenter=Normal, Internet=Normal"}
    assert facts.cpu_governor == "High performance"  # the active power plan
    with pytest.raises(ParseError):
        parse_windows_facts("not json")
    # A host that printed none of them (an older facts script): left empty.
    old = json.loads(recorded("facts.json"))
    del old["tcp"], old["powerplan"]
    facts = parse_windows_facts(json.dumps(old))
    assert (facts.tcp_congestion_control, facts.socket_buffers, facts.cpu_governor) == ("", {}, "")


def test_link_offloads_from_recorded_json():
    """The lab link's interface (Find-NetRoute to the address asked for, a lookup) and
    its offloads; a script that fails or prints no JSON tells nothing."""
    host, fake = target()
    fake.on("Find-NetRoute", (0, recorded("link.json"), ""))
    assert host.link_facts("192.0.2.1") == (
        "Ethernet 2",
        {
            "lso-ipv4": "on",
            "lso-ipv6": "on",
            "rsc-ipv4": "off",
            "rsc-ipv6": "off",
            "checksum-tcp-ipv4": "RxTxEnabled",
            "checksum-udp-ipv4": "RxTxEnabled",
            "uso-ipv4": "on",
        },
    )
    assert "192.0.2.1" in ps_literals(fake.calls("Find-NetRoute")[0])
    assert parse_windows_link('{"interface":"Ethernet","LsoIPv4":null,"ChecksumTcpIPv4":""}') == (
        "Ethernet",
        {},
    )
    host, fake = target()
    fake.on("Find-NetRoute", (1, "", "Find-NetRoute : not found"))
    assert host.link_facts("192.0.2.1") == ("", {})
    host, fake = target()
    fake.on("Find-NetRoute", (0, "garbage", ""))
    assert host.link_facts("192.0.2.1") == ("", {})


# -- background processes (scheduled tasks) -------------------------------------


def test_start_runs_a_scheduled_task_and_kill_stops_it():
    host, fake = target()
    fake.on("Register-ScheduledTask", (0, "4242\r\n", ""))
    exits: list[str] = []
    fake.on(r"Get-Content -LiteralPath '[^']*\\exit' -Raw }\n$", lambda s: (0, exits[0] if exits else "", ""))
    fake.on("Stop-Process", lambda s: (0, exits[0] if exits else "-1\r\n", ""))
    process = host.start(["C:\\iperf\\iperf3.exe", "-s", "-p", "5201"], env={"X": "1"})
    assert process.pid == 4242
    [mkdir] = fake.calls("New-Item -ItemType Directory")
    folder = ps_literals(mkdir)[-1]
    assert re.fullmatch(r"C:\\ProgramData\\wgharness\\tasks\\iperf3\.exe-[0-9a-f]{10}", folder)
    runner = fake.files["/" + folder.replace("\\", "/") + "/run.ps1"].decode("utf-8-sig")
    assert runner == runner_script(folder, ["C:\\iperf\\iperf3.exe", "-s", "-p", "5201"], {"X": "1"})
    assert "Start-Process -FilePath 'C:\\iperf\\iperf3.exe' -ArgumentList '-s -p 5201'" in runner
    assert "${env:X} = '1'" in runner and "Put 'pid' $p.Id" in runner and "Put 'exit' $p.ExitCode" in runner
    [register] = fake.calls("Register-ScheduledTask")
    task = folder.rsplit("\\", 1)[1]
    assert (
        "New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest" in register
    )
    assert f"-TaskPath '\\wgharness\\' -TaskName '{task}'" in register
    assert f"Start-ScheduledTask -TaskPath '\\wgharness\\' -TaskName '{task}'" in register
    assert f"-File {folder}\\run.ps1" in register
    assert process.poll() is None
    exits.append("0\r\n")
    assert process.wait(timeout=5) == 0
    assert process.kill() == 0  # already ended: no Stop-Process for a finished program
    [kill] = fake.calls("Unregister-ScheduledTask")
    assert "Stop-Process -Id 4242 -Force" in kill and f"-TaskName '{task}' -Confirm:$false" in kill
    assert process.kill() == 0 and len(fake.calls("Unregister-ScheduledTask")) == 1
    fake.files["/" + folder.replace("\\", "/") + "/stdout"] = b"Server listening on 5201\n"
    assert process.output() == (b"Server listening on 5201\n", b"")


def test_start_reports_a_task_that_never_starts():
    host, fake = target()
    fake.on("Register-ScheduledTask", (3, "", "the scheduled task wrote no pid file\r\n"))
    with pytest.raises(
        InfraError,
        match=r"bench-w1: starting `prog.exe` as scheduled task prog\.exe-[0-9a-f]{10} failed \(status 3\)",
    ):
        host.start(["prog.exe"])


# -- parsers of WireGuard for Windows output -------------------------------------


def test_wg_exe_dump_parses_like_linux():
    dump = parse_wg_dump(recorded("wg_show_dump_nt.txt"))
    assert (dump.public_key, dump.listen_port, dump.fwmark) == (PUB, 51820, None)
    [peer] = dump.peers
    assert peer.allowed_ips == ("0.0.0.0/1", "128.0.0.0/1")
    assert (peer.rx_bytes, peer.tx_bytes, peer.latest_handshake) == (1082853372, 3311170840, 1714724431)


def test_dumplog_lines_and_the_filter():
    lines = parse_dumplog(recorded("dumplog.txt"))
    assert lines[0].tag == "MGR" and lines[0].tunnel is None
    assert lines[0].message.startswith("Starting WireGuard/0.5.3")
    mine = filter_dumplog(recorded("dumplog.txt"), "wgh0").splitlines()
    assert len(mine) == 24
    assert all("[TUN] [wgh0] " in line for line in mine)
    assert mine[-1] == "2024-05-03 10:21:45.431200: [TUN] [wgh0] Interface destroyed"
    assert not any("office" in line for line in mine)
    assert filter_dumplog("garbage\n" + recorded("dumplog.txt"), "office").count("\n") == 7
    with pytest.raises(ParseError, match="dumplog line 1"):
        parse_dumplog("2024-05-03 10:11:09: [MGR] no microseconds\n")


# -- the tunnel configuration ------------------------------------------------


def test_conf_splits_default_routes():
    text = render_tunnel_conf(cfg(("0.0.0.0/0", "::/0", "10.0.0.0/8")))
    assert text == (
        "[Interface]\r\n"
        f"PrivateKey = {PRIV}\r\n"
        "ListenPort = 51820\r\n"
        "Address = 198.19.0.2/24\r\n"
        "MTU = 1420\r\n"
        "\r\n"
        "[Peer]\r\n"
        f"PublicKey = {PEER}\r\n"
        "AllowedIPs = 0.0.0.0/1, 128.0.0.0/1, ::/1, 8000::/1, 10.0.0.0/8\r\n"
        "Endpoint = 198.18.0.1:51820\r\n"
    )


def test_conf_with_table_off_keeps_allowed_ips():
    text = render_tunnel_conf(cfg(), table_off=True)
    assert "Table = off\r\n" in text and "AllowedIPs = 0.0.0.0/0\r\n" in text


def test_routes_skip_the_address_prefix():
    assert split_default_routes(("198.19.0.0/24",)) == ("198.19.0.0/24",)
    assert routes_for(cfg(("198.19.0.1/32", "0.0.0.0/0", "fd00::/64"))) == (
        "0.0.0.0/1",
        "128.0.0.0/1",
        "fd00::/64",
    )


@pytest.mark.parametrize(
    ("version", "implementation", "switch"),
    [
        ("0.4.0", "kernel", ("ExperimentalKernelDriver", 1)),
        ("0.4", "userspace", ("ExperimentalKernelDriver", 0)),
        ("0.4.7", "kernel", ("ExperimentalKernelDriver", 1)),
        ("0.4.8", "kernel", ("UseUserspaceImplementation", 0)),
        ("0.4.11", "userspace", ("UseUserspaceImplementation", 1)),
        ("0.5.3", "kernel", None),
        ("0.3.17", "userspace", None),
    ],
)
def test_registry_switch_per_client_version(version, implementation, switch):
    assert implementation_switch(version, implementation) == switch


def test_registry_switch_refuses_paths_a_client_lacks():
    with pytest.raises(ValueError, match="predates"):
        implementation_switch("0.3.17", "kernel")
    with pytest.raises(ValueError, match="wireguard-go-windows"):
        implementation_switch("0.5.3", "userspace")


# -- the WireGuardNT driver --------------------------------------------------------

VERSIONS = "client=0.5.3\r\nwg=wireguard-tools v1.0.20210914 - https://git.zx2c4.com/wireguard-tools/\r\nnt=0.10.1\r\n"


def nt_host(installed: str = "0.5.3") -> tuple[WindowsTarget, FakeConduit, dict[str, bool]]:
    host, fake = target()
    state = {"up": False}
    versions = {"client": installed}

    def install(script: str) -> Reply:
        if "/installtunnelservice" in script:
            state["up"] = True
        if "/uninstalltunnelservice" in script:
            state["up"] = False
        if "'/i " in script or "/i C:" in script:
            versions["client"] = msi_version_from_name(re.search(r"/i (\S+\.msi)", script).group(1))  # type: ignore[union-attr]
        return (0, "", "")

    def dump(script: str) -> Reply:
        if state["up"]:
            return (0, recorded("wg_show_dump_nt.txt"), "")
        return (1, "", recorded("ps_error_native_clixml.txt"))

    fake.on("'client=' \\+", lambda s: (0, VERSIONS.replace("0.5.3", versions["client"]), ""))
    fake.on(r"'show' 'wgh0' 'dump'", dump)
    fake.on("/dumplog", (0, recorded("dumplog.txt"), ""))
    fake.on("ObjectNotFound", (0, "gone\r\n", ""))  # service_gone_script
    fake.on("Get-Service", lambda s: (0, "present\r\n" if state["up"] else "absent\r\n", ""))
    fake.on("Start-Process", install)
    fake.on("PSChildName", (0, "{4B1B8C5E-6A0F-4C3A-9E4B-2D7E1F0A9C11}\r\n", ""))
    return host, fake, state


def test_nt_check_reads_client_wg_and_driver_versions():
    host, fake, _ = nt_host()
    info = WireguardNT(host, "wgh0").check()
    assert (info.name, info.version, info.program) == (
        "wireguard-nt",
        "0.5.3 (WireGuardNT 0.10.1)",
        WIREGUARD,
    )
    assert parse_versions("client=\nwg=\nnt=\n") == {"client": "", "wg": "", "nt": ""}
    fake.rules.insert(0, ("'client=' \\+", (0, "client=\nwg=\nnt=\n", "")))
    with pytest.raises(InfraError, match="wireguard.exe not found"):
        WireguardNT(host, "wgh0").check()


def test_nt_up_dump_logs_down_commands():
    host, fake, state = nt_host()
    driver = WireguardNT(host, "wgh0", up_timeout=5)
    driver.up(cfg())
    conf = fake.files["/C:/ProgramData/wgharness/wgh0.conf"].decode()
    assert "AllowedIPs = 0.0.0.0/1, 128.0.0.0/1\r\n" in conf
    [install] = fake.calls("/installtunnelservice")
    assert (
        f"Start-Process -FilePath '{WIREGUARD}' "
        "-ArgumentList '/installtunnelservice C:\\ProgramData\\wgharness\\wgh0.conf' -NoNewWindow -Wait -PassThru"
    ) in install
    assert f"& '{WG}' 'show' 'wgh0' 'dump'" in fake.calls("'show'")[0]
    assert driver.stats().peers[0].tx_bytes == 3311170840
    assert driver.dump() == recorded("wg_show_dump_nt.txt")
    [log] = driver.logs().values()
    assert log.decode().count("\n") == 24 and b"office" not in log
    driver.down()
    [uninstall] = fake.calls("/uninstalltunnelservice")
    assert "-ArgumentList '/uninstalltunnelservice wgh0'" in uninstall
    assert "Get-Service -Name 'WireGuardTunnel$wgh0'" in fake.calls("Get-Service")[0]
    assert "Remove-Item -LiteralPath 'C:\\ProgramData\\wgharness\\wgh0.conf'" in fake.scripts[-1]
    assert not state["up"]
    driver.down()  # twice: no second uninstall
    assert len(fake.calls("/uninstalltunnelservice")) == 1


def test_nt_down_after_failed_up_and_table_off():
    host, fake, _ = nt_host()
    fake.rules.insert(0, ("/installtunnelservice", (1, "", recorded("wireguard_exe_error.txt"))))
    driver = WireguardNT(host, "wgh0", table_off=True)
    with pytest.raises(CommandError, match="exited with 1: .*Error: Tunnel already installed and running"):
        driver.up(cfg())
    assert "Table = off" in fake.files["/C:/ProgramData/wgharness/wgh0.conf"].decode()
    driver.down()
    assert fake.calls("/uninstalltunnelservice") == []
    assert "Remove-Item" in fake.scripts[-1]


def test_nt_up_times_out_with_the_tunnels_log():
    host, fake, state = nt_host()
    fake.rules.insert(0, ("/installtunnelservice", (0, "", "")))
    driver = WireguardNT(host, "wgh0", up_timeout=0)
    with pytest.raises(InfraError) as info:
        driver.up(cfg())
    message = str(info.value)
    assert message.startswith(
        "bench-w1: tunnel wgh0 not up after 0s (wg show: wg.exe : Unable to access interface"
    )
    assert "Interface destroyed" in message and "\n" not in message


def test_nt_downgrade_msi_removedriver_and_registry_switch():
    host, fake, _ = nt_host(installed="0.5.3")
    msi = "C:\\wgharness\\msi\\wireguard-amd64-0.4.11.msi"
    driver = WireguardNT(host, "wgh0", msi=msi, remove_driver=True, implementation="userspace", up_timeout=5)
    driver.up(cfg())
    msiexec = fake.calls("'msiexec.exe'")
    assert len(msiexec) == 2
    assert (
        "-ArgumentList '/x {4B1B8C5E-6A0F-4C3A-9E4B-2D7E1F0A9C11} /qn /norestart'" in msiexec[0]
    )  # uninstall first
    assert (
        f"-ArgumentList '/i {msi} DO_NOT_LAUNCH=1 /qn /norestart /l*v C:\\ProgramData\\wgharness\\msi-wgh0.log'"
        in msiexec[1]
    )
    assert "-ArgumentList '/removedriver'" in fake.calls("/removedriver")[0]
    [reg] = fake.calls("New-ItemProperty")
    assert (
        "-Path 'HKLM:\\Software\\WireGuard' -Name 'UseUserspaceImplementation' -PropertyType DWord -Value 1"
        in reg
    )
    order = [
        i
        for i, s in enumerate(fake.scripts)
        if "msiexec" in s or "/removedriver" in s or "New-ItemProperty" in s
    ]
    assert order == sorted(order) and order[-1] < next(
        i for i, s in enumerate(fake.scripts) if "/installtunnelservice" in s
    )
    driver.down()
    assert (
        "Remove-ItemProperty -Path 'HKLM:\\Software\\WireGuard' -Name 'UseUserspaceImplementation'"
        in (fake.scripts[-1])
    )


def test_nt_upgrade_needs_no_uninstall_and_bad_options_are_usage_errors():
    host, fake, _ = nt_host(installed="0.5.2")
    driver = WireguardNT(host, "wgh0", msi="C:\\m\\wireguard-amd64-0.5.3.msi")
    driver.install()
    assert [("/x" in s) for s in fake.calls("'msiexec.exe'")] == [False]
    with pytest.raises(UsageError, match="msi_version"):
        WireguardNT(host, "wgh0", msi="C:\\m\\latest.msi")
    with pytest.raises(UsageError, match="tunnel name"):
        WireguardNT(host, "wg$0")
    with pytest.raises(UsageError, match="no userspace"):
        WireguardNT(host, "wgh0", implementation="userspace").prepare()


def test_nt_msi_failure_is_an_infra_error():
    host, fake, _ = nt_host(installed="")
    fake.rules.insert(0, ("'msiexec.exe'", (1603, "", "")))
    driver = WireguardNT(host, "wgh0", msi="C:\\m\\wireguard-amd64-0.5.3.msi")
    with pytest.raises(InfraError, match=r"exited with 1603 \(see C:\\ProgramData\\wgharness\\msi-wgh0.log"):
        driver.install()


def test_nt_dll_drop_in():
    host, fake, _ = nt_host()
    WireguardNT(host, "wgh0", dll="C:\\builds\\wireguard.dll").prepare()
    [copy] = fake.calls("Copy-Item")
    assert (
        "-LiteralPath 'C:\\builds\\wireguard.dll' -Destination 'C:\\Program Files\\WireGuard\\wireguard.dll'"
        in copy
    )


# -- the wireguard-go on Windows driver -----------------------------------------------


def test_wireguard_go_windows_up_and_down():
    host, fake = target()
    fake.on("Register-ScheduledTask", (0, "5150\r\n", ""))
    fake.on(r"'show' 'wgh1' 'dump'", (0, recorded("wg_show_dump_go.txt"), ""))
    fake.on("Stop-Process", (0, "-1\r\n", ""))

    def get(path: str) -> bytes:
        if path.endswith("/stdout"):
            return recorded("wireguard_go_stdout.txt").encode()
        return b""

    fake.get = get  # type: ignore[method-assign]
    driver = WireguardGoWindows(host, "wgh1", program="C:\\wg-go\\wireguard-go.exe")
    fake.on("missing", (0, "", ""))
    assert driver.check().program == "C:\\wg-go\\wireguard-go.exe"
    driver.up(cfg(("198.19.0.1/32", "0.0.0.0/0"), name="wgh1"))
    assert driver.version == "0.0.20230223"
    runner = next(v for k, v in fake.files.items() if k.endswith("run.ps1")).decode("utf-8-sig")
    assert "Start-Process -FilePath 'C:\\wg-go\\wireguard-go.exe' -ArgumentList 'wgh1'" in runner
    setconf = fake.files["/C:/ProgramData/wgharness/wgh1.setconf"].decode()
    assert setconf.startswith("[Interface]\nPrivateKey = ") and "Address" not in setconf
    assert (
        f"& '{WG}' 'setconf' 'wgh1' 'C:\\ProgramData\\wgharness\\wgh1.setconf'" in fake.calls("'setconf'")[0]
    )
    [address] = fake.calls("New-NetIPAddress")
    assert (
        "-InterfaceAlias 'wgh1' -IPAddress '198.19.0.2' -PrefixLength 24 -PolicyStore ActiveStore" in address
    )
    routes = [ps_literals(s)[1] for s in fake.calls("New-NetRoute")]
    assert routes == ["0.0.0.0/1", "128.0.0.0/1"]
    [mtu] = fake.calls("'netsh'")
    assert "& 'netsh' 'interface' 'ipv4' 'set' 'subinterface' 'wgh1' 'mtu=1420' 'store=active'" in mtu
    assert driver.stats().peers[0].persistent_keepalive == 25
    driver.down()
    [remove] = fake.calls("Remove-NetRoute")
    assert "-DestinationPrefix '0.0.0.0/1'" in remove and "-DestinationPrefix '128.0.0.0/1'" in remove
    assert "Stop-Process -Id 5150 -Force" in fake.calls("Unregister-ScheduledTask")[0]
    assert "Remove-Item -LiteralPath 'C:\\ProgramData\\wgharness\\wgh1.setconf'" in fake.scripts[-1]
    driver.down()  # twice: the task is not stopped again
    assert len(fake.calls("Unregister-ScheduledTask")) == 1


def test_wireguard_go_windows_check_names_missing_files():
    host, fake = target()
    fake.on("missing", (0, "missing C:\\wg-go\\wintun.dll\r\n", ""))
    with pytest.raises(InfraError, match=r"bench-w1: not found: C:\\wg-go\\wintun.dll"):
        WireguardGoWindows(host, "wgh1", program="C:\\wg-go\\wireguard-go.exe").check()


def test_wireguard_go_windows_exit_before_the_pipe():
    host, fake = target()
    fake.on("Register-ScheduledTask", (0, "5150\r\n", ""))
    fake.on(r"'show' 'wgh1' 'dump'", (1, "", recorded("ps_error_native_clixml.txt")))
    fake.on(r"\\exit' -Raw }", (0, "1\r\n", ""))
    fake.files["/C:/ProgramData/wgharness/stdout"] = b""

    def get(path: str) -> bytes:
        return b"ERROR: (wgh1) 2024/05/03 10:28:10 Failed to create TUN device: Error creating interface\n"

    fake.get = get  # type: ignore[method-assign]
    driver = WireguardGoWindows(host, "wgh1")
    with pytest.raises(InfraError, match=r"exited with 1 after .*Failed to create TUN device"):
        driver.up(cfg(name="wgh1"))
    driver.down()


# -- first contact: what a fresh Windows host needs (issue 12) -------------------------------


def go_host(program: str = "C:\\wg-go\\wireguard-go.exe") -> tuple[WindowsTarget, FakeConduit]:
    host, fake = target()
    fake.on("Register-ScheduledTask", (0, "5150\r\n", ""))
    fake.on(r"'show' 'wgh1' 'dump'", (0, recorded("wg_show_dump_go.txt"), ""))
    fake.on("Stop-Process", (0, "-1\r\n", ""))
    fake.get = lambda path: recorded("wireguard_go_stdout.txt").encode() if path.endswith("/stdout") else b""  # type: ignore[method-assign]
    return host, fake


def dual_stack(name: str) -> InterfaceConfig:
    peer = PeerConfig(PEER, ("198.19.0.1/32", "fd19::1/128"), endpoint="198.18.0.1:51820")
    return InterfaceConfig(name, PRIV, 51820, ("198.19.0.2/24", "fd19::2/64"), 1420, (peer,))


def rule_added(fake: FakeConduit, pattern: str) -> tuple[str, str]:
    """(DisplayName, script) of the one New-NetFirewallRule matching ``pattern``."""
    [script] = [s for s in fake.calls("New-NetFirewallRule") if re.search(pattern, s)]
    return ps_literals(script)[0], script


@pytest.mark.parametrize("driver", ["nt", "go"])
def test_ping_is_allowed_on_the_tunnels_addresses_and_removed_at_down(driver):
    """Windows puts a new network in the Public profile, which answers no echo request,
    and neither WireGuard for Windows nor wireguard-go adds a rule for the tunnel's own
    traffic: with the /1 halves the harness uses, wireguard-windows v1.1
    tunnel/addressconfig.go:165-176 (enableFirewall) sets doNotRestrict, so
    tunnel/firewall/blocker.go:118-136 installs only permitWireGuardService, not
    permitTunInterface; docs/netquirk.md:25 leaves such tunnels to "the normal Windows
    firewalling". So the tunnel check's first ping would go unanswered."""
    if driver == "nt":
        host, fake, _ = nt_host()
        impl: WireguardNT | WireguardGoWindows = WireguardNT(host, "wgh0", up_timeout=5)
    else:
        host, fake = go_host()
        impl = WireguardGoWindows(host, "wgh0", program="C:\\wg-go\\wireguard-go.exe")
        fake.rules.insert(0, (r"'show' 'wgh0' 'dump'", (0, recorded("wg_show_dump_go.txt"), "")))
    impl.up(dual_stack("wgh0"))
    v4, script4 = rule_added(fake, "ICMPv4")
    v6, script6 = rule_added(fake, "ICMPv6")
    assert (
        "-Direction Inbound -Action Allow -Protocol ICMPv4 -IcmpType 8 -LocalAddress '198.19.0.2'" in script4
    )
    assert "-Protocol ICMPv6 -IcmpType 128 -LocalAddress 'fd19::2' -Profile Any" in script6
    assert "-Group 'wgharness'" in script4
    assert v4.startswith(f"wgharness bench-w1 {impl.name} wgh0 ICMPv4 echo ")
    impl.down()
    removed = [ps_literals(s)[0] for s in fake.calls("Remove-NetFirewallRule")]
    assert v4 in removed and v6 in removed
    host.teardown()  # nothing left for the target to remove
    assert len(fake.calls("Remove-NetFirewallRule")) == len(removed)


def test_wireguard_go_windows_opens_its_udp_port_before_it_starts():
    """wireguard-windows permits WireGuard traffic for its own tunnel service only:
    v1.1 tunnel/firewall/rules.go:127-139 (permitWireGuardService matches the app ID of
    the calling process, the tunnel service), and docs/netquirk.md:25 ("One firewall
    rule is added ... which allows the tunnel service to send and receive WireGuard
    packets"). wireguard-go.exe gets no such rule, so a handshake initiation from the
    Linux end is dropped by Windows Firewall unless the harness allows the port."""
    host, fake = go_host()
    driver = WireguardGoWindows(host, "wgh1", program="C:\\wg-go\\wireguard-go.exe")
    driver.up(cfg(("198.19.0.1/32",), name="wgh1"))
    name, script = rule_added(fake, "-Protocol UDP")
    assert "-Protocol UDP -LocalPort 51820 -Program 'C:\\wg-go\\wireguard-go.exe' -Profile Any" in script
    added = fake.events.index("exec: " + PREAMBLE + script)
    started = next(i for i, e in enumerate(fake.events) if "Register-ScheduledTask" in e)
    assert added < started
    driver.down()
    assert name in [ps_literals(s)[0] for s in fake.calls("Remove-NetFirewallRule")]


def test_scheduled_tasks_run_at_normal_priority_as_system_and_facts_say_so():
    """Task Scheduler runs a task at priority 7 unless told (Microsoft, TaskSettings.Priority:
    7-8 below normal, 4-6 normal), and the started program inherits it. The task runs as
    SYSTEM because wg.exe only talks to a userspace interface over a pipe owned by
    LocalSystem (wireguard-tools src/ipc-uapi-windows.h:26-38, userspace_interface_file:
    EqualSid with WinLocalSystemSid, else EACCES), the owner wireguard-go sets
    (ipc/uapi_windows.go:56, ``O:SY``)."""
    host, fake = target()
    fake.on("Register-ScheduledTask", (0, "4242\r\n", ""))
    host.start(["C:\\iperf\\iperf3.exe", "-s"])
    [register] = fake.calls("Register-ScheduledTask")
    assert "New-ScheduledTaskSettingsSet" in register and " -Priority 4\n" in register
    assert "-UserId 'SYSTEM' -LogonType ServiceAccount" in register
    fake.on("ConvertTo-Json", (0, recorded("facts.json"), ""))
    assert host.facts().extra["task_priority"].startswith("4 (normal")


def test_nt_down_waits_until_windows_has_deleted_the_service():
    """wireguard-windows v1.1 manager/install.go:185-205 (UninstallTunnel) asks the
    service to stop and marks it for deletion, then returns, tolerating
    ERROR_SERVICE_MARKED_FOR_DELETE (201); InstallTunnel (139-149) refuses with "Tunnel
    already installed and running" while the old service has not stopped. So `down`
    waits for Get-Service to find nothing, waiting through a service marked for
    deletion, and the next `up` installs cleanly."""
    host, fake, state = nt_host()
    driver = WireguardNT(host, "wgh0", up_timeout=5)
    driver.up(cfg())
    driver.down()
    [wait] = fake.calls("ObjectNotFound")
    assert "Get-Service -Name 'WireGuardTunnel$wgh0' -ErrorAction SilentlyContinue -ErrorVariable err" in wait
    assert "'gone'; exit 0" in wait and "marked for deletion" in wait and "exit 3" in wait
    uninstall, gone, remove = (
        next(i for i, e in enumerate(fake.events) if pattern in e)
        for pattern in (
            "/uninstalltunnelservice",
            "ObjectNotFound",
            "Remove-Item -LiteralPath 'C:\\ProgramData\\wgharness\\wgh0.conf'",
        )
    )
    assert uninstall < gone < remove
    driver.up(cfg())  # again: installs after the old service is gone
    assert len(fake.calls("/installtunnelservice")) == 2
    # An uninstall that reports the service already marked for deletion is not an error once it goes...
    fake.rules.insert(
        0,
        (
            "/uninstalltunnelservice",
            (1, "", "Error: The specified service has been marked for deletion.\r\n"),
        ),
    )
    driver.down()
    # ...but a service that stays is, in one line naming its state.
    driver.up(cfg())
    fake.rules.insert(0, ("ObjectNotFound", (3, "", "WireGuardTunnel$wgh0 still there: StopPending\r\n")))
    with pytest.raises(InfraError) as info:
        driver.down()
    assert str(info.value) == (
        "bench-w1: `wireguard /uninstalltunnelservice wgh0` exited with 1: "
        "Error: The specified service has been marked for deletion.; WireGuardTunnel$wgh0 still there: StopPending"
    )
    assert "Remove-Item -LiteralPath 'C:\\ProgramData\\wgharness\\wgh0.conf'" in fake.scripts[-1]
    del state


@pytest.mark.parametrize(
    ("version", "flag"),
    [
        ("0.4", "/removealladapters"),
        ("0.4.10", "/removealladapters"),
        ("0.4.11", "/removedriver"),
        ("0.5.3", "/removedriver"),
        ("1.1", "/removedriver"),
    ],
)
def test_remove_driver_flag_follows_the_installed_client(version, flag):
    """wireguard-windows main.go: v0.4 to v0.4.10 have ``/removealladapters``
    (v0.4.10 main.go:78 and :318, which deletes the pool's adapters, then the driver:
    driver/driver_windows.go:195-197 DeleteDriver); v0.4.11 main.go:78 and :318 have
    ``/removedriver`` instead (driver.Uninstall, v0.4.11 driver/driver_windows.go:125,
    "removes the driver from the system if no drivers are currently in use":
    wireguard-nt api/driver.c WireGuardDeleteDriver)."""
    assert remove_driver_flag(version) == flag
    host, fake, _ = nt_host(installed=version)
    WireguardNT(host, "wgh0", remove_driver=True).prepare()
    [removal] = fake.calls("/remove")
    assert f"-ArgumentList '{flag}'" in removal


def test_remove_driver_on_a_client_without_wireguard_nt_is_a_usage_error():
    with pytest.raises(ValueError, match="predates WireGuardNT"):
        remove_driver_flag("0.3.17")
    host, fake, _ = nt_host(installed="0.3.17")
    with pytest.raises(UsageError, match="bench-w1: remove_driver: .*predates WireGuardNT"):
        WireguardNT(host, "wgh0", remove_driver=True).prepare()
    assert fake.calls("/remove") == []


def test_dumplog_keeps_the_start_up_lines_before_the_prefix():
    """wireguard-windows v1.1 tunnel/service.go:111-118 loads the configuration
    (conf.LoadFromPath) before log.SetPrefix("[NAME] "), and the deferred function
    (42-47) logs the combined error, then "Shutting down" (96), without the prefix
    (v0.4 tunnel/service.go:116-128 has the same order). Those lines are kept when
    logged in the start-up window (from the install on, until the first prefixed line
    or "Shutting down"); earlier and later unprefixed lines are not this tunnel's."""
    text = recorded("dumplog_load_failure.txt")
    since = "2024-05-03 10:20:30.950000"
    assert filter_dumplog(text, "wgh0", since).splitlines() == [
        '2024-05-03 10:20:31.004215: [TUN] Unable to load configuration from path: Invalid MTU: "70000"',
        "2024-05-03 10:20:31.004517: [TUN] Shutting down",
    ]
    assert filter_dumplog(text, "wgh0") == ""  # without the install time, nothing unprefixed
    # A tunnel that started: its prefixed lines only (the window closes at the first one).
    office = filter_dumplog(text, "office", "2024-05-03 10:14:02.000000").splitlines()
    assert len(office) == 2 and all("[office]" in line for line in office)
    # The recorded working log is unchanged by a window.
    assert filter_dumplog(recorded("dumplog.txt"), "wgh0", "2024-05-03 10:20:30.000000").count("\n") == 24


def test_nt_up_that_cannot_load_its_configuration_says_why():
    host, fake, _ = nt_host()
    fake.rules.insert(0, ("/dumplog", (0, recorded("dumplog_load_failure.txt"), "")))
    fake.rules.insert(0, ("Get-Date", (0, "2024-05-03 10:20:30.950000\r\n", "")))
    fake.rules.insert(0, ("/installtunnelservice", (0, "", "")))
    driver = WireguardNT(host, "wgh0", up_timeout=0)
    with pytest.raises(InfraError) as info:
        driver.up(cfg())
    assert "Get-Date -Format 'yyyy-MM-dd HH:mm:ss.ffffff'" in fake.calls("Get-Date")[0]
    message = str(info.value)
    assert 'Unable to load configuration from path: Invalid MTU: "70000" | ' in message
    assert "old.conf" not in message and "later.conf" not in message
    [log] = driver.logs().values()
    assert log.decode().count("\n") == 2


def test_filter_dumplog_docstring_no_longer_promises_manager_lines():
    doc = filter_dumplog.__doc__ or ""
    assert "manager's)" not in doc and "[MGR]" in doc and "dropped" in doc


def test_wireguard_go_windows_runs_at_1420_only():
    """wireguard-go's Windows main creates its TUN with MTU 0 (main_windows.go:41,
    tun.CreateTUN(interfaceName, 0)), which tun/tun_windows.go:74-77 turns into a
    forced 1420, and it takes no MTU argument; another tunnel MTU is refused in one
    line, by the driver and by the lab file."""
    host, fake = go_host()
    driver = WireguardGoWindows(host, "wgh1", program="C:\\wg-go\\wireguard-go.exe")
    other = InterfaceConfig("wgh1", PRIV, 51820, ("198.19.0.2/24",), 1380, cfg().peers)
    with pytest.raises(UsageError) as info:
        driver.up(other)
    assert str(info.value) == (
        "bench-w1: wireguard-go on Windows runs at MTU 1420 (tun/tun_windows.go), not 1380: "
        "set the tunnel's mtu to 1420"
    )
    assert fake.scripts == []  # refused before anything ran
    driver.up(cfg(("198.19.0.1/32",), name="wgh1"))
    assert all("'mtu=1420'" in s for s in fake.calls("'netsh'"))


def test_a_lab_with_another_mtu_for_wireguard_go_windows_is_refused(tmp_path):
    from harness.errors import LabError
    from harness.lab.spec import load_lab

    lab = ROOT / "labs" / "windows-go.toml"
    text = lab.read_text().replace("mtu = 1420", "mtu = 1380")
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(LabError) as info:
        load_lab(str(path))
    assert (
        str(info.value)
        == f"{path}: tunnel.mtu: wireguard-go-windows runs at MTU 1420 only (tunnel.ends[1]), not 1380"
    )
    assert load_lab(str(lab)).tunnel.mtu == 1420
    nt = (ROOT / "labs" / "windows-nt.toml").read_text().replace("mtu = 1420", "mtu = 1380")
    path.write_text(nt)
    assert load_lab(str(path)).tunnel.mtu == 1380  # WireGuardNT takes any MTU


@pytest.mark.parametrize(
    "name", ["CON", "nul", "Com1", "LPT9", "aux.conf", "PRN.a.b", ".wgh0", "wgh0.", "wg$0", "a" * 33, ""]
)
def test_tunnel_names_windows_refuses_are_refused(name):
    """wireguard-windows conf/name.go (master 5a7d225d, the same rules as v1.1 for these):
    reservedNames (15-19) compared case-insensitively with the name before its first dot
    (isReserved, 29-37; v1.1 before its last); no leading or trailing dot (hasSpecialChars,
    40; since v1.0); allowedNameFormat (27). The harness also names a file after the
    tunnel (NAME.conf, NAME.setconf), which a reserved name would make a device."""
    assert tunnel_name_problem(name)
    host, _ = target()
    with pytest.raises(UsageError, match="tunnel name"):
        WireguardNT(host, name)
    with pytest.raises(UsageError, match="adapter name"):
        WireguardGoWindows(host, name)


@pytest.mark.parametrize("name", ["wgh0", "COM10", "CONSOLE", "nul0", "a.b", "x=y+z", "LPT"])
def test_tunnel_names_windows_accepts_are_accepted(name):
    assert tunnel_name_problem(name) is None
    WireguardNT(target()[0], name)


def acl_before_put(fake: FakeConduit, path: str) -> None:
    """The icacls script for ``path`` ran, and before the file was written."""
    literal = ps_quote(path)
    acl = next(
        i for i, e in enumerate(fake.events) if e.startswith("exec: ") and "icacls" in e and literal in e
    )
    assert "put: " + sftp_path(path) in fake.events[acl:]
    assert "put: " + sftp_path(path) not in fake.events[:acl]
    script = fake.events[acl]
    assert f"[System.IO.File]::WriteAllBytes({literal}, [byte[]]::new(0))" in script
    assert (
        f"& 'icacls.exe' {literal} '/inheritance:r' '/grant:r' '*S-1-5-18:(F)' '*S-1-5-32-544:(F)'" in script
    )


def test_key_files_get_system_and_administrators_only_before_the_key():
    """C:\\ProgramData grants every user read access to what is made under it, by
    inheritance; the tunnel's configuration (NAME.conf) and wireguard-go's setconf file
    hold its private key, so they are made empty, given an ACL of LocalSystem
    (S-1-5-18) and Administrators (S-1-5-32-544) with inheritance removed, and only then
    written. The harness's folder gets the same ACL, inheritable, at setup."""
    host, fake, _ = nt_host()
    WireguardNT(host, "wgh0", up_timeout=5).up(cfg())
    acl_before_put(fake, "C:\\ProgramData\\wgharness\\wgh0.conf")
    host, fake = go_host()
    WireguardGoWindows(host, "wgh1", program="C:\\wg-go\\wireguard-go.exe").up(
        cfg(("198.19.0.1/32",), name="wgh1")
    )
    acl_before_put(fake, "C:\\ProgramData\\wgharness\\wgh1.setconf")
    host, fake = target()
    host.setup()
    [folder] = fake.calls("icacls")
    assert "'*S-1-5-18:(OI)(CI)(F)' '*S-1-5-32-544:(OI)(CI)(F)'" in folder
    assert "New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\wgharness'" in folder
    assert fake.events.index("exec: " + PREAMBLE + folder) < next(
        i for i, e in enumerate(fake.events) if "tasks'" in e
    )
    fake.rules.insert(0, ("icacls", (5, "", "icacls exited with 5\r\n")))
    with pytest.raises(
        InfraError,
        match=r"restricting C:\\ProgramData\\wgharness\\x.key to SYSTEM and Administrators failed \(status 5\): icacls exited with 5",
    ):
        host.put_secret(b"k", "C:\\ProgramData\\wgharness\\x.key")
    assert "/C:/ProgramData/wgharness/x.key" not in fake.files


@pytest.mark.parametrize(
    ("system", "virtualization"),
    [
        ({"Manufacturer": "Supermicro", "Model": "AS -1114S-WTRT", "HypervisorPresent": False}, "bare metal"),
        (
            {"Manufacturer": "Microsoft Corporation", "Model": "Virtual Machine", "HypervisorPresent": True},
            "Hyper-V",
        ),
        (
            {"Manufacturer": "QEMU", "Model": "Standard PC (Q35 + ICH9, 2009)", "HypervisorPresent": True},
            "QEMU (KVM or TCG)",
        ),
        ({"Manufacturer": "VMware, Inc.", "Model": "VMware7,1", "HypervisorPresent": True}, "VMware"),
        (
            {"Manufacturer": "Dell Inc.", "Model": "PowerEdge R650", "HypervisorPresent": True},
            "a hypervisor (Hyper-V host partition, VBS, or an unidentified guest)",
        ),
    ],
)
def test_windows_facts_say_what_the_host_runs_on(system, virtualization):
    body = recorded("facts.json")
    data = json.loads(body)
    data["system"] = system
    assert parse_windows_facts(json.dumps(data)).virtualization == virtualization
    assert parse_windows_facts(body).extra["system"] == "Supermicro AS -1114S-WTRT"
    assert "Win32_ComputerSystem" in facts_script() and "HypervisorPresent" in facts_script()


def test_a_lab_ends_program_names_wireguard_exe():
    """The orchestrator passes a lab end's ``program`` to every driver; for WireGuardNT it
    is the path of wireguard.exe (it was a TypeError)."""
    host, _ = target()
    driver = WireguardNT(host, "wgh0", program="D:\\WireGuard 0.5.3\\wireguard.exe")
    assert (
        driver.wireguard == "D:\\WireGuard 0.5.3\\wireguard.exe"
        and driver.wg == "D:\\WireGuard 0.5.3\\wg.exe"
    )
    assert WireguardNT(host, "wgh0").wireguard == WIREGUARD


def test_the_docs_the_windows_labs_point_to_exist():
    root = ROOT
    for lab in ("windows-nt.toml", "windows-go.toml"):
        named = re.findall(r"docs/[\w.-]+\.md", (root / "labs" / lab).read_text())
        assert named and all((root / d).is_file() for d in named), (lab, named)
    text = (root / "docs" / "windows.md").read_text()
    assert "## Preparing the host" in text and "## What was verified, and what was not" in text
