"""The handshake prober (`harness/probe/core.py`, `harness/probe/handshakes.py`).

Unit tests: initiations and replies against pyref devices in memory (no
sockets). Integration tests (root): the prober as `python -m harness.probe`
inside a network namespace, against wireguard-go and pyref on the same
namespace's loopback, each with the prober's identities configured as peers."""

from __future__ import annotations

import os
import statistics
import time

import pytest

from harness.keys import encode_key
from harness.probe import JobError
from harness.probe.core import (
    Initiator,
    ReplyError,
    check_response,
    common_fields,
    open_cookie,
    reply_kind,
    response_mac1_ok,
)
from harness.probe.handshakes import MODES, Feeder
from harness.pyref.cookie import LoadPolicy
from harness.pyref.crypto import public_of
from harness.pyref.device import Device
from harness.pyref.messages import COOKIE_REPLY, RESPONSE, parse_initiation
from harness.pyref.noise import consume_initiation
from tests.support.probe_dut import dut

SRC = ("198.18.0.9", 40000)


def _device(n: int, policy: LoadPolicy | None = None) -> tuple[Device, Initiator]:
    key = os.urandom(32)
    dev = Device(key, os.urandom, load_policy=policy or LoadPolicy())
    ids = [os.urandom(32) for _ in range(n)]
    for i, k in enumerate(ids):
        dev.add_peer(public_of(k), [f"10.9.0.{i + 1}/32"])
    return dev, Initiator(ids, public_of(key))


def _answer(dev: Device, message: bytes, now: float = 0.0) -> bytes:
    out, _ = dev.receive_datagram(message, SRC, now)
    assert len(out) == 1
    return out[0][0]


# -- unit: initiations -----------------------------------------------------------
def test_timestamps_increase_per_identity_whatever_the_clock_says() -> None:
    dev, ini = _device(2)
    stamps: dict[int, list[bytes]] = {0: [], 1: []}
    for n in range(6):
        sent = ini.initiation(n % 2, 1_700_000_000.0)  # the same time every call
        stamps[n % 2].append(sent.timestamp)
        seen = consume_initiation(dev.static_private, parse_initiation(sent.message))
        assert seen.timestamp == sent.timestamp
    for s in stamps.values():
        assert s == sorted(s) and len(set(s)) == len(s)
    # A clock that goes back changes nothing either.
    later = ini.initiation(0, 1_600_000_000.0)
    assert later.timestamp > stamps[0][-1]


def test_the_responder_answers_every_initiation_of_one_identity() -> None:
    dev, ini = _device(1)
    for n in range(4):
        sent = ini.initiation(0, 1_700_000_000.0)
        reply = _answer(dev, sent.message, now=n * 0.05)
        assert reply_kind(reply) == (RESPONSE, sent.index)
        keys = check_response(ini, sent, reply)
        assert keys.local_index == sent.index


def test_sender_indices_are_unique() -> None:
    _, ini = _device(3)
    indices = {ini.initiation(n % 3, 0.0).index for n in range(300)}
    assert len(indices) == 300


# -- unit: replies ---------------------------------------------------------------
def test_response_validation_rejects_garbage_and_other_handshakes() -> None:
    dev, ini = _device(2)
    sent = ini.initiation(0, 1.0)
    reply = _answer(dev, sent.message)
    garbage = b"\x02\x00\x00\x00" + os.urandom(88)
    for bad in (garbage, reply[:-1], b"", reply[:60] + bytes(16) + reply[76:]):
        with pytest.raises(ReplyError):
            check_response(ini, sent, bad)
        assert not response_mac1_ok(ini, sent, bad)
    other = ini.initiation(1, 1.0)
    with pytest.raises(ReplyError):  # a response to another initiation
        check_response(ini, other, reply)
    assert response_mac1_ok(ini, sent, reply)
    check_response(ini, sent, reply)
    assert reply_kind(garbage[:91]) is None and reply_kind(b"\x04" + bytes(91)) is None


def test_cookie_retry_builds_a_valid_mac2() -> None:
    dev, ini = _device(2, LoadPolicy(always=True))
    first = ini.initiation(0, 1.0)
    reply = _answer(dev, first.message)
    assert reply_kind(reply) == (COOKIE_REPLY, first.index)
    with pytest.raises(ReplyError):  # bound to the mac1 of the initiation it answers
        open_cookie(ini, ini.initiation(1, 1.0), reply)
    cookie = open_cookie(ini, first, reply)
    retry = ini.initiation(0, 1.0, cookie=cookie)
    assert retry.message[-16:] != bytes(16)
    answer = _answer(dev, retry.message)
    assert reply_kind(answer) == (RESPONSE, retry.index)
    check_response(ini, retry, answer)
    # Without the cookie, or with another, still a cookie reply.
    for cookie_ in (None, os.urandom(16)):
        again = ini.initiation(1, 1.0, cookie=cookie_)
        assert reply_kind(_answer(dev, again.message)) == (COOKIE_REPLY, again.index)


def test_feeder_spaces_each_identity() -> None:
    _, ini = _device(2)
    feeder = Feeder(ini, 0.025)
    a, b = feeder.take(10.0), feeder.take(10.0)
    assert a is not None and b is not None and (a.identity, b.identity) == (0, 1)
    assert feeder.take(10.01) is None  # identity 0 again, too soon
    c = feeder.take(10.03)
    assert c is not None and c.identity == 0
    assert feeder.available_at() == pytest.approx(10.025)


def test_bad_job_fields_name_the_field() -> None:
    key = encode_key(os.urandom(32))
    good = {"target": ["127.0.0.1", 51820], "responder_public": key, "identities": [key]}
    assert common_fields(good).timeout == 1.0
    for field, value in [
        ("target", ["127.0.0.1"]),
        ("target", ["127.0.0.1", 0]),
        ("responder_public", "nope"),
        ("identities", []),
        ("identities", [key, "AAAA"]),
        ("timeout", -1),
    ]:
        with pytest.raises(JobError, match=field.split("[")[0]):
            common_fields({**good, field: value})
    with pytest.raises(JobError, match="count"):
        MODES["latency"]({**good, "count": 0})
    with pytest.raises(JobError, match="rates"):
        MODES["load"]({**good, "rates": [], "step_seconds": 1})


# -- integration (a DUT: tests/support/probe_dut.py) --------------------------------
KINDS = ["wireguard-go", "pyref"]


@pytest.mark.parametrize("kind", KINDS)
def test_latency_and_rate(no_leftovers: None, kind: str) -> None:
    with dut(kind, 500) as d:
        lat = d.probe("latency", count=50, interval=0.005)
        rtts = lat.rtt_ms
        assert isinstance(rtts, tuple) and len(rtts) == 50 and all(r > 0 for r in rtts)
        assert lat.lost == 0 and lat.cookie_replies == 0
        print(kind, "latency p50 ms", statistics.median(rtts))
        rate = d.probe("rate", duration=3.0, outstanding=32)
        # Neither is under load here: 32 outstanding never queue 128 handshakes behind one
        # (wireguard-go's IsUnderLoad; pyref's server counts what one wakeup read), so the
        # per-source rate limiter (20 a second) is not consulted and both answer them all.
        floor = 100
        assert isinstance(rate.per_second, float) and rate.per_second > floor
        assert rate.invalid == 0


@pytest.mark.parametrize(
    ("kind", "rates"),
    [("pyref", [1000, 3000, 6000, 12000]), ("wireguard-go", [1000, 3000, 6000, 12000])],
)
def test_load_finds_the_cookie_onset_and_mac2_completes(
    no_leftovers: None, kind: str, rates: list[int]
) -> None:
    with dut(kind, 2000) as d:
        started = time.monotonic()
        out = d.probe("load", rates=rates, step_seconds=1.0)
        print(kind, "load took", round(time.monotonic() - started, 1), "s")
        steps = out.steps
        assert isinstance(steps, tuple) and [s.rate for s in steps] == rates
        assert steps[0].cookie_replies == 0 and steps[0].responses > 0
        assert out.cookie_onset_rate is not None
        assert out.retry_with_mac2_completed is True
        assert out.retry_under_load is True
