"""Small pure pieces: keys, `wg setconf` rendering, facts parsing, the cleanup stack."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from harness.impl.config import InterfaceConfig, PeerConfig, format_endpoint, render_setconf
from harness.keys import KeyPair, decode_key, generate_preshared_key, public_key
from harness.parsers import virt
from harness.parsers.facts import facts_script, parse_facts, parse_tool_version
from harness.run.cleanup import CleanupStack
from harness.targets.links import tbf_burst_bytes
from tests.support.paths import DATA

# RFC 7748, section 6.1: Alice's private and public key (X25519 test vector).
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def test_public_key_matches_rfc7748_vector() -> None:
    import base64

    private = base64.b64encode(ALICE_PRIVATE).decode()
    assert decode_key(public_key(private)) == ALICE_PUBLIC


def test_generated_keys_are_clamped_and_distinct() -> None:
    pairs = [KeyPair.generate() for _ in range(20)]
    assert len({p.private for p in pairs}) == 20
    for p in pairs:
        raw = decode_key(p.private)
        assert raw[0] & 7 == 0 and raw[31] & 128 == 0 and raw[31] & 64 == 64
    assert len(decode_key(generate_preshared_key())) == 32
    assert "private" not in repr(pairs[0]) or pairs[0].private not in repr(pairs[0])


@pytest.mark.parametrize("bad", ["", "abc", "!!!!", "AAAA", "A" * 43 + "="[:0]])
def test_bad_keys_are_refused_without_echo(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        decode_key(bad)
    assert bad == "" or bad not in str(info.value)


def test_render_setconf_exact_text() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    psk = generate_preshared_key()
    cfg = InterfaceConfig(
        ifname="wgx",
        private_key=a.private,
        listen_port=51820,
        addresses=("198.19.0.1/24",),
        mtu=1420,
        peers=(
            PeerConfig(
                public_key=b.public,
                allowed_ips=("198.19.0.2/32", "2001:2::2/128"),
                endpoint=format_endpoint("2001:2::1", 51821),
                preshared_key=psk,
                persistent_keepalive=25,
            ),
            PeerConfig(public_key=a.public, allowed_ips=()),
        ),
    )
    assert render_setconf(cfg) == (
        f"[Interface]\nPrivateKey = {a.private}\nListenPort = 51820\n\n"
        f"[Peer]\nPublicKey = {b.public}\nPresharedKey = {psk}\n"
        "AllowedIPs = 198.19.0.2/32, 2001:2::2/128\nEndpoint = [2001:2::1]:51821\n"
        "PersistentKeepalive = 25\n\n"
        f"[Peer]\nPublicKey = {a.public}\n"
    )
    assert a.private not in repr(cfg) and psk not in repr(cfg)
    assert format_endpoint("198.18.0.2", 1) == "198.18.0.2:1"


REAL_FACTS = """@hostname
vm
@kernel
6.18.44-fc-v657
@arch
x86_64
@os
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
@cpuinfo
model name\t: AMD EPYC
@cores
2
@meminfo
MemTotal:       24684092 kB
@tool wireguard-go
wireguard-go v0.0.20220316

Userspace WireGuard daemon for linux-amd64.
@tool wg
wireguard-tools v1.0.20210914 - https://git.zx2c4.com/wireguard-tools/
@tool iperf3
iperf 3.12 (cJSON 1.7.15)
Linux vm 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0 x86_64
@tool iproute2
ip utility, iproute2-6.1.0, libbpf 1.1.2
@tool python3
sh: 1: python3: not found
"""


def test_parse_facts_from_real_output() -> None:
    facts = parse_facts(REAL_FACTS)
    assert facts.hostname == "vm" and facts.kernel == "6.18.44-fc-v657"
    assert facts.os == "Debian GNU/Linux 12 (bookworm)"
    assert facts.cpu_model == "AMD EPYC" and facts.cores == 2
    assert facts.memory_bytes == 24684092 * 1024
    assert facts.tools == {
        "wireguard-go": "0.0.20220316",
        "wg": "1.0.20210914",
        "iperf3": "3.12",
        "iproute2": "6.1.0",
        "python3": "",
    }


def test_facts_script_runs_here() -> None:
    out = subprocess.run(["sh", "-c", facts_script()], capture_output=True, text=True).stdout
    facts = parse_facts(out)
    assert facts.cores >= 1 and facts.kernel and facts.arch
    assert facts.virtualization  # bare metal, or what this machine runs on
    assert parse_tool_version("iperf3", "garbage") == ""


# The virtualization sections of the facts script's output on this machine (a KVM
# guest without DMI tables, in a docker container), captured 2026 with systemd 252.
REAL_VIRT_SECTIONS = """@virt
kvm
@container
docker
@dmi_vendor
@dmi_product
@hypervisor
hypervisor
"""


def test_facts_name_the_virtualization_from_real_output() -> None:
    facts = parse_facts(REAL_FACTS + REAL_VIRT_SECTIONS)
    assert facts.virtualization == "KVM" and facts.extra == {"container": "docker"}
    assert facts.cpu_model == "AMD EPYC" and facts.cores == 2  # the rest is read as before
    assert parse_facts(REAL_FACTS).virtualization == "bare metal"  # no evidence at all
    assert "systemd-detect-virt --vm" in facts_script() and "/sys/class/dmi/id/sys_vendor" in facts_script()


@pytest.mark.parametrize(
    ("evidence", "name"),
    [
        ({"detect_virt": "none\n"}, "bare metal"),
        ({"detect_virt": "kvm\n", "vendor": "QEMU"}, "KVM"),
        ({"detect_virt": "qemu\n"}, "QEMU (TCG)"),
        ({"detect_virt": "microsoft\n"}, "Hyper-V"),
        ({"detect_virt": "acrn\n"}, "acrn"),
        (
            {"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)", "hypervisor_flag": True},
            "QEMU (KVM or TCG)",
        ),
        ({"vendor": "Microsoft Corporation", "product": "Virtual Machine"}, "Hyper-V"),
        ({"vendor": "Microsoft Corporation", "product": "Surface Laptop 5"}, "bare metal"),
        ({"vendor": "innotek GmbH", "product": "VirtualBox"}, "VirtualBox"),
        ({"detect_virt": "none", "vendor": "VMware, Inc.", "product": "VMware7,1"}, "VMware"),
        ({"hypervisor_flag": True}, "a hypervisor (unidentified)"),
        ({"vendor": "Dell Inc.", "product": "PowerEdge R650"}, "bare metal"),
        ({}, "bare metal"),
    ],
)
def test_virtualization_is_named_from_the_evidence(evidence: dict[str, Any], name: str) -> None:
    """systemd-detect-virt's identifiers are systemd's src/basic/virt.c
    virtualization_table ("qemu": QEMU without KVM's CPUID, i.e. TCG)."""
    assert virt.classify(**evidence) == name


def test_cleanup_runs_everything_in_reverse_even_after_errors() -> None:
    done: list[str] = []
    stack = CleanupStack()
    stack.push("first", lambda: done.append("first"))

    def broken() -> None:
        raise RuntimeError("boom")

    stack.push("broken", broken)
    stack.push("last", lambda: done.append("last"))
    errors = stack.unwind()
    assert done == ["last", "first"]
    assert errors == ["broken: boom"]
    assert stack.unwind() == [] and len(stack) == 0


def test_tbf_burst_covers_ten_milliseconds() -> None:
    assert tbf_burst_bytes(1_000_000) == 32 * 1024
    assert tbf_burst_bytes(10_000_000_000) == 10_000_000_000 // 8 // 100


def test_zero_throughput_is_found_in_any_direction() -> None:
    import json

    from harness.parsers.iperf import parse_iperf_json
    from harness.run.throughput import empty_directions

    data = DATA / "iperf3" / "bidir.json"
    assert empty_directions(parse_iperf_json(data.read_text())) == []
    doc = json.loads(data.read_text())
    for key in ("sum_sent_bidir_reverse", "sum_received_bidir_reverse"):
        doc["end"][key]["bits_per_second"] = 0
        doc["end"][key]["bytes"] = 0
    assert empty_directions(parse_iperf_json(json.dumps(doc))) == ["reverse"]


def test_kernel_driver_says_plainly_when_the_kernel_has_no_wireguard() -> None:
    """This machine's kernel has no WireGuard module (the VM issue brings one)."""
    import pathlib

    from harness.errors import InfraError
    from harness.impl.kernel import KernelWireguard
    from harness.targets.local import LocalTarget

    if pathlib.Path("/sys/module/wireguard").exists():
        pytest.skip("this kernel has WireGuard")
    with pytest.raises(
        InfraError, match=r"here: no WireGuard in the kernel \(.+\): modprobe wireguard found no module"
    ):
        KernelWireguard(LocalTarget("here"), "wghk0").check()


def test_each_implementation_is_one_name_with_one_driver() -> None:
    """`ImplName` is the one list of implementations: the drivers' table, the lab's
    choices, the Windows-only set and each driver's own name agree with it."""
    from harness.impl import DRIVERS, WINDOWS_DRIVERS, ImplName, driver_class
    from harness.lab.spec import KNOWN_IMPLS

    assert tuple(DRIVERS) == KNOWN_IMPLS == tuple(ImplName)
    assert KNOWN_IMPLS == ("wireguard-go", "pyref", "kernel", "wireguard-nt", "wireguard-go-windows")
    assert WINDOWS_DRIVERS == (ImplName.WIREGUARD_NT, ImplName.WIREGUARD_GO_WINDOWS)
    assert all(driver_class(name).name is name for name in ImplName)
