"""What a test left behind, told apart from what anything else on the machine made.

A test that uses `no_leftovers` runs under a tag of its own: 4 letters from
g-z, set as WGH_ID_PREFIX for the test. Everything the test makes carries it:

* the harness begins every lab instance id with it (`new_instance_id`), so
  every namespace (``wgh-{id}-{host}``), interface and WireGuard socket
  (``wgh{id}...``) of a lab started under the test, in this process or in a
  ``wgharness`` it runs, begins with ``wgh-{tag}`` or ``wgh{tag}``; tests that
  name namespaces or interfaces themselves take their ids from
  `new_instance_id` too;
* every process started under the test inherits WGH_ID_PREFIX={tag} in its
  environment (/proc/PID/environ); one started some other way (through sshd)
  is the test's when it lives in one of the test's namespaces.

Another lab on the machine, run by hand (its ids are hex only: no g-z letter
begins them) or by another test process (another tag), is never the test's;
two concurrent tests share a tag with odds of 1 in 160,000.

`snapshot()` reads the machine; `owned()` is a pure function of a snapshot and
a tag, so the rule is tested on made-up snapshots as well as on real ones.
`stop()` is how a test stops a process it started, so as to leave none.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.run.orchestrator import ID_PREFIX_VARIABLE

TAG_LETTERS = "ghijklmnopqrstuvwxyz"
"""Not hex digits: an id the harness makes without a prefix never begins with one."""
NETNS_DIR = Path("/run/netns")
SOCKET_DIR = Path("/var/run/wireguard")


def new_tag() -> str:
    return "".join(secrets.choice(TAG_LETTERS) for _ in range(4))


@dataclass(frozen=True)
class Process:
    pid: int
    command: str
    tag: str | None
    """WGH_ID_PREFIX in its environment, if there."""
    netns: int | None
    """The inode of its network namespace."""


@dataclass(frozen=True)
class Snapshot:
    namespaces: Mapping[str, int | None] = field(default_factory=dict)
    """Name -> the inode of the namespace (None if it could not be read)."""
    sockets: frozenset[str] = frozenset()
    """File names in /var/run/wireguard."""
    processes: tuple[Process, ...] = ()


@dataclass(frozen=True)
class Leftovers:
    namespaces: frozenset[str]
    sockets: frozenset[str]
    processes: frozenset[tuple[int, str]]

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.sockets or self.processes)


def carries(name: str, tag: str) -> bool:
    """A namespace, interface or socket name made from an id with this tag."""
    return name.startswith((f"wgh-{tag}", f"wgh{tag}"))


def owned(snap: Snapshot, tag: str) -> Leftovers:
    """What in ``snap`` the test with ``tag`` made."""
    namespaces = {name: inode for name, inode in snap.namespaces.items() if carries(name, tag)}
    inodes = {inode for inode in namespaces.values() if inode is not None}
    return Leftovers(
        frozenset(namespaces),
        frozenset(s for s in snap.sockets if carries(s, tag)),
        frozenset(
            (p.pid, p.command)
            for p in snap.processes
            if p.tag == tag or (p.netns is not None and p.netns in inodes)
        ),  # fmt: skip
    )


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _process(proc: Path) -> Process | None:
    try:
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        environ = (proc / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or a kernel thread's
        return None
    key = f"{ID_PREFIX_VARIABLE}=".encode()
    tag = next((e[len(key) :].decode(errors="replace") for e in environ if e.startswith(key)), None)
    return Process(int(proc.name), command, tag, _inode(proc / "ns" / "net"))


def snapshot() -> Snapshot:
    """The namespaces, WireGuard sockets and processes on this machine now (but this process)."""
    names = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
    sockets = frozenset(p.name for p in SOCKET_DIR.glob("*.sock")) if SOCKET_DIR.is_dir() else frozenset()
    me = os.getpid()
    processes = (_process(p) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != me)
    return Snapshot(
        {name: _inode(NETNS_DIR / name) for name in names},
        sockets,
        tuple(p for p in processes if p is not None),
    )


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float) -> None:
    """A process a test started, stopped by its PID if it still runs: SIGTERM, then
    SIGKILL after ``grace`` seconds; its pipes, if any, read out meanwhile."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
