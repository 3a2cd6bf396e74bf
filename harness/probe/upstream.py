"""What upstream WireGuard does over time, as verdicts on the prober's
observations (`harness/probe/timers.py`, the ``replay-window`` mode of
`harness/probe/conformance.py`). Pure functions: observations in (the prober's
result dataclasses), a `Judgement` out; the conformance suite stores it.

"Upstream" is the Linux kernel's module (drivers/net/wireguard, the same code
as wireguard-linux-compat's src/) and wireguard-go; each rule names the files
and functions it was read from. Constants are theirs (messages.h in the kernel,
device/constants.go in wireguard-go). Slack allows for the network, the
prober's own clock reads and a loaded machine; a bound that is part of the
rule is never widened past the protocol's own jitter in the direction that
matters (e.g. "not before 5 s" is checked as 5 s minus `EARLY`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

# messages.h / device/constants.go
REKEY_TIMEOUT = 5.0
REKEY_TIMEOUT_JITTER = 1 / 3
"""REKEY_TIMEOUT_JITTER_MAX_JIFFIES = HZ / 3; RekeyTimeoutJitterMaxMs = 334."""
KEEPALIVE_TIMEOUT = 10.0
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
INITIATION_MIN_GAP = 1 / 50
"""noise.c: INITIATIONS_PER_SECOND = 50; noise-protocol.go: HandshakeInitationRate = 1 s / 50."""
COUNTER_WINDOW = 8192 - 64
"""messages.h: COUNTER_BITS_TOTAL - COUNTER_REDUNDANT_BITS (64-bit longs); replay.go:
(ringBlocks - 1) * blockBits = 127 * 64."""
RECEIVE_REKEY_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
"""165 s: receive.c keep_key_fresh, receive.go keepKeyFreshReceiving."""

EARLY = 0.1
"""Seconds an event may seem early (measured at the prober, not where it happened)."""
LATE = 0.6
"""Seconds an event may seem late (scheduling, a guest under emulation)."""


@dataclass(frozen=True)
class Judgement:
    passed: bool
    measured: str
    """The value the matrix shows (short)."""
    detail: str
    """What was seen and what upstream does (a sentence or two)."""
    value: float | None = None
    """The main measured number, stored as a metric when there is one."""
    unit: str = "s"


def _s(x: float | None) -> str:
    return "none" if x is None else f"{x:.2f} s"


def _first(times: Sequence[float], after: float = float("-inf")) -> float | None:
    return next((float(t) for t in times if t > after), None)


def _rekey_age(obs: DutInitiatesResult) -> float | None:
    """Seconds from the session (our first answered handshake) to the DUT's next initiation."""
    if not obs.answered:
        return None
    session = float(obs.answered[0])
    rekey = _first(obs.initiations, session)
    return None if rekey is None else rekey - session


# -- item 1: persistent keepalives and handshakes -------------------------------------
def keepalive_starts_handshake(obs: DutInitiatesResult, interval: float) -> Judgement:
    """Turning a persistent keepalive on for a peer with an endpoint sends a keepalive
    at once (kernel netlink.c set_peer: interval from 0 to non-zero with the device up;
    wireguard-go uapi.go: pkaOn), and a keepalive with no session queues a handshake
    instead (send.c wg_packet_send_staged_packets → wg_packet_send_queued_handshake_initiation;
    send.go SendStagedPackets → SendHandshakeInitiation). So an initiation comes at
    once; at the latest when the persistent-keepalive timer fires, one interval later.
    Times are from the prober's ``ready``, before the harness set the keepalive."""
    first = _first(obs.initiations)
    ok = first is not None and first <= interval + LATE + 0.5
    return Judgement(
        ok,
        _s(first),
        f"persistent keepalive of {interval:g} s set for a peer with an endpoint and no session: "
        f"first initiation after {_s(first)} (upstream: at once, at most {interval:g} s)",
        first,
    )


def rekey_on_keepalive(obs: DutInitiatesResult, interval: float) -> Judgement:
    """The DUT initiated (its persistent keepalive) and sends only keepalives. After every
    send, keepalives included, the kernel checks the current keypair (send.c
    wg_packet_create_data_done → keep_key_fresh; send.go RoutineSequentialSender →
    keepKeyFreshSending): its initiator starts a new handshake once the keypair is
    older than REKEY_AFTER_TIME. So the second initiation comes with the first
    keepalive after 120 s: between 120 s and 120 s + interval after our response."""
    age = _rekey_age(obs)
    low, high = REKEY_AFTER_TIME - EARLY, REKEY_AFTER_TIME + interval + LATE
    ok = age is not None and low <= age <= high
    return Judgement(
        ok,
        _s(age),
        f"keepalives only, every {interval:g} s: new initiation {_s(age)} after the session "
        f"(upstream: with the first keepalive past {REKEY_AFTER_TIME:g} s, so in "
        f"[{REKEY_AFTER_TIME:g}, {REKEY_AFTER_TIME + interval:g}] s); keepalives seen {len(obs.keepalives)}",
        age,
    )


# -- item 2: the peer restarts --------------------------------------------------------
def peer_restart(obs: PeerRestartResult) -> Judgement:
    """Data the DUT sends arms a timer unless one is pending (timers.c
    wg_timers_data_sent, timers.go timersDataSent) for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
    plus up to 1/3 s of jitter; any authenticated packet received stops it
    (wg_timers_any_authenticated_packet_received). When it fires, a new handshake
    (wg_expired_new_handshake, expiredNewHandshake). With the peer gone, that is
    15 to 15.33 s after the first unanswered data packet; answering it recovers."""
    t0, init, rec = obs.first_dropped, obs.initiation, obs.recovered
    delay = None if t0 is None or init is None else float(init) - float(t0)
    recovery = None if t0 is None or rec is None else float(rec) - float(t0)
    expect = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
    ok = (
        delay is not None
        and expect - EARLY <= delay <= expect + REKEY_TIMEOUT_JITTER + LATE
        and recovery is not None
    )
    return Judgement(
        ok,
        f"{_s(delay)}, recovered {_s(recovery)}",
        f"after the peer forgot the session: new initiation {_s(delay)} after the first unanswered "
        f"data packet, traffic on the new session {_s(recovery)} after it (upstream: "
        f"{expect:g} s plus up to 1/3 s); data answered before: {obs.answered_data}",
        delay,
    )


# -- item 3: rekey on the receive path -----------------------------------------------
def rekey_on_receive(obs: DutInitiatesResult, every: float) -> Judgement:
    """The DUT initiated (data) and then only receives (our keepalives every ``every``
    seconds; it answers none: no data came, so no passive keepalive). On every
    authenticated packet received (receive.c wg_packet_consume_data_done →
    keep_key_fresh; receive.go RoutineSequentialReceiver → keepKeyFreshReceiving), its
    initiator starts one new handshake once the keypair is older than
    REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT = 165 s. Nothing is sent in
    between, so the send-path check (120 s) never runs: the second initiation comes
    with the first keepalive of ours past 165 s."""
    age = _rekey_age(obs)
    low, high = RECEIVE_REKEY_AGE - EARLY, RECEIVE_REKEY_AGE + every + LATE
    ok = age is not None and low <= age <= high
    return Judgement(
        ok,
        _s(age),
        f"receiving only (our keepalive every {every:g} s): new initiation {_s(age)} after the "
        f"session (upstream: with the first packet received past {RECEIVE_REKEY_AGE:g} s); "
        f"the DUT's keepalives {len(obs.keepalives)}, data {len(obs.data)}",
        age,
    )


# -- item 4: initiations, their rate and crossings --------------------------------------
def initiation_rate(obs: DutInitiatesResult, window: float) -> Judgement:
    """Data for a peer with no session, the initiations dropped. The kernel sends an
    initiation only if REKEY_TIMEOUT passed since the last handshake message it sent
    (send.c wg_packet_send_handshake_initiation and ..._queued_...: last_sent_handshake;
    send.go SendHandshakeInitiation: lastSentHandshake); retries come from the
    retransmit timer, REKEY_TIMEOUT plus jitter. So initiations are at least 5 s apart,
    however much data waits."""
    times = [float(t) for t in obs.initiations]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    least = min(gaps) if gaps else None
    ok = least is not None and least >= REKEY_TIMEOUT - EARLY
    return Judgement(
        ok,
        f"{len(times)} in {window:g} s, min gap {_s(least)}",
        f"data pending for {window:g} s, every initiation dropped: {len(times)} initiations, gaps "
        f"{[round(g, 2) for g in gaps]} (upstream: at least {REKEY_TIMEOUT:g} s apart)",
        least,
    )


def initiation_flood(obs: InitiationFloodResult) -> Judgement:
    """The responder takes at most one initiation per peer every 1/50 s (noise.c
    wg_noise_handshake_consume_initiation: last_initiation_consumption +
    1 s / INITIATIONS_PER_SECOND; noise-protocol.go ConsumeMessageInitiation: flood,
    HandshakeInitationRate), whatever the timestamps: of two valid initiations 5 ms
    apart only the first is answered; 50 ms apart, both are."""
    short, long = obs.pairs[0], obs.pairs[1]
    ok = tuple(short.answered) == (True, False) and tuple(long.answered) == (True, True)

    def said(p: GapPair) -> str:
        return f"{p.gap * 1000:.0f} ms: {sum(p.answered)}/2"

    return Judgement(
        ok,
        f"{said(short)}, {said(long)}",
        f"two valid initiations {said(short)} answered, {said(long)} answered (upstream: 1/2 within "
        f"{INITIATION_MIN_GAP * 1000:.0f} ms, else 2/2)",
        None,
        "",
    )


def crossed_initiation(obs: CrossedInitiationResult) -> Judgement:
    """Sending a response counts as sending a handshake message (send.c
    wg_packet_send_handshake_response and send.go SendHandshakeResponse set
    last_sent_handshake), so the DUT that just answered us, given data for us before
    we confirmed, starts no initiation of its own within REKEY_TIMEOUT (the rate limit
    of item 4); nor does it send on the session we have not confirmed (a responder
    waits for the initiator's first packet: noise.c wg_noise_handshake_begin_session
    keeps it as the next keypair)."""
    first = _first(obs.initiations)
    unconfirmed = int(obs.sent_on_unconfirmed)
    ok = (first is None or first >= REKEY_TIMEOUT - EARLY) and unconfirmed == 0
    return Judgement(
        ok,
        _s(first),
        f"after answering us, with data for us: its first initiation {_s(first)} after the "
        f"response (upstream: not before {REKEY_TIMEOUT:g} s); sent on the unconfirmed session: "
        f"{unconfirmed}",
        first,
    )


# -- item 5: the replay window ---------------------------------------------------------
def replay_window(obs: ReplayWindowResult) -> Judgement:
    """Counters at most COUNTER_WINDOW (8,128) behind the highest accepted are taken if
    unseen (receive.c counter_validate; replay.go ValidateCounter, windowSize);
    farther back, dropped."""
    tried = [int(k) for k in obs.offsets]
    accepted = {int(k) for k in obs.offsets_accepted}
    largest = max(accepted) if accepted else None
    want = {k for k in tried if k <= COUNTER_WINDOW}
    ok = bool(obs.top_delivered) and accepted == want
    return Judgement(
        ok,
        f"largest accepted {largest if largest is not None else 'none'}",
        f"offsets behind counter {obs.top} tried {tried}: accepted {sorted(accepted)} "
        f"(upstream: every offset up to {COUNTER_WINDOW})",
        None if largest is None else float(largest),
        "counters",
    )


def reordering(obs: ReplayWindowResult) -> Judgement:
    """The same window: counter N + 1, then N down to 1 (N = 8,000 < 8,128), are all
    delivered."""
    want = int(obs.reorder) + 1
    got = int(obs.reorder_delivered)
    return Judgement(
        got == want,
        f"{got}/{want}",
        f"counter {want} first, then {want - 1} down to 1: {got} of {want} delivered "
        f"({obs.reorder_sent} sent; upstream: all, within its {COUNTER_WINDOW} window)",
        float(got),
        "packets",
    )


# -- item 7: keepalive timers ------------------------------------------------------------
def keepalive_rearmed(obs: KeepaliveRearmResult, interval: float) -> Judgement:
    """The persistent-keepalive timer is pushed back by every authenticated packet sent
    *or received* (timers.c wg_timers_any_authenticated_packet_traversal, called from
    receive.c too; timers.go timersAnyAuthenticatedPacketTraversal, from receive.go).
    With a packet from us every interval/2 it never fires; when we stop, it does,
    one interval after our last."""
    during = obs.keepalives_while_receiving
    after = _first(obs.keepalives_after)
    ok = not during and after is not None and after <= interval + LATE
    return Judgement(
        ok,
        f"{len(during)} while receiving, then {_s(after)}",
        f"persistent keepalive {interval:g} s, a keepalive from us every {obs.every:g} s for "
        f"{obs.window:g} s: the DUT sent {len(during)} (upstream: none); after we stopped, its "
        f"first came {_s(after)} after our last (upstream: {interval:g} s)",
        float(len(during)),
        "keepalives",
    )


def passive_keepalive(obs: PassiveKeepaliveResult) -> Judgement:
    """Data received arms the keepalive timer if it is not pending (timers.c
    wg_timers_data_received; timers.go timersDataReceived), for KEEPALIVE_TIMEOUT; more
    data meanwhile only sets need_another_keepalive, it does not push the timer
    back. Anything the DUT sends cancels it (wg_timers_any_authenticated_packet_sent).
    So the first keepalive comes 10 s after the first data packet, not 10 s after the
    second. When it fires with need_another set it is re-armed
    (wg_expired_send_keepalive, expiredSendKeepalive) — but the keepalive it just
    queued leaves afterwards, from the send path, and that cancels the timer again
    (send.c wg_packet_create_data_done, send.go RoutineSequentialSender), so a second
    keepalive is not something upstream promises: its count is reported, not judged."""
    times = [float(t) for t in obs.keepalives]
    first = times[0] if times else None
    ok = (
        first is not None and KEEPALIVE_TIMEOUT - EARLY <= first <= KEEPALIVE_TIMEOUT + LATE and not obs.other
    )
    return Judgement(
        ok,
        f"{_s(first)}, {len(times)} in {obs.listen:g} s",
        f"data at 0 s and {obs.second:g} s, nothing else: keepalives at {[round(t, 2) for t in times]} "
        f"(upstream: the first at {KEEPALIVE_TIMEOUT:g} s after the first data); other packets "
        f"{len(obs.other)}",
        first,
    )
