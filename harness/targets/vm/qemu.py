"""Booting a guest with QEMU, and the lab host it becomes (`VmTarget`).

Rules of this module:

* QEMU is a child process whose PID the `Vm` keeps; it is stopped by that PID
  only (SIGTERM, then SIGKILL), never by name. It gets SIGTERM should the
  harness end without stopping it (PR_SET_PDEATHSIG), writes its PID to
  ``qemu.pid`` in its folder, and is noted with its folder and tap in the lab's
  record, so ``wgharness clean`` finds what a killed harness left.
* The cached image is never written: each boot gets a qcow2 overlay in a
  temporary directory of its own, deleted at teardown with everything else
  there (the serial console's log is copied out first when asked for).
* Two NICs. Control: QEMU's user network with ``restrict=on`` (the guest
  reaches nothing through it) and one forwarded port on 127.0.0.1 for SSH.
  Lab: a tap device the harness creates *inside* a network namespace it names,
  handed to QEMU as an open file descriptor. The tap is not persistent: it
  disappears when QEMU exits, however it exits.
* The accelerator: KVM when it actually boots the guest, else TCG. The
  verdict is found by trying (a KVM boot that fails or hangs falls back to
  TCG), then cached per host kernel, QEMU version and image.
* Ready means: SSH answers with the host key recorded at build time.
* `command_line` is pure and tested on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.errors import InfraError, UsageError
from harness.parsers.facts import HostFacts
from harness.parsers.virt import vm_virtualization
from harness.procs import dies_with_us, process_start
from harness.targets.base import HostKind, wait_until
from harness.targets.ledger import HERE, Forget, Ledger, Resource, ResourceKind, note, nothing
from harness.targets.ssh.spec import SshSpec
from harness.targets.ssh.target import SshTarget
from harness.targets.vm.image import Image, Recipe

QEMU = "qemu-system-x86_64"
ACCELERATORS = ("kvm", "tcg")
DEFAULT_CPU = {"tcg": "qemu64", "kvm": "host"}
"""The CPU model per accelerator (docs/vm.md has the TCG measurements behind it)."""
CONTROL_MAC = "52:54:00:00:00:01"
READY_TIMEOUT = {"kvm": 60.0, "tcg": 300.0}
KVM_PROBE_TIMEOUT = 60.0
STOP_GRACE = 5.0


# -- the command line ----------------------------------------------------------
@dataclass(frozen=True)
class LabNic:
    """The guest's NIC on the lab: a tap in ``namespace`` on this machine."""

    namespace: str
    tap: str
    """Name of the tap device (at most 15 characters)."""
    addresses: tuple[str, ...] = ()
    """The guest's addresses on it, with prefix length (``198.18.0.2/24``)."""
    mtu: int | None = None
    mac: str = ""
    """Empty: derived from the tap's name."""
    guest_ifname: str = "lab0"

    def __post_init__(self) -> None:
        if not 0 < len(self.tap) <= 15 or "/" in self.tap or " " in self.tap:
            raise UsageError(f"tap name {self.tap!r}: 1 to 15 characters, no '/' or space")
        if not self.mac:
            digest = hashlib.sha256(self.tap.encode()).digest()
            object.__setattr__(self, "mac", "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3]))


@dataclass(frozen=True)
class VmSpec:
    """One guest: how big, how accelerated, and its lab NIC."""

    name: str
    memory_mb: int = 1024
    cpus: int = 2
    accel: str = "auto"
    """``auto`` (KVM when it works, else TCG), ``kvm`` or ``tcg``."""
    cpu_model: str | None = None
    """QEMU's ``-cpu``; None: `DEFAULT_CPU` for the accelerator."""
    lab: LabNic | None = None
    extra_append: tuple[str, ...] = ()
    """More kernel command line parameters."""

    def __post_init__(self) -> None:
        if self.accel not in ("auto", *ACCELERATORS):
            raise UsageError(f"vm {self.name}: accel {self.accel!r}: expected auto, kvm or tcg")
        if self.memory_mb < 256:
            raise UsageError(f"vm {self.name}: memory {self.memory_mb} MiB: at least 256")
        if self.cpus < 1:
            raise UsageError(f"vm {self.name}: cpus {self.cpus}: at least 1")


def kernel_append(spec: VmSpec) -> str:
    """The guest kernel's command line (pure)."""
    params = ["root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "panic=-1", "quiet"]
    params += [f"wgh.ctl={CONTROL_MAC}", f"wgh.hostname={spec.name}"]
    if spec.lab is not None:
        params += [f"wgh.lab={spec.lab.mac}", f"wgh.labif={spec.lab.guest_ifname}"]
        if spec.lab.addresses:
            params.append(f"wgh.addr={','.join(spec.lab.addresses)}")
        if spec.lab.mtu:
            params.append(f"wgh.mtu={spec.lab.mtu}")
    return " ".join([*params, *spec.extra_append])


def command_line(
    spec: VmSpec,
    image: Image,
    *,
    accel: str,
    overlay: str,
    ssh_port: int,
    console_log: str,
    tap_fd: int | None,
    pidfile: str | None = None,
) -> list[str]:
    """The QEMU command for ``spec`` (pure); ``pidfile``: where QEMU writes its PID."""
    if accel not in ACCELERATORS:
        raise ValueError(f"accel {accel!r}: expected kvm or tcg")
    cpu = spec.cpu_model or DEFAULT_CPU[accel]
    argv = [
        QEMU, "-name", f"wgh-{spec.name}", "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", "q35", "-accel", accel, "-cpu", cpu,
        "-m", str(spec.memory_mb), "-smp", str(spec.cpus), "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", kernel_append(spec),
        "-drive", f"file={overlay},format=qcow2,if=virtio,cache=unsafe,discard=unmap",
        "-serial", f"file:{console_log}",
        "-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng",
        "-netdev", f"user,id=ctl,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=ctl,mac={CONTROL_MAC}",
    ]  # fmt: skip
    if pidfile is not None:
        argv += ["-pidfile", pidfile]
    if spec.lab is not None:
        if tap_fd is None:
            raise ValueError("a lab NIC needs the tap's file descriptor")
        argv += [
            "-netdev",
            f"tap,id=lab,fd={tap_fd}",
            "-device",
            f"virtio-net-pci,netdev=lab,mac={spec.lab.mac}",
        ]
    return argv


# -- the tap -------------------------------------------------------------------
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_CLONE_NEWNET = 0x40000000


def open_tap(namespace: str, name: str) -> int:
    """Create tap ``name`` inside ``namespace``; its file descriptor. The tap lives
    as long as a descriptor of it is open (not persistent)."""
    result: dict[str, object] = {}

    def work() -> None:
        # setns changes the namespace of this thread only; it ends right after.
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ns = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(ns, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            finally:
                os.close(ns)
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
            try:
                ifr = struct.pack("16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR)
                fcntl.ioctl(fd, _TUNSETIFF, ifr)
            except BaseException:
                os.close(fd)
                raise
            result["fd"] = fd
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=work, name=f"tap-{name}")
    thread.start()
    thread.join()
    if "error" in result:
        exc = result["error"]
        raise InfraError(f"cannot create tap {name} in namespace {namespace}: {exc}")
    fd = result["fd"]
    assert isinstance(fd, int)
    return fd


# -- the accelerator -----------------------------------------------------------
_verdicts: dict[str, str] = {}


def kvm_openable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.splitlines()[0].strip() if out else ""


def _verdict_key(image: Image) -> str:
    return f"{platform.release()}|{qemu_version()}|{image.digest}"


def _verdict_file(image: Image) -> Path:
    return image.directory.parent / "accel-verdicts.json"


def cached_verdict(image: Image) -> str | None:
    """``kvm`` or ``tcg`` if a probe on this host, QEMU and image already decided."""
    key = _verdict_key(image)
    if key in _verdicts:
        return _verdicts[key]
    with contextlib.suppress(OSError, ValueError):
        verdict = json.loads(_verdict_file(image).read_text()).get(key, {}).get("accel")
        if verdict in ACCELERATORS:
            _verdicts[key] = verdict
            return str(verdict)
    return None


def record_verdict(image: Image, accel: str, reason: str) -> None:
    key = _verdict_key(image)
    _verdicts[key] = accel
    path = _verdict_file(image)
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(path.read_text()) if path.is_file() else {}
        known[key] = {
            "accel": accel,
            "reason": reason,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=2) + "\n")
        os.replace(tmp, path)


# -- the machine ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BootError(InfraError):
    """The guest did not become ready (the message ends with the console's last lines)."""


@dataclass
class BootRecord:
    """What one boot did (kept in facts)."""

    accel: str = ""
    cpu_model: str = ""
    ready_seconds: float = 0.0
    accel_reason: str = ""
    attempts: list[str] = field(default_factory=list)


class Vm:
    """One running guest. `start` boots it and waits for SSH; `stop` always
    cleans up (safe to call twice, and after a failed start)."""

    def __init__(
        self, spec: VmSpec, image: Image, *, console_log: str | os.PathLike[str] | None = None
    ) -> None:
        self.spec = spec
        self.image = image
        self.console_log_copy = Path(console_log) if console_log else None
        self.record = BootRecord()
        self.ssh_port = 0
        self._dir: Path | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._tap_fd: int | None = None
        self._stderr: object = None
        self.ledger: Ledger | None = None
        """The lab's record, where the guest is a lab's host: its folder, tap and QEMU are noted there."""
        self._forget: dict[str, Forget] = {}

    # -- paths ---------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        if self._dir is None:
            raise InfraError(f"vm {self.spec.name}: not started")
        return self._dir

    @property
    def console_path(self) -> Path:
        return self.workdir / "console.log"

    def console_text(self) -> str:
        """The serial console so far ('' when there is none)."""
        for path in (self._dir and self._dir / "console.log", self.console_log_copy):
            if path and path.is_file():
                return path.read_text(errors="replace")
        return ""

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def ssh_spec(self) -> SshSpec:
        return SshSpec(
            user="root",
            host="127.0.0.1",
            port=self.ssh_port or 22,  # 22 until QEMU runs
            key_file=str(self.image.key_file),
            known_hosts=str(self.image.known_hosts),
            host_key_policy="strict",
            connect_timeout=5.0,
        )

    # -- life cycle ----------------------------------------------------------
    def start(self) -> None:
        if shutil.which(QEMU) is None:
            raise InfraError(f"vm {self.spec.name}: {QEMU} not found (apt-get install qemu-system-x86)")
        started = time.monotonic()
        self._dir = Path(tempfile.mkdtemp(prefix=f"wgh-vm-{self.spec.name}-", dir="/var/tmp"))
        self._note("folder", Resource(ResourceKind.FOLDER, HERE, f"vm {self.spec.name}", path=str(self._dir)))
        try:
            accel = self.spec.accel
            if accel == "auto":
                accel = cached_verdict(self.image) or ("kvm" if kvm_openable() else "tcg")
                probing = accel == "kvm" and cached_verdict(self.image) is None
                if accel == "tcg" and cached_verdict(self.image) is None:
                    record_verdict(self.image, "tcg", "/dev/kvm cannot be opened")
                    self.record.accel_reason = "/dev/kvm cannot be opened"
                if probing:
                    try:
                        self._boot("kvm", KVM_PROBE_TIMEOUT)
                        record_verdict(self.image, "kvm", "the guest booted under KVM")
                        self.record.accel_reason = "the guest booted under KVM"
                    except BootError as exc:
                        reason = f"KVM boot failed: {str(exc).splitlines()[0][:300]}"
                        record_verdict(self.image, "tcg", reason)
                        self.record.accel_reason = reason
                        self._stop_qemu()
                        self._boot("tcg", READY_TIMEOUT["tcg"])
                else:
                    self.record.accel_reason = self.record.accel_reason or "cached verdict"
                    self._boot(accel, READY_TIMEOUT[accel])
            else:
                self.record.accel_reason = "asked for"
                self._boot(accel, READY_TIMEOUT[accel])
            self.record.ready_seconds = round(time.monotonic() - started, 2)
        except BaseException:
            self.stop()
            raise

    def _boot(self, accel: str, timeout: float) -> None:
        spec = self.spec
        self.record.accel = accel
        self.record.cpu_model = spec.cpu_model or DEFAULT_CPU[accel]
        overlay = self.workdir / "overlay.qcow2"
        overlay.unlink(missing_ok=True)
        self.console_path.unlink(missing_ok=True)
        _check_run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image.rootfs), str(overlay)],
                   f"vm {spec.name}: qemu-img create")  # fmt: skip
        if spec.lab is not None and self._tap_fd is None:
            self._note("tap", Resource(ResourceKind.TAP, HERE, spec.lab.tap, spec.lab.namespace))
            self._tap_fd = open_tap(spec.lab.namespace, spec.lab.tap)
            _check_run(["ip", "-n", spec.lab.namespace, "link", "set", "dev", spec.lab.tap, "up"],
                       f"vm {spec.name}: ip link set {spec.lab.tap} up")  # fmt: skip
        for attempt in range(3):
            self.ssh_port = free_port()
            argv = command_line(spec, self.image, accel=accel, overlay=str(overlay), ssh_port=self.ssh_port,
                                console_log=str(self.console_path), tap_fd=self._tap_fd,
                                pidfile=str(self.workdir / "qemu.pid"))  # fmt: skip
            self.record.attempts.append(f"{accel}: {shlex.join(argv)}")
            (self.workdir / "qemu.cmd").write_text(shlex.join(argv) + "\n")
            stderr = open(self.workdir / "qemu.err", "wb")  # noqa: SIM115 (closed in _stop_qemu)
            self._stderr = stderr
            # Its own process group: Ctrl-C reaches the harness, which stops QEMU in order.
            # Should the harness end without stopping it, it gets SIGTERM (`dies_with_us`).
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, process_group=0,
                pass_fds=(self._tap_fd,) if self._tap_fd is not None else (), preexec_fn=dies_with_us(),
            )  # fmt: skip
            start = process_start(self._popen.pid)
            self._note("qemu", Resource(ResourceKind.QEMU, HERE, f"vm {spec.name}", pid=self._popen.pid,
                                        started=None if start is None else str(start),
                                        path=str(self.workdir / "qemu.pid")))  # fmt: skip
            try:
                self._wait_ready(timeout)
                return
            except _PortTaken:
                self._stop_qemu()
                if attempt == 2:
                    raise BootError(
                        f"vm {spec.name}: no free port for SSH forwarding after 3 tries"
                    ) from None

    def _qemu_stderr(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "qemu.err").read_text(errors="replace").strip()
        return ""

    def _fail(self, why: str) -> BootError:
        console = self.console_text().strip().splitlines()[-12:]
        return BootError(
            f"vm {self.spec.name} ({self.record.accel}): {why}"
            + ("\nconsole:\n  " + "\n  ".join(console) if console else "")
        )

    def _wait_ready(self, timeout: float) -> None:
        if not wait_until(self._booted, timeout, interval=0.5):
            raise self._fail(f"SSH did not answer on 127.0.0.1:{self.ssh_port} within {timeout:g}s")

    def _booted(self) -> bool:
        """Does the guest's SSH answer? BootError (`_PortTaken`) once QEMU cannot get there."""
        assert self._popen is not None
        status = self._popen.poll()
        if status is not None:
            err = self._qemu_stderr()
            if "hostfwd" in err or "host forwarding" in err:
                raise _PortTaken()
            raise self._fail(f"QEMU exited with {status}: {err[-400:]}")
        err = self._qemu_stderr()
        if "KVM internal error" in err:
            raise self._fail(f"QEMU: {err.splitlines()[0][:300]}")
        return self._ssh_answers()

    def _ssh_answers(self) -> bool:
        # Cheap first: is the forwarded port answering with an SSH banner?
        try:
            with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=2) as s:
                s.settimeout(2)
                if not s.recv(4).startswith(b"SSH-"):
                    return False
        except OSError:
            return False
        target = SshTarget(f"vm {self.spec.name}", self.ssh_spec())
        try:
            return target.run(["true"], timeout=20).ok
        except InfraError as exc:
            if "host key" in str(exc):
                raise  # a key other than the one recorded: never retried into acceptance
            return False
        finally:
            target.conduit.close()

    def _note(self, key: str, resource: Resource) -> None:
        self._forget[key] = note(self.ledger, resource)

    def _forgotten(self, key: str) -> None:
        self._forget.pop(key, nothing)()

    def _stop_qemu(self) -> None:
        popen, self._popen = self._popen, None
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait(STOP_GRACE)
        if popen is not None:
            self._forgotten("qemu")
        stderr, self._stderr = self._stderr, None
        if stderr is not None:
            with contextlib.suppress(Exception):
                stderr.close()  # type: ignore[attr-defined]

    def stop(self) -> None:
        try:
            self._stop_qemu()
        finally:
            if self._tap_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._tap_fd)  # the tap goes with its last descriptor
                self._tap_fd = None
            self._forgotten("tap")
            if self._dir is not None:
                if self.console_log_copy is not None:
                    with contextlib.suppress(OSError):
                        self.console_log_copy.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(self._dir / "console.log", self.console_log_copy)
                shutil.rmtree(self._dir, ignore_errors=True)
                if not self._dir.exists():
                    self._forgotten("folder")
                self._dir = None


class _PortTaken(Exception):
    pass


def _check_run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise InfraError(f"{what}: {argv[0]} not found") from None
    if done.returncode != 0:
        raise InfraError(f"{what}: {done.stderr.strip()[-300:]}")


# -- the lab host ----------------------------------------------------------------
class VmTarget(SshTarget):
    """A lab host that is a guest this harness boots: `setup` boots it and
    connects, `teardown` disconnects and stops it. Everything else is SSH."""

    kind = HostKind.VM

    def __init__(
        self, name: str, spec: VmSpec, image: Image, *, console_log: str | os.PathLike[str] | None = None
    ) -> None:
        self.vm = Vm(spec, image, console_log=console_log)
        # The port is known only once QEMU runs; the spec is replaced in setup.
        super().__init__(name, self.vm.ssh_spec())

    def setup(self) -> None:
        self.vm.ledger = self.ledger
        self.vm.start()
        self.spec = self.vm.ssh_spec()
        from harness.targets.ssh.client import SshConduit

        self.conduit = SshConduit(self.spec, name=self.name)
        super().setup()

    def teardown(self) -> None:
        try:
            if self.vm.pid is not None:
                with contextlib.suppress(InfraError):
                    super().teardown()
        finally:
            self.vm.stop()

    def facts(self) -> HostFacts:
        facts = super().facts()
        rec = self.vm.record
        extra = {
            **facts.extra,
            "transport": "ssh (QEMU user network, 127.0.0.1)",
            "accelerator": rec.accel,
            "accelerator_reason": rec.accel_reason,
            "qemu_cpu": rec.cpu_model,
            "qemu": qemu_version(),
            "vm_memory_mb": str(self.vm.spec.memory_mb),
            "vm_cpus": str(self.vm.spec.cpus),
            "image": self.vm.image.digest,
            "boot_to_ready_s": f"{rec.ready_seconds:g}",
            # What the guest itself detects (systemd-detect-virt: kvm, or qemu under TCG).
            "virtualization_detected": facts.virtualization,
        }
        return replace(facts, extra=extra, virtualization=vm_virtualization(rec.accel, rec.cpu_model))


def render_boot(spec: VmSpec, recipe: Recipe | None = None) -> str:
    """The QEMU command line a dry run shows for ``spec`` (nothing built or started):
    the cached image's paths, TCG unless KVM was asked for, placeholders for what
    exists only at boot (overlay, port, tap descriptor)."""
    from types import SimpleNamespace

    from harness.targets.vm.image import cache_dir

    folder = cache_dir() / (recipe or Recipe()).digest()
    image = SimpleNamespace(kernel=folder / "vmlinuz", initrd=folder / "initrd.img")
    accel = "kvm" if spec.accel == "kvm" else "tcg"
    argv = command_line(
        spec, image,  # type: ignore[arg-type]
        accel=accel, overlay="OVERLAY.qcow2", ssh_port=0, console_log="CONSOLE.log", tap_fd=3,
        pidfile="QEMU.pid",
    )  # fmt: skip
    note = "" if spec.accel != "auto" else "  # accel: kvm if a probe boot works, else tcg"
    return shlex.join(argv).replace("hostfwd=tcp:127.0.0.1:0-:22", "hostfwd=tcp:127.0.0.1:PORT-:22") + note
