"""What the fingerprint is made of, parsed from captured output: the facts
script's TCP congestion control, socket buffer limits and CPU governor, and the
lab-link script's interface and offloads (tests/data/facts/, captured on this
machine: a Debian 12 KVM guest, the link a veth in a network namespace)."""

from __future__ import annotations

import subprocess

import pytest

from harness.parsers.facts import (
    OFFLOAD_FEATURES,
    SOCKET_BUFFERS,
    link_script,
    parse_facts,
    parse_link,
    parse_offloads,
)
from tests.support.paths import DATA


def captured(name: str) -> str:
    return (DATA / "facts" / name).read_text()


def test_facts_from_this_machine_carry_tcp_settings_and_no_governor() -> None:
    facts = parse_facts(captured("debian12-kvm.txt"))
    assert (facts.os, facts.cpu_model, facts.cores, facts.virtualization) == (
        "Debian GNU/Linux 12 (bookworm)",
        "AMD EPYC",
        2,
        "KVM",
    )
    assert facts.tcp_congestion_control == "bbr"
    assert facts.socket_buffers == {
        "net.core.rmem_max": "4194304",
        "net.core.wmem_max": "4194304",
        "net.ipv4.tcp_rmem": "4096 131072 33554432",  # tabs as single spaces
        "net.ipv4.tcp_wmem": "4096 16384 4194304",
    }
    assert facts.cpu_governor == ""  # a guest without cpufreq
    assert facts.tools["iperf3"] == "3.12"  # the sections after the new ones still read
    assert (facts.link_interface, facts.link_offloads) == ("", {})  # asked once the links exist


def test_governors_are_the_distinct_values_and_missing_sections_stay_empty() -> None:
    text = captured("debian12-kvm.txt").replace(
        "@cpufreq_governor\n", "@cpufreq_governor\npowersave\nperformance\n"
    )
    assert parse_facts(text).cpu_governor == "powersave,performance"
    old = "@hostname\nh\n@kernel\n6.1\n"  # a host whose script predates the TCP sections
    facts = parse_facts(old)
    assert (facts.tcp_congestion_control, facts.socket_buffers, facts.cpu_governor) == ("", {}, "")


def test_the_facts_script_reads_every_socket_buffer_it_names() -> None:
    out = subprocess.run(["sh", "-c", link_script("127.0.0.1")], capture_output=True, text=True).stdout
    assert parse_link(out)[0] == "lo"  # the script runs here: a route lookup, no traffic
    from harness.parsers.facts import facts_script

    for name in SOCKET_BUFFERS:
        assert f"/proc/sys/{name.replace('.', '/')}" in facts_script()


def test_lab_link_of_a_veth_from_captured_output() -> None:
    interface, offloads = parse_link(captured("link-veth.txt"))
    assert interface == "fpa"
    assert offloads == {
        "rx-checksumming": "on",
        "tx-checksumming": "on",
        "scatter-gather": "on",
        "tcp-segmentation-offload": "on",
        "generic-segmentation-offload": "on",
        "generic-receive-offload": "off",  # a veth's default
        "large-receive-offload": "off",  # printed "off [fixed]"
        "tx-udp-segmentation": "on",
        "rx-udp-gro-forwarding": "off",
    }
    assert list(offloads) == list(OFFLOAD_FEATURES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("", {})),
        ("@interface\n\n@offloads\n", ("", {})),  # no route
        ("@interface\neth0\n@offloads\n", ("eth0", {})),  # no ethtool on the host
        (
            "@interface\neth0\n@offloads\nFeatures for eth0:\ngeneric-receive-offload: on [requested off]\n"
            "\ttx-tcp-segmentation: on\nnot a feature line\n",
            ("eth0", {"generic-receive-offload": "on"}),
        ),
    ],
)
def test_link_output_without_a_route_or_ethtool(text: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_link(text) == expected


def test_link_script_quotes_the_address() -> None:
    script = link_script("198.18.0.2; reboot")
    assert "ip route get '198.18.0.2; reboot'" in script
    assert parse_offloads("tx-checksumming: off [fixed]\n") == {"tx-checksumming": "off"}
