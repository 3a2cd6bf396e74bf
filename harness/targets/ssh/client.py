"""One SSH connection to a host (paramiko): `SshConduit`, the `Conduit` of
`SshTarget` and `WindowsTarget`.

Rules of this module:

* The host key is checked against a known_hosts file (`known_hosts`) before
  anything is sent, authentication included.
* One connection per host, reused by every command and file transfer; a
  connection found dropped is made again once. A command is never re-sent
  once it has reached the host.
* Errors are one line and name the host. Private keys never appear in a
  message or a log: only the key file's path does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paramiko

from harness.errors import InfraError, UsageError
from harness.targets.base import CommandResult
from harness.targets.conduit import Conduit
from harness.targets.local import CommandTimeout
from harness.targets.ssh.known_hosts import check_host_key, load_known_keys, prefer_known_types
from harness.targets.ssh.spec import DEFAULT_IDENTITIES, SshSpec


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
            known = load_known_keys(known_hosts, spec.known_hosts_name, self._where())
            prefer_known_types(transport, known.keys)
            try:
                transport.start_client(timeout=spec.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise InfraError(
                    f"{self._where()}: SSH handshake failed: {exc or type(exc).__name__}"
                ) from None
            check_host_key(transport.get_remote_server_key(), known, spec, known_hosts, self._where())
            self._authenticate(transport)
        except BaseException:
            transport.close()
            with contextlib.suppress(Exception):
                sock.close()
            raise
        transport.set_keepalive(30)
        return transport

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
