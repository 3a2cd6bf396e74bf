"""Remote hosts over SSH (paramiko): the connection (`SshConduit`) and a POSIX
host reached through it (`SshTarget`).

Rules of this module:

* Host keys are checked against a known_hosts file before anything is sent
  (authentication included). ``strict`` refuses a host that is not there;
  ``accept-new`` adds an unknown host's key, like OpenSSH's
  ``StrictHostKeyChecking=accept-new``. A key that differs from the one on
  record is always refused, with both fingerprints.
* One connection per host, reused by every command and file transfer; a
  connection found dropped is made again once. A command is never re-sent
  once it has reached the host.
* Command lines are built with `shlex.join` only; the shell scripts here are
  fixed text that receive their data as positional arguments.
* Errors are one line and name the host. Private keys never appear in a
  message or a log: only the key file's path does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paramiko

from harness.errors import InfraError, UsageError
from harness.parsers.facts import HostFacts
from harness.targets.base import CommandResult, Process, Target
from harness.targets.conduit import Conduit
from harness.targets.local import CommandTimeout

HOST_KEY_POLICIES = ("strict", "accept-new")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")

_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- the spec ---------------------------------------------------------------
@dataclass(frozen=True)
class SshSpec:
    """Where a host is and how to trust and log in to it."""

    user: str
    host: str
    """Name or address, IPv6 without brackets."""
    port: int = 22
    key_file: str | None = None
    """Private key to log in with; None: the agent's keys and ~/.ssh/id_{ed25519,ecdsa,rsa}."""
    jump: SshSpec | None = None
    """A host to go through (its own spec, checked the same way)."""
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    host_key_policy: str = "strict"
    """``strict``: the key must be in known_hosts; ``accept-new``: an unknown host's key is added."""
    connect_timeout: float = 10.0
    """Seconds for the TCP connection, the SSH handshake and authentication, each."""

    def __post_init__(self) -> None:
        if self.host_key_policy not in HOST_KEY_POLICIES:
            raise UsageError(
                f"host_key_policy {self.host_key_policy!r}: must be one of {', '.join(HOST_KEY_POLICIES)}"
            )
        if not 0 < self.port < 65536:
            raise UsageError(f"port {self.port}: must be between 1 and 65535")
        if not self.connect_timeout > 0:
            raise UsageError(f"connect_timeout {self.connect_timeout}: must be positive")
        if not self.user or not self.host:
            raise UsageError("an SSH host needs a user and a host")

    @classmethod
    def parse(cls, url: str, **options: Any) -> SshSpec:
        """``ssh://user@host[:port]`` (IPv6 as ``[addr]``); ``options`` set the other fields."""
        bad = f"{url!r} is not an SSH host: expected ssh://user@host[:port]"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"{bad} ({exc})") from None
        if parts.scheme != "ssh":
            raise UsageError(bad)
        if parts.path not in ("", "/") or parts.query or parts.fragment or "#" in url or "?" in url:
            raise UsageError(f"{bad} (no path, query or fragment)")
        if parts.password is not None:
            raise UsageError(f"{bad} (passwords are not accepted; use a key file)")
        user = unquote(parts.username or "")
        if not user or not _USER.match(user):
            raise UsageError(f"{bad} (missing or invalid user)")
        netloc = parts.netloc.rpartition("@")[2]
        host = parts.hostname or ""
        if netloc.startswith("["):
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise UsageError(f"{bad} ({host!r} in brackets is not an IPv6 address)") from None
        elif not _HOSTNAME.match(host):
            raise UsageError(f"{bad} (invalid host {host!r}; IPv6 addresses go in brackets)")
        else:
            host = netloc.rsplit(":", 1)[0] if port is not None else netloc  # keep the case given
        if port == 0:
            raise UsageError(f"{bad} (port 0)")
        return cls(user=user, host=host, port=port if port is not None else 22, **options)

    @property
    def address(self) -> str:
        """``host:port`` (``[addr]:port`` for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.address}"

    @property
    def known_hosts_name(self) -> str:
        """The name this host has in known_hosts, as OpenSSH writes it."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


# -- host keys --------------------------------------------------------------
def fingerprint(key: paramiko.PKey) -> str:
    """SHA256 fingerprint as OpenSSH prints it (``SHA256:`` + unpadded base64)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH's host patterns: ``*`` and ``?`` are the only wildcards (``[`` is literal)."""
    return re.compile(re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def _name_matches(name: str, patterns: Sequence[str]) -> bool:
    matched = False
    for pattern in patterns:
        if pattern.startswith("|1|"):
            with contextlib.suppress(Exception):
                if paramiko.HostKeys.hash_host(name, pattern) == pattern:
                    matched = True
            continue
        negated = pattern.startswith("!")
        if _glob(pattern.lstrip("!")).match(name.lower()):
            if negated:
                return False
            matched = True
    return matched


@dataclass
class KnownKeys:
    """The keys a known_hosts file records for one host name."""

    keys: list[paramiko.PKey] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)


def known_keys(text: str, name: str) -> KnownKeys:
    """The keys ``text`` (a known_hosts file) records for ``name`` (pure)."""
    found = KnownKeys()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
            if marker not in ("@revoked",):
                continue  # @cert-authority: certificates are not supported
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except Exception:
            continue
        if entry is None or entry.key is None or not _name_matches(name, entry.hostnames):
            continue
        (found.revoked if marker else found.keys).append(entry.key)
    return found


def _prefer_known_types(transport: paramiko.Transport, keys: Sequence[paramiko.PKey]) -> None:
    """Ask the server for the kind of key we already know (as OpenSSH does)."""
    wanted: list[str] = []
    for key in keys:
        name = key.get_name()
        wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if name == "ssh-rsa" else [name]
    options = transport.get_security_options()
    available = list(options.key_types)
    first = [t for t in dict.fromkeys(wanted) if t in available]
    if first:
        options.key_types = first + [t for t in available if t not in first]


# -- the connection ---------------------------------------------------------
def _short(command: str, limit: int = 120) -> str:
    """A command line for a one-line message."""
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_DROPPED = (paramiko.SSHException, EOFError, OSError)


class RemoteFileNotFoundError(InfraError):
    """`get` (or `put`, for its directory) found no such file on the host."""


class SshConduit(Conduit):
    """One SSH connection to a host, made on first use and reused."""

    def __init__(self, spec: SshSpec, name: str | None = None) -> None:
        self.spec = spec
        self.name = name or spec.host
        self._jump = SshConduit(spec.jump, name=f"{self.name}'s jump host") if spec.jump else None
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()

    # errors name the lab's host and where it is
    def _where(self) -> str:
        return f"{self.name} ({self.spec.user}@{self.spec.address})"

    # -- connecting ----------------------------------------------------------
    def connect(self) -> None:
        """Connect now (otherwise the first command does)."""
        self._connected()

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def _connected(self) -> paramiko.Transport:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            self._drop()
            self._transport = self._connect()
            return self._transport

    def _drop(self) -> None:
        with self._lock:
            if self._sftp is not None:
                with contextlib.suppress(Exception):
                    self._sftp.close()
                self._sftp = None
            if self._transport is not None:
                with contextlib.suppress(Exception):
                    self._transport.close()
                self._transport = None

    def _socket(self) -> Any:
        spec = self.spec
        if self._jump is not None:
            return self._jump.open_tunnel(spec.host, spec.port, via=self._where())
        try:
            return socket.create_connection((spec.host, spec.port), timeout=spec.connect_timeout)
        except TimeoutError:
            raise InfraError(
                f"{self._where()}: unreachable: no answer within {spec.connect_timeout:g}s"
            ) from None
        except socket.gaierror as exc:
            raise InfraError(f"{self._where()}: cannot resolve {spec.host}: {exc.strerror}") from None
        except OSError as exc:
            raise InfraError(f"{self._where()}: unreachable: {exc.strerror or exc}") from None

    def open_tunnel(self, host: str, port: int, via: str = "") -> paramiko.Channel:
        """A direct-tcpip channel from this host to ``host:port`` (for a jump)."""
        for attempt in (1, 2):
            transport = self._connected()
            try:
                return transport.open_channel(
                    "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=self.spec.connect_timeout
                )
            except paramiko.ChannelException as exc:
                raise InfraError(
                    f"{via or host}: unreachable through jump host {self._where()}: {exc.text}"
                ) from None
            except _DROPPED as exc:
                if transport.is_active():  # the jump is fine: the target did not answer
                    raise InfraError(
                        f"{via or host}: unreachable through jump host {self._where()}: {exc}"
                    ) from None
                self._drop()
                if attempt == 2:
                    raise InfraError(f"{self._where()}: connection lost: {exc}") from None
        raise AssertionError("unreachable")

    def _connect(self) -> paramiko.Transport:
        spec = self.spec
        sock = self._socket()
        transport = paramiko.Transport(sock)
        transport.banner_timeout = spec.connect_timeout
        transport.handshake_timeout = spec.connect_timeout
        transport.auth_timeout = spec.connect_timeout
        try:
            known_hosts = Path(spec.known_hosts).expanduser()
            try:
                text = known_hosts.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            except OSError as exc:
                raise UsageError(f"{self._where()}: cannot read {known_hosts}: {exc.strerror}") from None
            known = known_keys(text, spec.known_hosts_name)
            _prefer_known_types(transport, known.keys)
            try:
                transport.start_client(timeout=spec.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise InfraError(
                    f"{self._where()}: SSH handshake failed: {exc or type(exc).__name__}"
                ) from None
            self._check_host_key(transport.get_remote_server_key(), known, known_hosts)
            self._authenticate(transport)
        except BaseException:
            transport.close()
            with contextlib.suppress(Exception):
                sock.close()
            raise
        transport.set_keepalive(30)
        return transport

    def _check_host_key(self, key: paramiko.PKey, known: KnownKeys, known_hosts: Path) -> None:
        spec = self.spec
        presented = f"{key.get_name()} {fingerprint(key)}"
        if any(key == k for k in known.revoked):
            raise InfraError(f"{self._where()}: host key {presented} is marked @revoked in {known_hosts}")
        if any(key == k for k in known.keys):
            return
        if known.keys:
            same_type = [k for k in known.keys if k.get_name() == key.get_name()] or known.keys
            expected = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in same_type)
            raise InfraError(
                f"{self._where()}: host key CHANGED: {known_hosts} has {expected} for "
                f"{spec.known_hosts_name}, the host presented {presented}; refused "
                f"(if the change is expected, remove the old key: ssh-keygen -R '{spec.known_hosts_name}' -f {known_hosts})"
            )
        if spec.host_key_policy != "accept-new":
            raise InfraError(
                f"{self._where()}: host key unknown: {presented} is not in {known_hosts}; refused "
                f"(check it and add it, or set host_key_policy = accept-new)"
            )
        line = paramiko.hostkeys.HostKeyEntry([spec.known_hosts_name], key).to_line()
        try:
            known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(line)
        except OSError as exc:
            raise InfraError(
                f"{self._where()}: cannot add its host key to {known_hosts}: {exc.strerror}"
            ) from None

    def _keys(self) -> list[tuple[str, paramiko.PKey]]:
        """(where it came from, key): the key file, else the agent and default files."""
        spec = self.spec
        if spec.key_file is not None:
            return [(spec.key_file, _load_key(spec.key_file, self._where()))]
        keys: list[tuple[str, paramiko.PKey]] = []
        if os.environ.get("SSH_AUTH_SOCK"):
            with contextlib.suppress(Exception):
                keys += [("the SSH agent", k) for k in paramiko.Agent().get_keys()]
        for path in DEFAULT_IDENTITIES:
            if Path(path).expanduser().exists():
                with contextlib.suppress(UsageError):
                    keys.append((path, _load_key(path, self._where())))
        if not keys:
            raise UsageError(f"{self._where()}: no key_file given, and no SSH agent or ~/.ssh/id_* key")
        return keys

    def _authenticate(self, transport: paramiko.Transport) -> None:
        spec = self.spec
        tried = []
        for source, key in self._keys():
            tried.append(source)
            try:
                transport.auth_publickey(spec.user, key)
                return
            except paramiko.BadAuthenticationType as exc:
                raise InfraError(
                    f"{self._where()}: the server does not accept keys (it offers: {', '.join(exc.allowed_types)})"
                ) from None
            except paramiko.AuthenticationException:
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise InfraError(f"{self._where()}: authentication failed: {exc}") from None
        raise InfraError(
            f"{self._where()}: authentication refused for user {spec.user} with {', '.join(tried)}"
        )

    # -- commands ------------------------------------------------------------
    def _session(self) -> paramiko.Channel:
        for attempt in (1, 2):
            transport = self._connected()
            try:
                return transport.open_session(timeout=self.spec.connect_timeout)
            except _DROPPED as exc:
                if transport.is_active():  # the connection is fine; the host refused
                    raise InfraError(f"{self._where()}: cannot open a session: {exc}") from None
                self._drop()
                if attempt == 2:
                    raise InfraError(f"{self._where()}: connection lost: {exc}") from None
        raise AssertionError("unreachable")

    def exec(
        self, command: str, *, input: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        channel = self._session()
        try:
            try:
                channel.exec_command(command)
            except _DROPPED as exc:
                raise InfraError(f"{self._where()}: cannot run `{_short(command)}`: {exc}") from None
            out: list[bytes] = []
            err: list[bytes] = []
            # stdin, stdout and stderr each in their own thread: a command that
            # writes a lot while we still send its input can never deadlock us.
            threads = [
                threading.Thread(target=_drain, args=(channel.recv, out), daemon=True),
                threading.Thread(target=_drain, args=(channel.recv_stderr, err), daemon=True),
                threading.Thread(target=_feed, args=(channel, input), daemon=True),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            done = not any(t.is_alive() for t in threads) and channel.status_event.wait(
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            if not done:
                channel.close()
                for thread in threads:
                    thread.join(1.0)
                raise CommandTimeout(
                    f"{self._where()}: `{_short(command)}` did not finish within {timeout:g}s"
                )
            if not self.connected and channel.exit_status == -1:
                raise InfraError(f"{self._where()}: connection lost while running `{_short(command)}`")
            return CommandResult((command,), channel.exit_status, b"".join(out), b"".join(err))
        finally:
            channel.close()

    # -- files ---------------------------------------------------------------
    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            transport = self._connected()
            if self._sftp is None or self._sftp.sock.closed:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except _DROPPED as exc:
                    self._drop()
                    raise InfraError(f"{self._where()}: cannot open SFTP: {exc}") from None
                if self._sftp is None:
                    raise InfraError(f"{self._where()}: cannot open SFTP")
            return self._sftp

    def _file_op(self, what: str, path: str, op: Any) -> Any:
        for attempt in (1, 2):
            sftp = self._sftp_client()
            try:
                return op(sftp)
            except FileNotFoundError:
                raise RemoteFileNotFoundError(
                    f"{self._where()}: cannot {what} {path}: no such file"
                ) from None
            except _DROPPED as exc:
                if self.connected and isinstance(exc, OSError):
                    # the connection is fine: the file operation itself failed
                    reason = exc.strerror or str(exc) or type(exc).__name__
                    raise InfraError(f"{self._where()}: cannot {what} {path}: {reason}") from None
                self._drop()
                if attempt == 2:
                    raise InfraError(
                        f"{self._where()}: cannot {what} {path}: connection lost: {exc}"
                    ) from None
        raise AssertionError("unreachable")

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        def op(sftp: paramiko.SFTPClient) -> None:
            parent, _, base = path.rpartition("/")
            _makedirs(sftp, parent)
            tmp = f"{parent}/.{base}.{os.urandom(4).hex()}" if parent or path.startswith("/") else f".{base}"
            try:
                with sftp.open(tmp, "wb") as f:
                    f.chmod(mode)  # before the data: a secret is never readable by others
                    f.set_pipelined(True)
                    f.write(data)
                try:
                    sftp.posix_rename(tmp, path)
                except OSError:
                    with contextlib.suppress(OSError):
                        sftp.remove(path)
                    sftp.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                raise

        self._file_op("write", path, op)

    def get(self, path: str) -> bytes:
        def op(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as f:
                size = f.stat().st_size
                if size:
                    f.prefetch(size)
                return f.read()

        return self._file_op("read", path, op)

    def close(self) -> None:
        self._drop()
        if self._jump is not None:
            self._jump.close()


def _load_key(path: str, where: str) -> paramiko.PKey:
    # Messages name the file only: never its content.
    file = Path(path).expanduser()
    try:
        return paramiko.PKey.from_path(file)
    except FileNotFoundError:
        raise UsageError(f"{where}: key file {path}: not found") from None
    except paramiko.PasswordRequiredException:
        raise UsageError(
            f"{where}: key file {path} is protected by a passphrase (use an SSH agent)"
        ) from None
    except PermissionError:
        raise UsageError(f"{where}: key file {path}: permission denied") from None
    except Exception:
        raise UsageError(f"{where}: key file {path} is not a private key this harness can read") from None


def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    if not directory:
        return
    try:
        sftp.stat(directory)
    except FileNotFoundError:
        _makedirs(sftp, directory.rpartition("/")[0])
        sftp.mkdir(directory)


def _drain(read: Any, into: list[bytes]) -> None:
    with contextlib.suppress(Exception):
        while chunk := read(65536):
            into.append(chunk)


def _feed(channel: paramiko.Channel, data: bytes | None) -> None:
    with contextlib.suppress(Exception):
        if data:
            channel.sendall(data)
        channel.shutdown_write()


# -- a POSIX host -------------------------------------------------------------
# Fixed scripts; their data arrive as positional arguments ($1...).
_MKTEMP = 'mktemp -d "${TMPDIR:-/tmp}/wgh.XXXXXXXX"'

# $1 directory, $2 name, then the command. The program gets a session and
# process group of its own (setsid) so kill reaches its children too, ignores
# SIGHUP (nohup), and has nothing open on the SSH channel, so it outlives it.
# A waiter records its exit status. Prints "pid P" and "waiter W".
_START = r"""d=$1 n=$2
shift 2
(
  trap '' HUP
  if command -v setsid >/dev/null 2>&1; then
    setsid nohup "$@" </dev/null >"$d/$n.out" 2>"$d/$n.err" &
  else
    nohup "$@" </dev/null >"$d/$n.out" 2>"$d/$n.err" &
  fi
  p=$!
  echo "pid $p"
  exec >/dev/null 2>&1
  wait "$p"
  echo $? >"$d/$n.status.tmp" && mv "$d/$n.status.tmp" "$d/$n.status"
) &
echo "waiter $!"
"""

# $1 directory, $2 name, $3 pid, $4 waiter: the exit status, "running" or "lost".
_POLL = r"""if [ -f "$1/$2.status" ]; then cat "$1/$2.status"
elif kill -0 "$3" 2>/dev/null || kill -0 "$4" 2>/dev/null; then echo running
elif [ -f "$1/$2.status" ]; then cat "$1/$2.status"
else echo lost; fi
"""

# $1 signal, $2 pid: the process group if it has one, else the process.
_SIGNAL = r"""kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null
exit 0
"""


def _status(shell_status: int) -> int:
    # As subprocess reports it: a shell's 128+N (killed by signal N) becomes -N.
    return -(shell_status - 128) if 128 < shell_status < 160 else shell_status


class SshProcess(Process):
    """A background process on an SSH host (see `_START`)."""

    def __init__(
        self, target: SshTarget, argv: Sequence[str], directory: str, name: str, pid: int, waiter: int
    ):
        self.argv = tuple(argv)
        self._target = target
        self._dir = directory
        self._name = name
        self._pid = pid
        self._waiter = waiter
        self._status: int | None = None

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        if self._status is not None:
            return self._status
        result = self._target.run(
            ["sh", "-c", _POLL, "wgh-poll", self._dir, self._name, str(self._pid), str(self._waiter)]
        )
        answer = result.stdout.strip()
        if answer == "running":
            return None
        if answer == "lost":  # the waiter was killed: the status is gone
            self._status = -1
        elif answer.isdigit():
            self._status = _status(int(answer))
        else:
            raise InfraError(f"{self._target.name}: cannot poll process {self._pid}: {result.stderr.strip()}")
        return self._status

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = 0.02
        while (status := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"`{' '.join(self.argv)}` still running after {timeout}s")
            pause = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            interval = min(interval * 2, 0.5)
        return status

    def signal(self, name: str) -> None:
        """Send signal ``name`` (TERM, KILL, INT...) to its process group."""
        self._target.run(["sh", "-c", _SIGNAL, "wgh-signal", name, str(self._pid)])

    def kill(self, grace: float = 3.0) -> int | None:
        if self.poll() is not None:
            return self._status
        self.signal("TERM")
        try:
            return self.wait(grace)
        except TimeoutError:
            self.signal("KILL")
        try:
            return self.wait(grace)
        except TimeoutError:
            return None

    def output(self) -> tuple[bytes, bytes]:
        return self._target.read_optional(f"{self._dir}/{self._name}.out"), self._target.read_optional(
            f"{self._dir}/{self._name}.err"
        )


class SshTarget(Target):
    """A POSIX host (Linux, BSD...) reached over SSH. Its account's login shell
    must be a POSIX shell: command lines are quoted for sh."""

    kind = "ssh"

    def __init__(self, name: str, spec: SshSpec, conduit: Conduit | None = None) -> None:
        super().__init__(name)
        self.spec = spec
        self.conduit: Conduit = conduit if conduit is not None else SshConduit(spec, name=name)
        self._dir: str | None = None
        self._processes: list[SshProcess] = []

    @classmethod
    def from_url(cls, name: str, url: str, **options: Any) -> SshTarget:
        """``SshTarget.from_url("peer", "ssh://root@10.0.0.2", key_file="~/.ssh/lab")``."""
        return cls(name, SshSpec.parse(url, **options))

    # -- commands ------------------------------------------------------------
    def with_env(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """``argv``, preceded by ``env K=V ...`` when there is an environment."""
        if not argv:
            raise UsageError(f"{self.name}: empty command")
        if not env:
            return list(argv)
        for key in env:
            if not _ENV_NAME.match(key):
                raise UsageError(f"{self.name}: invalid environment variable name {key!r}")
        return ["env", *(f"{k}={v}" for k, v in env.items()), *argv]

    def command_line(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        """The line sent to the host for ``argv``."""
        return shlex.join(self.with_env(argv, env))

    def describe(self, argv: Sequence[str]) -> str:
        return self.command_line(argv)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        result = self.conduit.exec(self.command_line(argv, env), input=input, timeout=timeout)
        return replace(result, argv=tuple(argv))

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        directory = self._workdir()
        name = f"p{len(self._processes)}"
        wrapped = ["sh", "-c", _START, "wgh-start", directory, name]
        result = self.run([*wrapped, *self.with_env(argv, env)])
        fields = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
        if not result.ok or not fields.get("pid", "").isdigit() or not fields.get("waiter", "").isdigit():
            reason = (
                result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.stdout.strip()
            )
            raise InfraError(f"{self.name}: cannot start `{' '.join(argv)}`: {reason or 'no PID printed'}")
        process = SshProcess(self, argv, directory, name, int(fields["pid"]), int(fields["waiter"]))
        self._processes.append(process)
        return process

    def _workdir(self) -> str:
        if self._dir is None:
            result = self.run(["sh", "-c", _MKTEMP])
            directory = result.stdout.strip()
            if not result.ok or not directory.startswith("/"):
                raise InfraError(f"{self.name}: cannot create a temporary directory: {result.stderr.strip()}")
            self._dir = directory
        return self._dir

    # -- files ---------------------------------------------------------------
    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        self.conduit.put(data, path, mode)

    def get(self, path: str) -> bytes:
        return self.conduit.get(path)

    def read_optional(self, path: str) -> bytes:
        """The file's content, or b'' when it does not exist."""
        try:
            return self.conduit.get(path)
        except RemoteFileNotFoundError:
            return b""

    # -- life cycle ----------------------------------------------------------
    def setup(self) -> None:
        connect = getattr(self.conduit, "connect", None)
        if connect is not None:
            connect()

    def teardown(self) -> None:
        errors: list[BaseException] = []
        try:
            for process in self._processes:
                try:
                    if process.poll() is None:
                        process.kill(grace=2.0)
                except InfraError as exc:
                    errors.append(exc)
            self._processes = []
            if self._dir is not None:
                try:
                    self.run(["rm", "-rf", "--", self._dir], timeout=30)
                    self._dir = None
                except InfraError as exc:
                    errors.append(exc)
        finally:
            self.conduit.close()
        if errors:
            raise errors[0]

    # -- facts ---------------------------------------------------------------
    def facts(self) -> HostFacts:
        from harness.targets.local import collect_posix_facts

        facts = collect_posix_facts(self)
        return replace(facts, extra={**facts.extra, "transport": "ssh", "address": self.spec.host})
