"""Handshake secrets, and their text in Wireshark's WireGuard key log (pure).

A `HandshakeSecrets` is what Wireshark needs to decrypt one handshake seen
from one side, and so the transport data under it: that side's static
private key, the peer's static public key, the ephemeral private key that
side made for this handshake (as initiator or as responder) and the
preshared key. The peer records one for every handshake message it makes
when asked to (see `Peer`); writing them anywhere is the I/O layer's job.

The format (Wireshark's ``wg.keylog_file`` preference, as written by
wireguard-tools' contrib/extract-handshakes and read by Wireshark's
epan/dissectors/packet-wireguard.c): one ``TYPE = base64-key`` per line;
a PRESHARED_KEY line belongs to the LOCAL_EPHEMERAL_PRIVATE_KEY line before
it, so the four lines of one handshake stay in this order.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HandshakeSecrets:
    """The secrets of one handshake, from the side that recorded them."""

    local_static_private: bytes = field(repr=False)
    """This side's static private key."""
    remote_static_public: bytes
    """The peer's static public key."""
    local_ephemeral_private: bytes = field(repr=False)
    """The ephemeral private key this side made for the handshake."""
    preshared_key: bytes = field(repr=False)
    """The peer's preshared key (all zeros: none)."""
    initiator: bool
    """Whether this side sent the initiation (else it sent the response)."""


KEYLOG_TYPES = (
    "LOCAL_STATIC_PRIVATE_KEY",
    "REMOTE_STATIC_PUBLIC_KEY",
    "LOCAL_EPHEMERAL_PRIVATE_KEY",
    "PRESHARED_KEY",
)


def keylog_lines(secrets: HandshakeSecrets) -> str:
    """The four key-log lines of one handshake, each ending in a newline."""
    keys = (
        secrets.local_static_private,
        secrets.remote_static_public,
        secrets.local_ephemeral_private,
        secrets.preshared_key,
    )
    return "".join(
        f"{kind} = {base64.b64encode(key).decode()}\n" for kind, key in zip(KEYLOG_TYPES, keys, strict=True)
    )
