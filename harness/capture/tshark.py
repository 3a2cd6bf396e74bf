"""tshark (Wireshark's command line, Debian's package ``tshark``) on a capture,
with a WireGuard key log: what each frame turned out to carry.

Wireshark's WireGuard dissector finds WireGuard by its message layout (a UDP
heuristic: WireGuard has no port of its own), decrypts the handshakes and the
transport data under them with the keys of ``wg.keylog_file`` (the format of
`harness.pyref.keylog`), and with ``wg.dissect_packet`` hands the
decrypted packet to the IP dissector. A frame's ``frame.protocols`` then reads
e.g. ``eth:ethertype:ip:udp:wg:ip:icmp:data``; without the keys, it stops at
``...:udp:wg``. The preference names are tshark's own (``tshark -G
defaultprefs``), as in Wireshark 4.0.
"""

from __future__ import annotations

from harness.errors import InfraError
from harness.targets.base import Target
from harness.targets.local import LocalTarget

TIMEOUT = 300.0


def tshark_argv(pcap_path: str, keylog_path: str | None, program: str = "tshark") -> list[str]:
    """The command: each frame's ``frame.protocols``, one line each. No key log is an empty
    ``wg.keylog_file``, so a key log set in the user's preferences is not used either."""
    return [
        program, "-n", "-r", pcap_path,
        "-o", f"wg.keylog_file:{keylog_path or ''}",
        "-o", "wg.dissect_packet:TRUE",
        # WireGuard is found by a heuristic, which must come before the dissector of
        # whatever protocol owns the lab's port number (if one does).
        "-o", "udp.try_heuristic_first:TRUE",
        # Only the protocols of each frame are wanted: no TCP sequence analysis or
        # reassembly of the inner streams. On a capture with a stalled, retransmitting
        # flow (the MTU black hole) they took tshark past 300 s; without, 7.5 s.
        "-o", "tcp.analyze_sequence_numbers:FALSE",
        "-o", "tcp.desegment_tcp_streams:FALSE",
        "-T", "fields", "-e", "frame.protocols",
    ]  # fmt: skip


def parse_protocols(stdout: str) -> list[str]:
    """``frame.protocols`` of each frame, in order, from tshark's output."""
    return [line.strip() for line in stdout.splitlines() if line.strip()]


def decrypted_protocols(pcap_path: str, keylog_path: str | None, *, host: Target | None = None) -> list[str]:
    """Each frame's ``frame.protocols`` of the capture at ``pcap_path``, decrypted with the
    key log at ``keylog_path`` (None: none), both files on ``host`` (default: this machine),
    where tshark runs (the program the host's tools name ``tshark``). `InfraError` with a
    one-line reason if tshark is missing or fails."""
    host = host if host is not None else LocalTarget("local")
    program = host.tool("tshark")
    result = host.run(tshark_argv(pcap_path, keylog_path, program), timeout=TIMEOUT)
    if result.status == 127:
        raise InfraError(f"{host.name}: {program} is not installed (Debian: apt-get install tshark)")
    if not result.ok:
        lines = [
            line for line in result.stderr.splitlines() if line.strip() and "could be dangerous" not in line
        ]
        raise InfraError(
            f"{host.name}: tshark -r {pcap_path} failed: {lines[-1] if lines else result.status}"
        )
    return parse_protocols(result.stdout)
