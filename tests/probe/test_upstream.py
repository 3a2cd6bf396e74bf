"""The verdicts of the timer and replay-window probes (`harness/probe/upstream.py`) on
synthetic observations: what the kernel and wireguard-go would show passes, each
way of departing from them fails. No root, no network."""

from __future__ import annotations

import pytest

from harness.probe import upstream as u
from harness.probe.conformance import ReplayWindowResult
from harness.probe.timers import (
    CrossedInitiationResult,
    DutInitiatesResult,
    GapPair,
    InitiationFloodResult,
    KeepaliveRearmResult,
    PassiveKeepaliveResult,
    PeerRestartResult,
)


def answering(initiations: list[float], answered: list[float] | None = None) -> DutInitiatesResult:
    return DutInitiatesResult(
        listen=200.0,
        initiations=tuple(initiations),
        answered=tuple(initiations if answered is None else answered),
        keepalives=(),
        data=(),
        keepalives_sent=0,
    )


# -- item 1 ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("initiations", "ok"), [([0.2], True), ([2.9], True), ([4.0], False), ([], False)])
def test_keepalive_starts_a_handshake(initiations: list[float], ok: bool) -> None:
    j = u.keepalive_starts_handshake(answering(initiations), interval=2)
    assert j.passed is ok
    assert j.measured == ("none" if not initiations else f"{initiations[0]:.2f} s")


@pytest.mark.parametrize(
    ("age", "ok"), [(123.0, True), (120.0, True), (126.5, False), (60.0, False), (None, False)]
)
def test_rekey_on_keepalive_between_120s_and_one_interval_more(age: float | None, ok: bool) -> None:
    obs = answering([1.0] if age is None else [1.0, 1.0 + age])
    j = u.rekey_on_keepalive(obs, interval=5)
    assert j.passed is ok, j
    assert j.value == (None if age is None else pytest.approx(age))


# -- item 2 ---------------------------------------------------------------------------------
def restart(first: float | None, initiation: float | None, recovered: float | None) -> PeerRestartResult:
    return PeerRestartResult(alive=3.0, answered_data=5, initiations_while_alive=0, dropped=30,
                             first_dropped=first, initiation=initiation, recovered=recovered)  # fmt: skip


@pytest.mark.parametrize(
    ("obs", "ok"),
    [
        (restart(0.3, 15.5, 15.6), True),  # 15.2 s after the first unanswered packet
        (restart(0.3, 15.3, None), False),  # never recovered
        (restart(0.3, 10.3, 10.4), False),  # too early (10 s)
        (restart(0.3, 25.0, 25.1), False),  # too late (a retry, not the timer)
        (restart(0.3, None, None), False),  # no handshake
        (restart(None, None, None), False),  # no data at all
    ],
)
def test_peer_restart(obs: PeerRestartResult, ok: bool) -> None:
    assert u.peer_restart(obs).passed is ok


# -- item 3 ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("age", "ok"), [(165.5, True), (167.4, True), (120.5, False), (170.0, False)])
def test_rekey_on_receive_at_165s(age: float, ok: bool) -> None:
    j = u.rekey_on_receive(answering([0.5, 0.5 + age]), every=2.0)
    assert j.passed is ok
    assert j.value == pytest.approx(age)


def test_rekey_on_receive_without_a_second_initiation_fails() -> None:
    j = u.rekey_on_receive(answering([0.5]), every=2.0)
    assert not j.passed and j.measured == "none"


# -- item 4 ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("times", "ok"),
    [
        ([0.1, 5.2, 10.4], True),
        ([0.1, 5.05, 10.0], True),
        ([0.1, 1.1, 2.1], False),
        ([0.1], False),
        ([], False),
    ],
)
def test_initiation_rate(times: list[float], ok: bool) -> None:
    assert u.initiation_rate(answering(times, []), 12.0).passed is ok


def flood(short: list[bool], long: list[bool]) -> InitiationFloodResult:
    return InitiationFloodResult((GapPair(0.005, tuple(short)), GapPair(0.05, tuple(long))))


@pytest.mark.parametrize(
    ("short", "long", "ok"),
    [
        ([True, False], [True, True], True),
        ([True, True], [True, True], False),  # no per-peer flood limit
        ([True, False], [True, False], False),  # a limit longer than 1/50 s
        ([False, False], [False, False], False),  # nothing answered
    ],
)
def test_initiation_flood(short: list[bool], long: list[bool], ok: bool) -> None:
    j = u.initiation_flood(flood(short, long))
    assert j.passed is ok
    assert j.measured == f"5 ms: {sum(short)}/2, 50 ms: {sum(long)}/2"


@pytest.mark.parametrize(
    ("initiations", "unconfirmed", "ok"),
    [([5.1], 0, True), ([], 0, True), ([0.4, 5.4], 0, False), ([5.2], 3, False)],
)
def test_crossed_initiation(initiations: list[float], unconfirmed: int, ok: bool) -> None:
    obs = CrossedInitiationResult(listen=7.0, initiations=tuple(initiations), sent_on_unconfirmed=unconfirmed)
    assert u.crossed_initiation(obs).passed is ok


# -- item 5 ---------------------------------------------------------------------------------
OFFSETS = [1024, 2047, 2048, 4096, 8000, 8064, 8127, 8128, 8129, 8191, 8192, 8193]


def window(accepted: list[int], delivered: int = 8001, top: bool = True) -> ReplayWindowResult:
    return ReplayWindowResult(reorder=8000, reorder_first_delivered=True, reorder_sent=8001,
                              reorder_delivered=delivered, top=16195, top_delivered=top, offsets=tuple(OFFSETS),
                              offsets_accepted=tuple(accepted))  # fmt: skip


def test_replay_window_of_8128() -> None:
    j = u.replay_window(window([k for k in OFFSETS if k <= 8128]))
    assert j.passed and j.measured == "largest accepted 8128" and j.value == 8128


@pytest.mark.parametrize(
    "accepted",
    [
        [1024, 2047],  # a 2048 window (pyref today)
        [k for k in OFFSETS if k <= 8191],  # the whole 8192 bits
        [k for k in OFFSETS if k < 8128],  # one short
        [],
    ],
)
def test_other_replay_windows_fail(accepted: list[int]) -> None:
    j = u.replay_window(window(accepted))
    assert not j.passed
    assert j.measured == f"largest accepted {max(accepted) if accepted else 'none'}"


def test_replay_window_needs_the_top_counter_delivered() -> None:
    assert not u.replay_window(window([k for k in OFFSETS if k <= 8128], top=False)).passed


@pytest.mark.parametrize(("delivered", "ok"), [(8001, True), (8000, False), (2048, False)])
def test_reordering(delivered: int, ok: bool) -> None:
    j = u.reordering(window([], delivered=delivered))
    assert j.passed is ok and j.measured == f"{delivered}/8001"


# -- item 7 ---------------------------------------------------------------------------------
def rearm(during: list[float], after: list[float]) -> KeepaliveRearmResult:
    return KeepaliveRearmResult(every=1.0, window=8.0, settle_keepalives=1, keepalives_while_receiving=tuple(during),
                                keepalives_after=tuple(after), other=0)  # fmt: skip


@pytest.mark.parametrize(
    ("during", "after", "ok"),
    [
        ([], [2.0], True),
        ([2.0, 4.0, 6.0], [0.5], False),  # re-armed on send only
        ([], [], False),  # no persistent keepalive at all: the control fails
        ([], [5.0], False),  # late
    ],
)
def test_keepalive_rearmed_on_receive(during: list[float], after: list[float], ok: bool) -> None:
    assert u.keepalive_rearmed(rearm(during, after), interval=2).passed is ok


def passive(keepalives: list[float], other: list[float] | None = None) -> PassiveKeepaliveResult:
    return PassiveKeepaliveResult(
        listen=21.0, second=3.0, settle_packets=0, keepalives=tuple(keepalives), other=tuple(other or ())
    )


@pytest.mark.parametrize(
    ("keepalives", "other", "ok"),
    [
        ([10.0], [], True),
        ([10.01, 20.02], [], True),  # a second one is reported, not judged
        ([13.0], [], False),  # the timer pushed back by the second packet
        ([], [], False),
        ([10.0], [4.0], False),  # the DUT answered the data
    ],
)
def test_passive_keepalive(keepalives: list[float], other: list[float], ok: bool) -> None:
    j = u.passive_keepalive(passive(keepalives, other))
    assert j.passed is ok
    assert j.measured.endswith(f"{len(keepalives)} in 21 s")
