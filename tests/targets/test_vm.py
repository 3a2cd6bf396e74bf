"""Guests the harness boots itself: the image recipe's hash and QEMU's command
line (unit tests), then for real (root, QEMU, debootstrap): build or reuse the
image, boot a guest, and run kernel WireGuard in it against pyref on this
machine: handshakes initiated from each side, pings, a short iperf3 each way.

The first run builds the image (about 80 s here, see docs/vm.md); later runs
reuse it from the cache ($WGH_IMAGE_CACHE, else /var/cache/wgharness/images)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.impl.config import InterfaceConfig, PeerConfig, format_endpoint
from harness.impl.kernel import KernelWireguard
from harness.impl.pyref import Pyref
from harness.keys import KeyPair
from harness.parsers.iperf import client_argv, parse_iperf_json, server_argv
from harness.run.orchestrator import new_instance_id
from harness.run.throughput import wait_for_server
from harness.targets.netns import NetnsTarget
from harness.targets.vm.image import GUEST_FILES, Image, Recipe
from harness.targets.vm.qemu import CONTROL_MAC, LabNic, VmSpec, VmTarget, command_line, kernel_append

UNDER = ("198.18.21.1", "198.18.21.2")  # host (tap), guest (lab0)
INNER = ("198.19.21.1", "198.19.21.2")
PORTS = (51850, 51851)
IPERF_PORT = 5221
# For measurements (docs/vm.md): WGH_VM_CPU=max, WGH_VM_ACCEL=tcg.
CPU = os.environ.get("WGH_VM_CPU") or None
ACCEL = os.environ.get("WGH_VM_ACCEL") or "auto"


# -- unit tests ----------------------------------------------------------------
def test_recipe_digest_is_stable_and_follows_the_recipe() -> None:
    base = Recipe()
    assert base.digest() == Recipe().digest()
    assert len(base.digest()) == 16
    # The package list's order does not matter; its content does.
    assert Recipe(packages=tuple(reversed(base.packages))).digest() == base.digest()
    assert Recipe(packages=(*base.packages, "tcpdump")).digest() != base.digest()
    assert Recipe(suite="trixie").digest() != base.digest()
    assert Recipe(build_version=base.build_version + 1).digest() != base.digest()
    files = dict(GUEST_FILES)
    files["/etc/hostname"] = (0o644, "other\n")
    assert Recipe(files=files).digest() != base.digest()
    files["/etc/hostname"] = (0o600, GUEST_FILES["/etc/hostname"][1])
    assert Recipe(files=files).digest() != base.digest()
    # Where packages come from is not part of the image's identity.
    assert Recipe(mirror="http://ftp.de.debian.org/debian").digest() == base.digest()


def test_command_line_rendering() -> None:
    image = Image(Path("/cache/abc"), "abc", "6.1.0-50-amd64")
    lab = LabNic("wgh-ns", "wghvtap0", ("198.18.0.2/24", "2001:2::2/64"), mtu=1500)
    spec = VmSpec("kern", memory_mb=768, cpus=2, lab=lab)
    argv = command_line(spec, image, accel="tcg", overlay="/t/o.qcow2", ssh_port=40022,
                        console_log="/t/console.log", tap_fd=7, pidfile="/t/qemu.pid")  # fmt: skip
    assert argv[0] == "qemu-system-x86_64"
    joined = " ".join(argv)

    def after(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert after("-accel") == "tcg" and after("-cpu") == "qemu64"
    assert after("-m") == "768" and after("-smp") == "2"
    assert after("-kernel") == "/cache/abc/vmlinuz" and after("-initrd") == "/cache/abc/initrd.img"
    assert "file=/t/o.qcow2,format=qcow2,if=virtio" in joined
    assert "/cache/abc/rootfs.img" not in joined  # only ever the overlay
    # Control: user network, nothing reachable, SSH on loopback only.
    assert "user,id=ctl,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22" in argv
    assert "tap,id=lab,fd=7" in argv
    assert f"virtio-net-pci,netdev=lab,mac={lab.mac}" in argv
    assert after("-serial") == "file:/t/console.log" and after("-pidfile") == "/t/qemu.pid"
    append = after("-append")
    assert append == kernel_append(spec)
    for param in ("root=/dev/vda", "console=ttyS0", f"wgh.ctl={CONTROL_MAC}", f"wgh.lab={lab.mac}",
                  "wgh.addr=198.18.0.2/24,2001:2::2/64", "wgh.mtu=1500", "wgh.hostname=kern"):  # fmt: skip
        assert param in append.split()
    # KVM: the host's CPU unless one is named.
    kvm = command_line(spec, image, accel="kvm", overlay="o", ssh_port=1, console_log="c", tap_fd=7)
    assert kvm[kvm.index("-cpu") + 1] == "host"
    named = command_line(VmSpec("k", cpu_model="max"), image, accel="tcg", overlay="o", ssh_port=1,
                         console_log="c", tap_fd=None)  # fmt: skip
    assert named[named.index("-cpu") + 1] == "max" and "-netdev" in named and "tap,id=lab,fd=7" not in named
    with pytest.raises(ValueError):
        command_line(spec, image, accel="tcg", overlay="o", ssh_port=1, console_log="c", tap_fd=None)
    with pytest.raises(ValueError):
        command_line(spec, image, accel="hvf", overlay="o", ssh_port=1, console_log="c", tap_fd=7)


def test_lab_nic_mac_is_derived_from_the_tap_and_local() -> None:
    a, b = LabNic("ns", "wghvtap0"), LabNic("ns", "wghvtap1")
    assert a.mac != b.mac and a.mac == LabNic("ns", "wghvtap0").mac
    assert a.mac.startswith("52:54:00:")
    with pytest.raises(UsageError):
        LabNic("ns", "a-name-much-too-long")


def test_vm_facts_name_the_accelerator_and_cpu_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guest the harness booted says what QEMU ran it with, whatever the guest
    detects (systemd-detect-virt says "qemu" under TCG)."""
    from harness.parsers.facts import HostFacts
    from harness.targets.ssh import SshTarget

    guest = HostFacts("g", "6.1.0", "Debian", "QEMU Virtual CPU version 2.5+", 2, 1 << 30, "x86_64",
                      virtualization="QEMU (TCG)")  # fmt: skip
    monkeypatch.setattr(SshTarget, "facts", lambda self: guest)
    target = VmTarget("g", VmSpec("g"), Image(Path("/cache/abc"), "abc", "6.1.0"))
    target.vm.record.accel, target.vm.record.cpu_model = "tcg", "qemu64"
    facts = target.facts()
    assert facts.virtualization == "TCG (QEMU, -cpu qemu64)"
    assert facts.extra["accelerator"] == "tcg" and facts.extra["virtualization_detected"] == "QEMU (TCG)"
    target.vm.record.accel, target.vm.record.cpu_model = "kvm", "host"
    assert target.facts().virtualization == "KVM (QEMU, -cpu host)"


# -- for real ------------------------------------------------------------------
def _vm_prerequisites() -> list[str]:
    return [
        p for p in ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4") if shutil.which(p) is None
    ]


def _configs(
    host_keys: KeyPair, guest_keys: KeyPair, host_if: str
) -> tuple[InterfaceConfig, InterfaceConfig]:
    def cfg(i: int, ifname: str, own: KeyPair, other: KeyPair) -> InterfaceConfig:
        peer = PeerConfig(other.public, (f"{INNER[1 - i]}/32",), format_endpoint(UNDER[1 - i], PORTS[1 - i]))
        return InterfaceConfig(ifname, own.private, PORTS[i], (f"{INNER[i]}/24",), 1420, (peer,))

    return cfg(0, host_if, host_keys, guest_keys), cfg(1, "wg0", guest_keys, host_keys)


def _readd_peer(target: NetnsTarget | VmTarget, cfg: InterfaceConfig) -> None:
    """Forget the peer (and its sessions) and add it back, so the next packet starts a handshake."""
    peer = cfg.peers[0]
    target.check(["wg", "set", cfg.ifname, "peer", peer.public_key, "remove"])
    target.check(["wg", "set", cfg.ifname, "peer", peer.public_key, "allowed-ips", ",".join(peer.allowed_ips),
                  "endpoint", peer.endpoint or ""])  # fmt: skip


def _ping(target: NetnsTarget | VmTarget, address: str) -> None:
    target.check(["ping", "-c", "3", "-i", "0.3", "-W", "5", address], timeout=60)


def _iperf(client: NetnsTarget | VmTarget, server: NetnsTarget | VmTarget, server_ip: str) -> float:
    proc = server.start(server_argv(IPERF_PORT, bind=server_ip))
    try:
        wait_for_server(server, proc, IPERF_PORT, timeout=20)
        done = client.run(client_argv(server_ip, IPERF_PORT, duration=2, omit=0), timeout=60)
        result = parse_iperf_json(done.stdout)
    finally:
        proc.kill()
    return result.directions[0].receiver_bps


def test_failed_image_build_leaves_nothing(integration: None, tmp_path: Path) -> None:
    if shutil.which("debootstrap") is None:
        pytest.skip("needs debootstrap")
    from harness.errors import InfraError
    from harness.targets.vm.image import ensure_image

    with pytest.raises(InfraError, match="debootstrap"):
        ensure_image(Recipe(suite="wgh-no-such-suite"), cache=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_kernel_wireguard_in_a_guest_against_pyref(no_leftovers: None) -> None:
    missing = _vm_prerequisites()
    if missing:
        reason = f"VM test needs: {', '.join(missing)}"
        if os.environ.get("WGH_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason + " (WGH_REQUIRE_INTEGRATION=1)", pytrace=False)
        pytest.skip(reason)
    from harness.targets.vm.image import ensure_image

    started = time.monotonic()
    image = ensure_image(log=print)
    image_seconds = time.monotonic() - started

    tag = new_instance_id()
    host = NetnsTarget("host", f"wgh-{tag}-host")
    tap = f"wgh{tag}v"
    guest = VmTarget("guest", VmSpec(f"g{tag}", memory_mb=1024, cpus=2, accel=ACCEL, cpu_model=CPU, lab=LabNic(host.namespace, tap, (f"{UNDER[1]}/24",))), image)  # fmt: skip
    host_keys, guest_keys = KeyPair.generate(), KeyPair.generate()
    host_cfg, guest_cfg = _configs(host_keys, guest_keys, f"wgh{tag}p")
    pyref = Pyref(host, host_cfg.ifname)
    kernel = KernelWireguard(guest, "wg0")
    figures: dict[str, object] = {"image_s": round(image_seconds, 1)}
    workdir = None
    pid = None
    try:
        host.setup()
        guest.setup()
        pid, workdir = guest.vm.pid, guest.vm.workdir
        figures["boot_to_ready_s"] = guest.vm.record.ready_seconds
        host.check(["ip", "address", "add", f"{UNDER[0]}/24", "dev", tap])

        # The guest: facts, with the accelerator decision recorded.
        facts = guest.facts()
        assert facts.extra["accelerator"] in ("kvm", "tcg")
        assert facts.extra["accelerator"] == guest.vm.record.accel and facts.extra["accelerator_reason"]
        assert facts.extra["qemu_cpu"] == guest.vm.record.cpu_model
        assert facts.kernel == image.kernel_release and facts.cpu_model
        figures.update(
            accel=facts.extra["accelerator"], cpu=facts.extra["qemu_cpu"], guest_cpu=facts.cpu_model
        )
        # Commands over SSH: exit statuses, stdin, files, background processes.
        assert guest.run(["sh", "-c", "exit 3"]).status == 3
        assert guest.check(["cat"], input=b"through ssh").stdout == "through ssh"
        guest.put(b"x" * 1000, "/tmp/wgh-file")
        assert guest.get("/tmp/wgh-file") == b"x" * 1000
        # The lab link (not the tunnel yet) works, and the guest reaches nothing else: not even
        # this machine's loopback, which QEMU's user network shows as 10.0.2.2 without restrict=on
        # (the SSH port forwarded to the guest listens there).
        _ping(host, UNDER[1])
        reach = f"exec 3<>/dev/tcp/10.0.2.2/{guest.vm.ssh_port} && head -c 4 <&3"
        escaped = guest.run(["timeout", "10", "bash", "-c", reach], timeout=30)
        assert not escaped.ok and "SSH" not in escaped.stdout, escaped

        # Kernel WireGuard in the guest, pyref on this machine.
        info = kernel.check()
        assert "linux" in info.version
        pyref.check()
        pyref.up(host_cfg)
        kernel.up(guest_cfg)

        # 1. This machine (pyref) initiates.
        _ping(host, INNER[1])
        assert pyref.stats().peers[0].latest_handshake > 0
        assert kernel.stats().peers[0].latest_handshake > 0
        # 2. The guest (kernel) initiates: both sides forget the peer and its sessions.
        _readd_peer(host, host_cfg)
        _readd_peer(guest, guest_cfg)
        assert kernel.stats().peers[0].latest_handshake == 0
        assert pyref.stats().peers[0].latest_handshake == 0
        _ping(guest, INNER[0])
        assert kernel.stats().peers[0].latest_handshake > 0
        assert pyref.stats().peers[0].latest_handshake > 0
        _ping(host, INNER[1])

        # 3. A short iperf3 each way through the tunnel.
        figures["guest_to_host_bps"] = up = _iperf(guest, host, INNER[0])
        figures["host_to_guest_bps"] = down = _iperf(host, guest, INNER[1])
        assert up > 0 and down > 0
        dump = kernel.stats().peers[0]
        assert dump.rx_bytes > 100_000 and dump.tx_bytes > 100_000
    except BaseException:
        print(guest.vm.console_text()[-4000:])
        raise
    finally:
        pyref.down()
        kernel.down()
        guest.teardown()
        tap_left = host.run(["ip", "link", "show", "dev", tap]).ok  # QEMU gone: so is its tap
        host.teardown()
        print(f"vm figures: {figures}")
    # Everything the VM had is gone: QEMU, its tap, its overlay and temporary directory.
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert workdir is not None and not workdir.exists()
    assert not tap_left
