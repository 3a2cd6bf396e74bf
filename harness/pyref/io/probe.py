"""A one-shot handshake probe: thin I/O around the sans-IO handshake.

  python -m harness.pyref.io.probe --private B64 --peer B64 --port N [--host 127.0.0.1] [--ping SRC DST]

Sends a handshake initiation to a WireGuard peer over UDP, checks its
response, confirms the session with a keepalive (an empty transport packet),
optionally pings through the tunnel, and prints one JSON line. Exit status 0 on a completed handshake, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

from cryptography.exceptions import InvalidTag

from harness.keys import decode_key
from harness.pyref.ipv4 import echo_request, parse_echo_reply
from harness.pyref.messages import TRANSPORT, MessageError, parse_response, parse_transport
from harness.pyref.noise import HandshakeError, Keypair, consume_response, create_initiation
from harness.pyref.transport import open_, seal


def ping(sock: socket.socket, keys: Keypair, address: tuple[str, int], src: str, dst: str) -> float:
    """One ICMP echo through the tunnel; the round trip in seconds."""
    ident = os.getpid() & 0xFFFF
    t0 = time.monotonic()
    sock.sendto(seal(keys.send_key, keys.remote_index, 1, echo_request(src, dst, ident, 1), 1420), address)
    while True:
        data, _ = sock.recvfrom(4096)
        if not data or data[0] != TRANSPORT:
            continue
        msg = parse_transport(data)
        if msg.receiver != keys.local_index:
            continue
        reply = parse_echo_reply(open_(keys.receive_key, msg))
        if reply == (dst, src, ident, 1):
            return time.monotonic() - t0


def handshake(
    private: bytes,
    peer: bytes,
    address: tuple[str, int],
    timeout: float,
    ping_pair: tuple[str, str] | None = None,
) -> dict[str, object]:
    index = struct.unpack("<I", os.urandom(4))[0]
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        t0 = time.monotonic()
        msg, state = create_initiation(private, peer, os.urandom(32), index, time.time())
        sock.sendto(msg.encode(), address)
        data, _ = sock.recvfrom(2048)
        rtt = time.monotonic() - t0
        keys = consume_response(state, private, peer, parse_response(data))
        sock.sendto(seal(keys.send_key, keys.remote_index, 0, b"", 1420), address)  # keepalive: confirms
        result: dict[str, object] = {
            "ok": True,
            "rtt_ms": round(rtt * 1000, 3),
            "local_index": keys.local_index,
            "remote_index": keys.remote_index,
        }
        if ping_pair:
            result["ping_ms"] = round(ping(sock, keys, address, *ping_pair) * 1000, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--private", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument(
        "--ping", nargs=2, metavar=("SRC", "DST"), help="then ping DST from SRC through the tunnel"
    )
    args = parser.parse_args(argv)
    try:
        result = handshake(
            decode_key(args.private),
            decode_key(args.peer),
            (args.host, args.port),
            args.timeout,
            (args.ping[0], args.ping[1]) if args.ping else None,
        )
    except (OSError, MessageError, HandshakeError, ValueError, InvalidTag) as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
