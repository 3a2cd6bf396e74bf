"""`wgharness pyref [-f] IFNAME`: start a pyref interface the way
`wireguard-go [-f] IFNAME` starts one.

Conventions kept from wireguard-go (its main.go, read for behaviour only):
- without ``-f``/``--foreground`` and without ``WG_PROCESS_FOREGROUND=1`` in
  the environment, the command creates the TUN device and the UAPI socket,
  hands both to a detached child (``WG_TUN_FD``, ``WG_UAPI_FD``) and exits 0;
  errors creating them are reported by the parent, exit status 1;
- ``WG_TUN_FD`` / ``WG_UAPI_FD`` in the environment: use those descriptors
  instead of creating the device or the socket;
- ``LOG_LEVEL``: ``verbose`` (or ``debug``), ``error`` (default), ``silent``;
  a daemon keeps the command's stdout/stderr only when LOG_LEVEL is set and
  not ``silent`` (otherwise they go to /dev/null);
- the UAPI socket is /var/run/wireguard/IFNAME.sock (mode 0600 in a 0755
  directory); a socket another process still answers on is an error, a stale
  one is replaced;
- SIGINT/SIGTERM, or the interface being deleted, end the process with
  status 0 after removing the socket.
- a TUN it creates gets MTU 1420 (wireguard-go's CreateTUN sets DefaultMTU);
  from then on the interface's MTU is the one padding follows, changes
  included (`ip link set IFNAME mtu N`; the `server` reads it again).

pyref's own:
- ``PYREF_NO_OFFLOAD=1`` turns off the TUN offloads (TSO and checksum, with
  merged writes) and UDP GSO/GRO, for comparison;
- ``PYREF_KEYLOG=PATH``: append the secrets of every handshake this interface
  makes, as initiator and as responder, to PATH (created mode 0600), in
  Wireshark's WireGuard key-log format (`keylog`; tshark's
  ``-o wg.keylog_file:PATH``), flushed line by line, so a capture of its
  link can be decrypted. A PATH that cannot be opened is a setup error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

from harness.pyref.io.tun import TunError, open_tun, valid_ifname

SOCKET_DIR = Path("/var/run/wireguard")
EXIT_SETUP_FAILED = 1


class SetupError(Exception):
    """The interface could not be started (one line for the user)."""


def socket_path(ifname: str) -> Path:
    return SOCKET_DIR / f"{ifname}.sock"


def open_uapi(ifname: str) -> socket.socket:
    """A listening unix socket at /var/run/wireguard/IFNAME.sock."""
    path = socket_path(ifname)
    SOCKET_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # stale: nobody answers on it
        else:
            raise SetupError(f"UAPI listen error: {path} is in use by another process")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        listener.bind(str(path))
    except OSError as exc:
        listener.close()
        raise SetupError(f"UAPI listen error: {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    listener.listen(16)
    return listener


def _logger(ifname: str) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """(debug, error) loggers as LOG_LEVEL asks, both to stderr."""
    level = os.environ.get("LOG_LEVEL", "error").lower()

    def emit(kind: str, text: str) -> None:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        print(f"{kind}: ({ifname}) {stamp} {text}", file=sys.stderr, flush=True)

    def debug(text: str) -> None:
        if level in ("verbose", "debug"):
            emit("DEBUG", text)

    def error(text: str) -> None:
        if level != "silent":
            emit("ERROR", text)

    return debug, error


def _inherited_fd(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise SetupError(f"{name}={value!r} is not a file descriptor number") from None


def open_keylog(path: str) -> TextIO:
    """PATH opened for appending, line-buffered (each line reaches the file as written)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SetupError(f"PYREF_KEYLOG: {path}: {exc.strerror}") from None
    return os.fdopen(fd, "a", buffering=1, encoding="ascii")


class _Stop(Exception):
    pass


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def serve(ifname: str, tun_fd: int, listener: socket.socket, keylog: TextIO | None = None) -> int:
    """Run the interface in this process until a signal or the interface's removal."""
    from harness.pyref.io.server import Server

    debug, error = _logger(ifname)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    server = Server(ifname, tun_fd, listener, log=debug, keylog=keylog)
    debug("device started")
    try:
        server.run()
    except _Stop:
        debug("shutting down on a signal")
    except Exception as exc:  # noqa: BLE001 (the daemon's last word, then cleanup)
        error(f"stopped by an unexpected error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        server.close()
        if keylog is not None:
            with contextlib.suppress(OSError):
                keylog.close()
        with contextlib.suppress(OSError):
            socket_path(ifname).unlink()
        debug("device closed")
    return 0


def main(ifname: str, foreground: bool) -> int:
    """The command; its exit status."""
    reason = valid_ifname(ifname)
    if reason:
        print(f"wgharness pyref: {ifname!r}: {reason}", file=sys.stderr)
        return 2
    foreground = foreground or os.environ.get("WG_PROCESS_FOREGROUND") == "1"
    try:
        # Opened first, so a bad path is reported by the command before anything is
        # created; a daemon opens it again.
        keylog_path = os.environ.get("PYREF_KEYLOG")
        keylog = open_keylog(keylog_path) if keylog_path else None
        tun_fd = _inherited_fd("WG_TUN_FD")
        uapi_fd = _inherited_fd("WG_UAPI_FD")
        if tun_fd is None:
            tun_fd = open_tun(ifname, offload=os.environ.get("PYREF_NO_OFFLOAD") != "1")
        else:
            os.set_blocking(tun_fd, False)
        listener = (
            open_uapi(ifname)
            if uapi_fd is None
            else socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=uapi_fd)
        )
    except (SetupError, TunError) as exc:
        print(f"wgharness pyref: {ifname}: {exc}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    if foreground:
        return serve(ifname, tun_fd, listener, keylog)
    if keylog is not None:
        keylog.close()
    env = dict(os.environ, WG_TUN_FD=str(tun_fd), WG_UAPI_FD=str(listener.fileno()))
    env["WG_PROCESS_FOREGROUND"] = "1"
    # As wireguard-go: the daemon keeps our stdout/stderr only when LOG_LEVEL asks for logs.
    logs = os.environ.get("LOG_LEVEL", "") not in ("", "silent")
    quiet = None if logs else subprocess.DEVNULL
    subprocess.Popen(
        [sys.executable, "-m", "harness", "pyref", ifname],
        env=env,
        pass_fds=(tun_fd, listener.fileno()),
        stdin=subprocess.DEVNULL,
        stdout=quiet,
        stderr=quiet,
        start_new_session=True,
    )
    return 0
