"""A one-shot handshake probe: thin I/O around the sans-IO handshake.

  python -m harness.impl.pyref.probe --private B64 --peer B64 --port N [--host 127.0.0.1]

Sends a handshake initiation to a WireGuard peer over UDP, checks its
response, confirms the session with a keepalive (an empty transport packet),
and prints one JSON line. Exit status 0 on a completed handshake, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

from harness.impl.pyref.crypto import aead_encrypt
from harness.impl.pyref.messages import MessageError, Transport, parse_response
from harness.impl.pyref.noise import HandshakeError, consume_response, create_initiation
from harness.keys import decode_key


def handshake(private: bytes, peer: bytes, address: tuple[str, int], timeout: float) -> dict[str, object]:
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
        keepalive = Transport(keys.remote_index, 0, aead_encrypt(keys.send_key, 0, b"", b""))
        sock.sendto(keepalive.encode(), address)
    return {
        "ok": True,
        "rtt_ms": round(rtt * 1000, 3),
        "local_index": keys.local_index,
        "remote_index": keys.remote_index,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--private", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        result = handshake(
            decode_key(args.private), decode_key(args.peer), (args.host, args.port), args.timeout
        )
    except (OSError, MessageError, HandshakeError, ValueError) as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
