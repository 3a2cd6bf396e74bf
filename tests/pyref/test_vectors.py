"""Known answers for pyref: its primitives (`crypto.py`) and its Noise_IKpsk2
core (`noise.py`), each against a published source named at the vector.
Where no vector is published (HMAC-BLAKE2s, the KDF, the MAC1 key), the
expected value is computed here a second way, from the definition, with
nothing but `hashlib`."""

from __future__ import annotations

import hashlib
import struct

from harness.pyref.cookie import cookie_key
from harness.pyref.crypto import (
    aead_decrypt,
    aead_encrypt,
    dh,
    hash_,
    hmac_,
    kdf,
    mac,
    public_of,
    tai64n,
)
from harness.pyref.noise import (
    create_initiation,
    mac1_key,
    read_initiation,
    read_response,
    split,
    write_initiation,
    write_response,
)

# -- BLAKE2s -------------------------------------------------------------------


def test_hash_is_blake2s_256() -> None:
    # RFC 7693, Appendix B: BLAKE2s-256("abc").
    expected = bytes.fromhex("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    assert hash_(b"abc") == expected
    assert hash_(b"a", b"", b"bc") == expected  # HASH(x || y) over parts


def _selftest_sequence(length: int, seed: int) -> bytes:
    # RFC 7693, Appendix E: the self-test's inputs and keys, a Fibonacci
    # generator seeded with 0xDEAD4BAD * seed, keeping bits 24-31 of each term.
    a, b = (0xDEAD4BAD * seed) & 0xFFFFFFFF, 1
    out = bytearray()
    for _ in range(length):
        a, b = b, (a + b) & 0xFFFFFFFF
        out.append(b >> 24)
    return bytes(out)


def test_mac_and_hash_pass_the_rfc7693_self_test() -> None:
    # RFC 7693, Appendix E: BLAKE2s of the concatenated digests of lengths
    # 16, 20, 28, 32 of inputs of 0, 3, 64, 65, 255, 1024 bytes, unkeyed and
    # keyed (key length = digest length). Digests of length 32 unkeyed go
    # through pyref's HASH and those of length 16 keyed through its MAC.
    grand = hashlib.blake2s(digest_size=32)
    for outlen in (16, 20, 28, 32):
        for inlen in (0, 3, 64, 65, 255, 1024):
            data = _selftest_sequence(inlen, inlen)
            key = _selftest_sequence(outlen, outlen)
            unkeyed = hash_(data) if outlen == 32 else hashlib.blake2s(data, digest_size=outlen).digest()
            keyed = (
                mac(key, data)
                if outlen == 16
                else hashlib.blake2s(data, digest_size=outlen, key=key).digest()
            )
            grand.update(unkeyed + keyed)
    expected = "6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe"
    assert grand.hexdigest() == expected


def test_keyed_blake2s_reference_kat() -> None:
    # The BLAKE2 reference package, blake2s-kat.txt (keyed, key = 00..1f):
    # the first two entries (inputs "" and 00). pyref's MAC is this keyed mode
    # with a 32-byte key and a 16-byte digest (WireGuard paper, section 5.4).
    key = bytes(range(32))
    kat = {
        b"": "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49",
        b"\x00": "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1",
    }
    for data, expected in kat.items():
        assert hashlib.blake2s(data, key=key).hexdigest() == expected
        assert mac(key, data) == hashlib.blake2s(data, digest_size=16, key=key).digest()
        assert mac(key, data) != bytes.fromhex(expected)[:16]  # the digest length is a parameter, not a cut


# -- HMAC and the KDF ----------------------------------------------------------


def _hmac_by_hand(key: bytes, data: bytes) -> bytes:
    # RFC 2104, section 2: H(K XOR opad, H(K XOR ipad, text)), with K padded
    # with zeros to the block length B (64 bytes for BLAKE2s; RFC 7693,
    # section 2.1); keys longer than B are hashed first.
    if len(key) > 64:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(64, b"\x00")
    inner = hashlib.blake2s(bytes(k ^ 0x36 for k in key) + data).digest()
    return hashlib.blake2s(bytes(k ^ 0x5C for k in key) + inner).digest()


def test_hmac_is_rfc2104_over_blake2s() -> None:
    for key_len in (0, 1, 32, 64, 65, 100):
        for data in (b"", b"\x01", b"WireGuard", bytes(range(200))):
            key = bytes((7 * i + key_len) & 0xFF for i in range(key_len))
            assert hmac_(key, data) == _hmac_by_hand(key, data), (key_len, data)


def test_kdf_is_the_papers_hkdf() -> None:
    # WireGuard paper, section 5.4 (and the Noise specification, section 4.3,
    # HKDF): tau0 = HMAC(key, input), tau1 = HMAC(tau0, 0x1),
    # tau_i = HMAC(tau0, tau_{i-1} || i); KDF_n returns tau1..tau_n.
    key = hashlib.blake2s(b"chaining key").digest()
    for data in (b"", bytes(32), b"input keying material"):
        t0 = _hmac_by_hand(key, data)
        t1 = _hmac_by_hand(t0, b"\x01")
        t2 = _hmac_by_hand(t0, t1 + b"\x02")
        t3 = _hmac_by_hand(t0, t2 + b"\x03")
        assert kdf(key, data, 1) == (t1,)
        assert kdf(key, data, 2) == (t1, t2)
        assert kdf(key, data, 3) == (t1, t2, t3)


# -- ChaCha20-Poly1305 ---------------------------------------------------------

# RFC 8439, Appendix A.5 (ChaCha20-Poly1305 AEAD decryption). Its nonce,
# 00000000 0102030405060708, is WireGuard's layout (paper, section 5.4: 32
# zero bits, then a 64-bit little-endian counter) for the counter
# 0x0807060504030201. (Section 2.8.2's nonce starts 07000000, which no
# counter gives.)
A5_KEY = bytes.fromhex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
A5_NONCE = bytes.fromhex("000000000102030405060708")
A5_AAD = bytes.fromhex("f33388860000000000004e91")
A5_PLAINTEXT = (
    "Internet-Drafts are draft documents valid for a maximum of six months and may be "
    "updated, replaced, or obsoleted by other documents at any time. It is inappropriate "
    "to use Internet-Drafts as reference material or to cite them other than as "
    "/\u201cwork in progress./\u201d"
).encode()
A5_CIPHERTEXT = bytes.fromhex(
    "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2"
    "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf"
    "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855"
    "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4"
    "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e"
    "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a"
    "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10"
    "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29"
    "a6ad5cb4022b02709b"
)
A5_TAG = bytes.fromhex("eead9d67890cbb22392336fea1851f38")


def test_aead_rfc8439_a5_with_wireguards_nonce() -> None:
    assert A5_NONCE[:4] == bytes(4)
    counter = struct.unpack("<Q", A5_NONCE[4:])[0]
    assert counter == 0x0807060504030201
    assert aead_encrypt(A5_KEY, counter, A5_PLAINTEXT, A5_AAD) == A5_CIPHERTEXT + A5_TAG
    assert aead_decrypt(A5_KEY, counter, A5_CIPHERTEXT + A5_TAG, A5_AAD) == A5_PLAINTEXT


# -- X25519 --------------------------------------------------------------------


def test_x25519_rfc7748_section_6_1() -> None:
    # RFC 7748, section 6.1: Alice's and Bob's keys and their shared secret
    # (tests/test_units.py checks Alice's public key through harness.keys).
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    alice_public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert public_of(alice) == alice_public
    assert public_of(bob) == bob_public
    assert dh(alice, bob_public) == dh(bob, alice_public) == shared


# -- TAI64N --------------------------------------------------------------------


def test_tai64n_labels_as_libtai_defines_them() -> None:
    # cr.yp.to/libtai/tai64.html: the label of the TAI second s after the start
    # of 1970 TAI is 2^62 + s, 8 bytes big-endian; TAI64N appends the
    # nanoseconds, 4 bytes big-endian. The page's example: 400000002a2b2c2d is
    # 1992-06-02 08:07:09 TAI, 707472429 s after 1970 TAI.
    # tai64n takes Unix time and, like Linux and wireguard-go, converts it with
    # libtai's 10 s offset (TAI - UTC in 1970): Unix 0 is 0x400000000000000a.
    assert tai64n(0) == bytes.fromhex("400000000000000a") + bytes(4)
    assert tai64n(707472429 - 10)[:8] == bytes.fromhex("400000002a2b2c2d")
    assert tai64n(707472419.5) == bytes.fromhex("400000002a2b2c2d") + struct.pack(">I", 500_000_000)


def test_tai64n_whitening_as_the_kernel_rounds_the_nanoseconds() -> None:
    # Linux drivers/net/wireguard/noise.c, tai64n_now: the nanoseconds are aligned down
    # to rounddown_pow_of_two(NSEC_PER_SEC / INITIATIONS_PER_SECOND), INITIATIONS_PER_SECOND
    # being 50 (messages.h): rounddown_pow_of_two(20_000_000) = 2^24 = 16_777_216, worked by
    # hand (2^24 <= 20_000_000 < 2^25). wireguard-go's tai64n/tai64n.go clears the bits of
    # whitenerMask = 0x1000000 - 1: the same. So the nanoseconds keep only their top byte.
    label = bytes.fromhex("400000002a2b2c2d")  # libtai's example second, as above
    for fraction, nanos in (
        (0.5, 0x1D000000),  # 500_000_000 = 0x1DCD6500
        (0.25, 0x0E000000),  # 250_000_000 = 0x0EE6B280
        (0.0167, 0),  # 16_700_000: below 2^24
        (0.0168, 0x01000000),  # 16_800_000: just above 2^24
        (0.999, 0x3B000000),  # 999_000_000 = 0x3B8B87C0
    ):
        assert tai64n(707472419 + fraction, whiten=True) == label + struct.pack(">I", nanos), fraction
    assert tai64n(707472419.5, whiten=False)[8:] == struct.pack(">I", 500_000_000)  # the exact label


# -- MAC1 and cookie keys --------------------------------------------------------


def test_mac1_key_and_mac1_as_the_paper_defines_them() -> None:
    # WireGuard paper, section 5.4.4: mac1 = MAC(HASH(LABEL_MAC1 || Spub_m'), msg_alpha),
    # LABEL_MAC1 = "mac1----", MAC = keyed BLAKE2s with a 16-byte digest, msg_alpha
    # = the message up to mac1. Section 5.4.7: the cookie key is
    # HASH(LABEL_COOKIE || Spub_m), LABEL_COOKIE = "cookie--".
    responder_public = public_of(bytes(range(1, 33)))
    key = hashlib.blake2s(b"mac1----" + responder_public).digest()
    assert mac1_key(responder_public) == key
    assert cookie_key(responder_public) == hashlib.blake2s(b"cookie--" + responder_public).digest()
    msg, _ = create_initiation(bytes(range(2, 34)), responder_public, bytes(range(3, 35)), 1, 1_700_000_000.0)
    wire = msg.encode()
    assert wire[116:132] == hashlib.blake2s(wire[:116], digest_size=16, key=key).digest()
    assert wire[132:148] == bytes(16)  # no cookie: mac2 is zero


# -- Noise_IKpsk2 --------------------------------------------------------------
# cacophony (github.com/haskell-cryptography/cacophony, vectors/cacophony.txt,
# public domain), the vector "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s". It is
# WireGuard's handshake with another prologue, payloads in both handshake
# messages, and four transport messages after them (even ones from the
# initiator, nonces 0 and 1 each way, no associated data).
IK_PROLOGUE = bytes.fromhex("4a6f686e2047616c74")
IK_PSK = bytes.fromhex("54686973206973206d7920417573747269616e20706572737065637469766521")
IK_INIT_STATIC = bytes.fromhex("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1")
IK_INIT_EPHEMERAL = bytes.fromhex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
IK_RESP_STATIC = bytes.fromhex("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893")
IK_RESP_EPHEMERAL = bytes.fromhex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
IK_REMOTE_STATIC = bytes.fromhex("31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62")
IK_HANDSHAKE_HASH = bytes.fromhex("f5191b875290abcd41347ac3622d9679688a7e980229cb937ef748336cfde0e5")
IK_MESSAGES = [  # (payload, ciphertext)
    (
        "4c756477696720766f6e204d69736573",
        "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
        "001e21de9f98ddd8e2ad57527207feb56253c9c94a9e496782ecfcb2a75fbcaf"
        "1b52948cc48daefe660c62119ab5000980c84831215f2441eba616548e832985"
        "464cf17e51ee93109008399a21f7e13f",
    ),
    (
        "4d757272617920526f746862617264",
        "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843"
        "cb765f2caef0751b8f007572dab0322217755c0632f365717edbf34d33e87a",
    ),
    ("462e20412e20486179656b", "8153ca9833bc3c1b91a7e66e5f4d4f5b59bf9e64c2f20d15f0bba7"),
    ("4361726c204d656e676572", "07af0c9c86e1b4e80f36b04ff7688d51141af3debd0332f0a705ef"),
    (
        "4a65616e2d426170746973746520536179",
        "6ab1467c0448cc78394494abaaf23afce0e234315d6e2624dcbfa8a21c1c4d073d",
    ),
    (
        "457567656e2042f6686d20766f6e2042617765726b",
        "dfc346c0d2296ae6cf1acf6f12b8456a1dba228cf8d8b774aacf1c47fc53aa80ebc7a4c292",
    ),
]
PAYLOADS = [bytes.fromhex(p) for p, _ in IK_MESSAGES]
WIRE = [bytes.fromhex(c) for _, c in IK_MESSAGES]


def test_noise_vector_keys_fit_together() -> None:
    assert public_of(IK_RESP_STATIC) == IK_REMOTE_STATIC


def _check_transport(send: bytes, receive: bytes, initiator: bool) -> None:
    # Messages 2..5: the initiator sends the even ones; each side counts from 0.
    for i in range(2, len(WIRE)):
        counter = (i - 2) // 2
        if (i % 2 == 0) == initiator:
            assert aead_encrypt(send, counter, PAYLOADS[i], b"") == WIRE[i], i
        else:
            assert aead_decrypt(receive, counter, WIRE[i], b"") == PAYLOADS[i], i


def test_noise_ikpsk2_vector_as_initiator() -> None:
    first = write_initiation(IK_INIT_STATIC, IK_REMOTE_STATIC, IK_INIT_EPHEMERAL, PAYLOADS[0], IK_PROLOGUE)
    assert first.ephemeral == WIRE[0][:32]
    assert first.encrypted_static == WIRE[0][32:80]
    assert first.encrypted_payload == WIRE[0][80:]
    payload, chain, hash_after = read_response(
        first.chain, first.hash, IK_INIT_EPHEMERAL, IK_INIT_STATIC, WIRE[1][:32], WIRE[1][32:], IK_PSK
    )
    assert payload == PAYLOADS[1]
    assert hash_after == IK_HANDSHAKE_HASH
    send, receive = split(chain)
    _check_transport(send, receive, initiator=True)


def test_noise_ikpsk2_vector_as_responder() -> None:
    initiator_public, payload, chain, hash_ = read_initiation(
        IK_RESP_STATIC, IK_REMOTE_STATIC, WIRE[0][:32], WIRE[0][32:80], WIRE[0][80:], IK_PROLOGUE
    )
    assert initiator_public == public_of(IK_INIT_STATIC)
    assert payload == PAYLOADS[0]
    second = write_response(
        chain, hash_, IK_RESP_EPHEMERAL, WIRE[0][:32], initiator_public, IK_PSK, PAYLOADS[1]
    )
    assert second.ephemeral + second.encrypted_payload == WIRE[1]
    assert second.encrypted_static == b""
    assert second.hash == IK_HANDSHAKE_HASH
    receive, send = split(second.chain)
    _check_transport(send, receive, initiator=False)
