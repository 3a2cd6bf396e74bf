"""A real OpenSSH server for tests, in a network namespace of its own.

`sshd_in_namespace()` creates a namespace joined to this machine's by a veth
pair (a /29 of 198.18.99.0/24: .1 here, .2 there, .3 unused), generates a
host key and a client key, runs ``/usr/sbin/sshd -D -e`` inside the namespace
and waits until port 22 accepts. On leaving (success, failure or Ctrl-C) it
stops sshd and whatever its sessions left in the namespace, by PID, deletes
the namespace and the veth pair, and removes its files.

sshd insists on its privilege-separation directory /run/sshd, which this
machine lacks; it gets a private tmpfs over /run in the mount namespace
`ip netns exec` already gives it, so nothing is created outside.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.run.orchestrator import new_instance_id
from tests.support.leftovers import stop

SUBNET = "198.18.99"
SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Sshd:
    """A running test server."""

    namespace: str
    address: str
    """The server's address (in the namespace)."""
    local_address: str
    """This machine's end of the veth pair."""
    unused_address: str
    """An address on the same link where nothing answers."""
    veth: str
    """The veth interface on this machine's side."""
    pid: int
    directory: Path
    client_key: Path
    known_hosts: Path
    """A known_hosts file with the server's host key."""
    host_key_type: str
    host_key_fingerprint: str
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    user: str = "root"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.address}:22"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _check(*argv: str) -> str:
    result = _run(*argv)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


def keygen(path: Path, comment: str = "wgh-test") -> None:
    """A new ed25519 key pair at ``path`` and ``path``.pub, no passphrase."""
    _check("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))


def key_fingerprint(public_key: Path) -> str:
    """``SHA256:...`` of a public key file, from ssh-keygen itself."""
    return _check("ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)).split()[1]


def known_hosts_line(name: str, public_key: Path) -> str:
    key_type, blob = public_key.read_text().split()[:2]
    return f"{name} {key_type} {blob}\n"


def _free_subnet() -> int:
    """The base of a /29 in SUBNET that no interface here uses."""
    used = _run("ip", "-o", "-4", "addr", "show").stdout
    bases = [b for b in range(0, 256, 8) if not any(f"{SUBNET}.{b + i}/" in used for i in range(8))]
    if not bases:
        raise RuntimeError(f"no free /29 left in {SUBNET}.0/24")
    return secrets.choice(bases)


def _namespace_pids(namespace: str) -> list[int]:
    result = _run("ip", "netns", "pids", namespace)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _stop_namespace_processes(namespace: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _namespace_pids(namespace)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while _namespace_pids(namespace) and time.monotonic() < deadline:
            time.sleep(0.05)


def _wait_for_port(address: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode} before listening")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"sshd does not accept on {address}:{port} after {timeout}s") from None
            time.sleep(0.02)


@contextlib.contextmanager
def sshd_in_namespace(path: str | None = None) -> Iterator[Sshd]:
    """``path``: the PATH its sessions get (sshd's ``SetEnv``), e.g. one without a tool."""
    tag = new_instance_id()  # under `no_leftovers`, its tag: what is made here is the test's
    namespace = f"wgh-{tag}-ssh"
    here, there = f"wgh{tag}sa", f"wgh{tag}sb"
    with contextlib.ExitStack() as cleanup:
        directory = Path(tempfile.mkdtemp(prefix="wgh-sshd-"))
        cleanup.callback(shutil.rmtree, directory, True)

        _check("ip", "netns", "add", namespace)
        cleanup.callback(_run, "ip", "netns", "del", namespace)
        cleanup.callback(_stop_namespace_processes, namespace)
        base = _free_subnet()
        local, address, unused = (f"{SUBNET}.{base + i}" for i in (1, 2, 3))
        _check("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", namespace)
        cleanup.callback(_run, "ip", "link", "del", here)
        _check("ip", "addr", "add", f"{local}/29", "dev", here)
        _check("ip", "link", "set", here, "up")
        _check("ip", "-n", namespace, "addr", "add", f"{address}/29", "dev", there)
        _check("ip", "-n", namespace, "link", "set", there, "up")
        _check("ip", "-n", namespace, "link", "set", "lo", "up")

        host_key = directory / "host_key"
        client_key = directory / "client_key"
        keygen(host_key, "wgh-test-host")
        keygen(client_key, "wgh-test-client")
        authorized = directory / "authorized_keys"
        shutil.copy(client_key.with_suffix(".pub"), authorized)
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(known_hosts_line(address, host_key.with_suffix(".pub")))
        config = directory / "sshd_config"
        config.write_text(
            f"Port 22\n"
            f"ListenAddress {address}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {directory / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel VERBOSE\n" + (f"SetEnv PATH={path}\n" if path else "")
        )
        log = directory / "sshd.log"
        # A private tmpfs over /run holds the /run/sshd sshd wants (see the module's doc).
        script = 'mount -t tmpfs -o mode=0755 wgh-sshd /run && mkdir /run/sshd && exec "$@"'
        argv = ["ip", "netns", "exec", namespace, "sh", "-c", script, "sh"]
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                [*argv, SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

        cleanup.callback(stop, process, 5)
        try:
            _wait_for_port(address, 22, process, timeout=10)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log.read_text(errors='replace').strip()[-500:]}") from None
        yield Sshd(
            namespace=namespace,
            address=address,
            local_address=local,
            unused_address=unused,
            veth=here,
            pid=process.pid,
            directory=directory,
            client_key=client_key,
            known_hosts=known_hosts,
            host_key_type="ssh-ed25519",
            host_key_fingerprint=key_fingerprint(host_key.with_suffix(".pub")),
        )


@contextlib.contextmanager
def sudo_user(server: Sshd, name: str, *, passwordless: bool = True) -> Iterator[str]:
    """A user ``name`` on this machine (and so on the test server, which shares its
    files) who logs in with ``server``'s client key and may sudo: without a password,
    or only with one (which it has none of). Removed on leaving, its sudoers file too.
    sshd reads the authorized keys as the user: the server's folder is opened to it."""
    if shutil.which("sudo") is None:
        raise RuntimeError("sudo is not installed (scripts/bootstrap.sh installs it)")
    sudoers = Path("/etc/sudoers.d") / f"wgh-test-{name}"
    with contextlib.ExitStack() as cleanup:
        _check(
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/bin/sh",
            name,
        )
        cleanup.callback(_run, "userdel", name)
        _check("usermod", "-p", "*", name)  # no password, not locked: sshd lets it in by key
        server.directory.chmod(0o711)
        (server.directory / "authorized_keys").chmod(0o644)
        rule = "NOPASSWD: ALL" if passwordless else "ALL"
        sudoers.write_text(f"{name} ALL=(ALL) {rule}\n")
        cleanup.callback(sudoers.unlink, True)
        sudoers.chmod(0o440)
        yield name
