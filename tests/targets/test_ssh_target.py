"""The SSH target against a real OpenSSH server in a namespace (tests/support/sshd.py):
commands, quoting, background processes that outlive the channel, files,
facts, host-key checking, unreachable hosts, refused keys and a jump host.
Plus unit tests of the URL parsing and known_hosts matching."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest

from harness.errors import CommandError, InfraError, UsageError
from harness.targets.base import CommandResult
from harness.targets.local import CommandTimeout
from harness.targets.ssh import (
    RemoteFileNotFoundError,
    SshConduit,
    SshSpec,
    SshTarget,
    fingerprint,
    known_keys,
)
from tests.support.sshd import Sshd, key_fingerprint, keygen, known_hosts_line, sshd_in_namespace

# -- unit: the URL ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "user", "host", "port"),
    [
        ("ssh://root@peer", "root", "peer", 22),
        ("ssh://bench@peer.lab.example:2222", "bench", "peer.lab.example", 2222),
        ("ssh://u@10.0.0.2:22/", "u", "10.0.0.2", 22),
        ("ssh://u@[2001:db8::2]:2200", "u", "2001:db8::2", 2200),
        ("ssh://u@[::1]", "u", "::1", 22),
        ("ssh://Admin@WinBox", "Admin", "WinBox", 22),
    ],
)
def test_spec_parse(url: str, user: str, host: str, port: int) -> None:
    spec = SshSpec.parse(url)
    assert (spec.user, spec.host, spec.port) == (user, host, port)
    assert spec.host_key_policy == "strict" and spec.known_hosts == "~/.ssh/known_hosts"
    assert spec.connect_timeout == 10 and spec.jump is None and spec.key_file is None
    assert SshSpec.parse(spec.url) == spec


def test_spec_parse_options_and_names() -> None:
    jump = SshSpec.parse("ssh://j@bastion")
    spec = SshSpec.parse(
        "ssh://u@[2001:db8::2]:2200", key_file="k", jump=jump, host_key_policy="accept-new", connect_timeout=2
    )
    assert (spec.key_file, spec.jump, spec.host_key_policy, spec.connect_timeout) == (
        "k",
        jump,
        "accept-new",
        2,
    )
    assert spec.url == "ssh://u@[2001:db8::2]:2200"
    assert spec.known_hosts_name == "[2001:db8::2]:2200"
    assert SshSpec.parse("ssh://u@h").known_hosts_name == "h"
    assert SshSpec.parse("ssh://u@h:2022").known_hosts_name == "[h]:2022"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "root@peer",
        "peer",
        "http://root@peer",
        "ssh://peer",
        "ssh://@peer",
        "ssh://root:secret@peer",
        "ssh://root@peer:0",
        "ssh://root@peer:70000",
        "ssh://root@peer:ssh",
        "ssh://root@::1:22",
        "ssh://root@[peer]:22",
        "ssh://root@peer/home",
        "ssh://root@peer?become=yes",
        "ssh://root@peer?sudo=1",
        "ssh://root@peer#x",
        "ssh://root@pe er",
        "ssh://root@",
        "ssh://ro ot@peer",
    ],
)
def test_spec_parse_refuses(url: str) -> None:
    with pytest.raises(UsageError) as info:
        SshSpec.parse(url)
    message = str(info.value)
    assert "\n" not in message and "ssh://user@host" in message
    assert "secret" not in message or url == "ssh://root:secret@peer"


def test_spec_refuses_bad_fields() -> None:
    with pytest.raises(UsageError, match="host_key_policy 'yes'"):
        SshSpec("u", "h", host_key_policy="yes")
    with pytest.raises(UsageError, match="connect_timeout"):
        SshSpec("u", "h", connect_timeout=0)


# -- unit: known_hosts --------------------------------------------------------


def test_known_keys_matching(tmp_path: Path) -> None:
    keygen(tmp_path / "a")
    keygen(tmp_path / "b")
    a, b = (tmp_path / "a.pub", tmp_path / "b.pub")
    hashed = paramiko.HostKeys.hash_host("10.0.0.9")
    text = (
        "# comment\n\n"
        + known_hosts_line("peer,10.0.0.2", a)
        + known_hosts_line("[peer]:2222", b)
        + known_hosts_line("*.lab,!evil.lab", a)
        + known_hosts_line(hashed, b)
        + "@revoked "
        + known_hosts_line("old", a)
        + "garbage line\n"
    )
    fp_a, fp_b = key_fingerprint(a), key_fingerprint(b)
    assert [fingerprint(k) for k in known_keys(text, "peer").keys] == [fp_a]
    assert [fingerprint(k) for k in known_keys(text, "10.0.0.2").keys] == [fp_a]
    assert [fingerprint(k) for k in known_keys(text, "[peer]:2222").keys] == [fp_b]
    assert [fingerprint(k) for k in known_keys(text, "x.lab").keys] == [fp_a]
    assert known_keys(text, "evil.lab").keys == []
    assert [fingerprint(k) for k in known_keys(text, "10.0.0.9").keys] == [fp_b]
    old = known_keys(text, "old")
    assert old.keys == [] and [fingerprint(k) for k in old.revoked] == [fp_a]
    assert known_keys(text, "other").keys == []


# -- integration --------------------------------------------------------------


@pytest.fixture
def sshd(no_leftovers: None) -> Iterator[Sshd]:
    with sshd_in_namespace() as server:
        yield server


def spec_for(server: Sshd, **options: object) -> SshSpec:
    fields: dict[str, object] = {
        "key_file": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "connect_timeout": 2.0,
    }
    fields.update(options)
    return SshSpec.parse(server.url, **fields)


@pytest.fixture
def host(sshd: Sshd) -> Iterator[SshTarget]:
    target = SshTarget("peer", spec_for(sshd))
    target.setup()
    try:
        yield target
    finally:
        target.teardown()


def alive(host: SshTarget, pid: int) -> bool:
    """Running on the host (a zombie waiting for PID 1 to reap it is not)."""
    stat = host.run(["cat", f"/proc/{pid}/stat"]).stdout
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message, message
    assert "PRIVATE KEY" not in message
    return message


def test_the_sshd_helper_leaves_nothing(no_leftovers: None) -> None:
    with sshd_in_namespace() as server:
        assert (
            server.namespace in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        )
        assert server.directory.is_dir()
    assert not server.directory.exists()
    assert not Path(f"/proc/{server.pid}").exists()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert server.veth not in links
    assert (
        server.namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )


def test_exit_status_stdout_stderr_and_input(host: SshTarget) -> None:
    result = host.run(["sh", "-c", "cat; echo err >&2; exit 7"], input=b"hello")
    assert (result.status, result.stdout, result.stderr) == (7, "hello", "err\n")
    assert result.argv == ("sh", "-c", "cat; echo err >&2; exit 7")
    with pytest.raises(CommandError, match="exited with 7"):
        host.check(["sh", "-c", "exit 7"])
    assert host.check(["true"]).ok
    assert host.run(["no-such-program-wgh"]).status == 127
    # Big output on both streams while big input is still being sent: no deadlock.
    big = host.run(["sh", "-c", "cat; head -c 3000000 /dev/zero >&2"], input=b"y" * 3_000_000, timeout=30)
    assert (len(big.stdout_bytes), len(big.stderr_bytes)) == (3_000_000, 3_000_000)


def test_environment(host: SshTarget) -> None:
    result = host.run(
        ["sh", "-c", 'printf "%s|%s" "$WGH_A" "$WGH_B"'], env={"WGH_A": "x y", "WGH_B": "$HOME;'"}
    )
    assert result.stdout == "x y|$HOME;'"
    with pytest.raises(UsageError, match="invalid environment variable name"):
        host.run(["true"], env={"A B": "1"})


def test_arguments_arrive_intact(host: SshTarget) -> None:
    args = [
        "two words",
        "it's",
        'say "hi"',
        "$HOME",
        "${PATH}",
        "a;b",
        "x && y",
        "line1\nline2",
        "back\\slash",
        "*",
        "",
    ]
    result = host.check(["printf", "%s|", *args])
    assert result.stdout == "".join(f"{a}|" for a in args)
    assert host.describe(["echo", "a b", "$x"]) == "echo 'a b' '$x'"


def test_command_timeout(host: SshTarget) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        host.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - started < 3
    assert "did not finish within 0.5s" in one_line(info.value) and "peer" in str(info.value)
    assert host.run(["true"]).ok  # the connection is still usable


def test_background_process(host: SshTarget) -> None:
    proc = host.start(["sh", "-c", 'echo "started $WGH_X"; echo warn >&2; exec sleep 60'], env={"WGH_X": "1"})
    assert proc.poll() is None
    with pytest.raises(TimeoutError):
        proc.wait(timeout=0.3)
    assert alive(host, proc.pid)
    assert proc.output() == (b"started 1\n", b"warn\n")
    # It outlives the channel it was started on, and the whole connection.
    host.conduit.close()
    assert proc.poll() is None  # (a new connection)
    assert alive(host, proc.pid)
    status = proc.kill(grace=2)
    assert status == -15
    assert proc.kill() == status  # a second kill is harmless
    assert proc.poll() == status
    assert not alive(host, proc.pid)


def test_background_process_exit_status_and_children(host: SshTarget) -> None:
    done = host.start(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert done.wait(timeout=10) == 3
    assert done.output() == (b"out\n", b"err\n")
    # kill stops the whole process group, children included; TERM ignored -> KILL after grace.
    stubborn = host.start(["sh", "-c", "trap '' TERM; sleep 60 & echo $!; wait"])
    for _ in range(100):
        if stubborn.output()[0].strip():
            break
        time.sleep(0.05)
    child = stubborn.output()[0].decode().strip()
    assert child.isdigit()
    assert stubborn.kill(grace=0.5) == -9
    assert not alive(host, int(child))
    missing = host.start(["no-such-program-wgh"])
    assert missing.wait(timeout=10) == 127


def test_teardown_stops_processes_and_removes_its_directory(sshd: Sshd) -> None:
    target = SshTarget("peer", spec_for(sshd))
    target.setup()
    proc = target.start(["sleep", "60"])
    directory = target.check(
        ["sh", "-c", 'dirname "$(readlink -f /proc/$1/fd/1)"', "x", str(proc.pid)]
    ).stdout
    target.teardown()
    target.teardown()  # safe twice
    assert not Path(f"/proc/{proc.pid}").exists()
    assert not Path(directory.strip()).exists()


def test_put_and_get(host: SshTarget) -> None:
    base = host.check(["mktemp", "-d"]).stdout.strip()
    try:
        data = os.urandom(300_000)
        host.put(data, f"{base}/sub/dir/file.bin", mode=0o640)
        assert host.get(f"{base}/sub/dir/file.bin") == data
        assert host.check(["stat", "-c", "%a", f"{base}/sub/dir/file.bin"]).stdout.strip() == "640"
        host.put(b"secret", f"{base}/key", mode=0o600)  # replaces atomically
        host.put(b"again", f"{base}/key")
        assert host.get(f"{base}/key") == b"again"
        assert host.check(["stat", "-c", "%a", f"{base}/key"]).stdout.strip() == "600"
        assert host.check(["ls", "-A", base]).stdout.split() == ["key", "sub"]  # no temporary files
        assert host.get("/proc/sys/kernel/ostype") == b"Linux\n"
        with pytest.raises(RemoteFileNotFoundError) as info:
            host.get(f"{base}/missing")
        assert "peer" in one_line(info.value) and "missing" in str(info.value)
    finally:
        host.run(["rm", "-rf", "--", base])


def test_facts(host: SshTarget) -> None:
    facts = host.facts()
    assert facts.kernel == os.uname().release
    assert facts.cores >= 1 and facts.memory_bytes > 0 and facts.arch
    assert facts.tools["iproute2"] and facts.tools["wg"]
    # the transport, and the virtualization evidence every Linux facts script gathers (harness/parsers/virt.py)
    assert {k: facts.extra[k] for k in ("transport", "address")} == {
        "transport": "ssh",
        "address": host.spec.host,
    }
    assert facts.virtualization


def test_a_dropped_connection_is_made_again(host: SshTarget) -> None:
    # Kill this connection's sshd process from the inside: the shell's parent.
    with contextlib.suppress(InfraError):
        host.run(["sh", "-c", "kill -9 $PPID"], timeout=5)
    assert host.run(["echo", "back"]).stdout == "back\n"
    assert host.get("/proc/sys/kernel/ostype") == b"Linux\n"


def test_strict_refuses_an_unknown_host_key(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conduit = SshConduit(spec_for(sshd, known_hosts=str(empty)), name="peer")
    with pytest.raises(InfraError) as info:
        conduit.exec("true")
    message = one_line(info.value)
    assert "host key unknown" in message and sshd.host_key_fingerprint in message and "peer" in message
    assert empty.read_text() == ""
    conduit.close()


def test_accept_new_adds_the_key_then_works(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"  # neither exists yet
    conduit = SshConduit(spec_for(sshd, known_hosts=str(known_hosts), host_key_policy="accept-new"))
    assert conduit.exec("echo hi").stdout == "hi\n"
    conduit.close()
    assert known_hosts.read_text() == known_hosts_line(sshd.address, sshd.directory / "host_key.pub")
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    strict = SshConduit(spec_for(sshd, known_hosts=str(known_hosts)))
    assert strict.exec("echo again").stdout == "again\n"
    strict.close()


def test_a_changed_host_key_is_refused_even_with_accept_new(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "other")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(sshd.address, tmp_path / "other.pub"))
    before = known_hosts.read_text()
    conduit = SshConduit(spec_for(sshd, known_hosts=str(known_hosts), host_key_policy="accept-new"))
    with pytest.raises(InfraError) as info:
        conduit.exec("true")
    message = one_line(info.value)
    assert "CHANGED" in message
    assert key_fingerprint(tmp_path / "other.pub") in message and sshd.host_key_fingerprint in message
    assert known_hosts.read_text() == before
    conduit.close()


def test_an_unreachable_host_fails_within_the_timeout(sshd: Sshd) -> None:
    spec = replace(spec_for(sshd), host=sshd.unused_address)
    started = time.monotonic()
    with pytest.raises(InfraError) as info:
        SshTarget("ghost", spec).setup()
    assert time.monotonic() - started < 3.5
    message = one_line(info.value)
    assert "ghost" in message and "unreachable" in message and sshd.unused_address in message


def test_a_refused_port_is_a_clear_error(sshd: Sshd) -> None:
    with pytest.raises(InfraError, match="unreachable: Connection refused"):
        SshConduit(replace(spec_for(sshd), port=2222)).connect()


def test_a_wrong_client_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    conduit = SshConduit(spec_for(sshd, key_file=str(tmp_path / "stranger")), name="peer")
    with pytest.raises(InfraError) as info:
        conduit.connect()
    message = one_line(info.value)
    assert "authentication refused" in message and "stranger" in message and "root" in message
    with pytest.raises(UsageError, match="not found"):
        SshConduit(spec_for(sshd, key_file=str(tmp_path / "nothing"))).connect()


def test_through_a_jump_host(sshd: Sshd) -> None:
    jump = spec_for(sshd)
    target = SshTarget("peer", spec_for(sshd, jump=jump))
    target.setup()
    try:
        # The target's connection runs inside a direct-tcpip channel of the jump's.
        peer = target.check(["sh", "-c", 'echo "$SSH_CLIENT"']).stdout.split()[0]
        assert peer == sshd.address  # sshd saw the jump host (itself) connect
        proc = target.start(["sleep", "60"])
        assert proc.poll() is None
        proc.kill(grace=1)
        target.put(b"via jump", "/tmp/wgh-jump-test")
        assert target.get("/tmp/wgh-jump-test") == b"via jump"
        target.run(["rm", "-f", "/tmp/wgh-jump-test"])
    finally:
        target.teardown()
    unreachable = SshConduit(replace(spec_for(sshd, jump=jump), host=sshd.unused_address), name="ghost")
    started = time.monotonic()
    with pytest.raises(InfraError) as info:
        unreachable.connect()
    assert time.monotonic() - started < 6
    assert "unreachable through jump host" in one_line(info.value) and "ghost" in str(info.value)
    unreachable.close()


class _Recorder:
    """A conduit that keeps each command line and its stdin, answering from ``replies``."""

    name = "peer"

    def __init__(self, *replies: tuple[int, bytes, bytes]) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self.replies = list(replies)

    def exec(
        self, command: str, *, input: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        self.sent.append((command, input))
        status, out, err = self.replies.pop(0) if self.replies else (0, b"", b"")
        return CommandResult((command,), status, out, err)

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        raise AssertionError("a sudo host writes through sudo, not SFTP")

    def get(self, path: str) -> bytes:
        raise AssertionError("a sudo host reads through sudo, not SFTP")

    def close(self) -> None:
        pass


def test_url_with_sudo() -> None:
    spec = SshSpec.parse("ssh://debian@peer:2222?sudo=true")
    assert spec.sudo and spec.user == "debian" and spec.url == "ssh://debian@peer:2222?sudo=true"
    assert SshSpec.parse(spec.url) == spec and not SshSpec.parse("ssh://debian@peer?sudo=false").sudo


def test_a_sudo_host_runs_every_command_and_file_through_sudo_n() -> None:
    conduit = _Recorder()
    target = SshTarget("peer", SshSpec.parse("ssh://debian@peer?sudo=true"), conduit)
    target.run(["wg", "show"], env={"WG_HIDE_KEYS": "never"})
    assert conduit.sent[0] == ("sudo -n -- env WG_HIDE_KEYS=never wg show", None)
    secret = b"PrivateKey = YDq75GTMlSrNJX9whEcxCnaEXY9FaxN5g1Zzw6zvRi8=\n"
    target.put(secret, "/etc/wgh/wg0.conf", 0o600)
    line, stdin = conduit.sent[1]
    assert line.startswith("sudo -n -- sh -c ") and line.endswith(" wgh-put /etc/wgh/wg0.conf 600")
    assert stdin == secret and b"YDq75" not in line.encode()
    conduit.replies.append((0, b"contents", b""))
    assert target.get("/etc/wgh/wg0.conf") == b"contents"
    conduit.replies.append((2, b"", b""))
    assert target.read_optional("/nope") == b""


def test_sudo_wanting_a_password_is_one_line_naming_the_host() -> None:
    conduit = _Recorder((1, b"", b"sudo: a password is required\n"))
    target = SshTarget("peer", SshSpec.parse("ssh://debian@peer?sudo=true"), conduit)
    with pytest.raises(InfraError) as info:
        target.run(["ip", "link"])
    assert str(info.value) == (
        "peer (debian@peer:22): sudo needs a password: let debian run sudo without one (NOPASSWD), "
        "or log in as root"
    )
    plain = SshTarget(
        "peer", SshSpec.parse("ssh://debian@peer"), _Recorder((1, b"", b"sudo: a password is required\n"))
    )
    assert plain.run(["sudo", "ip", "link"]).status == 1  # not a sudo host: its own command's business
