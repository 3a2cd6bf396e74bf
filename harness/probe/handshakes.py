"""Handshake measurements: latency, responder rate, a flood at a fixed rate, and
the load at which the responder starts asking for cookies.

Jobs (besides the common fields of `harness/probe/__main__.py`: ``target``,
``responder_public``, ``identities``, optional ``bind`` and ``timeout``, 1 s):

- ``latency`` {count, interval=0.03}: ``count`` handshakes one after another,
  round-robin over the identities, each at least ``interval`` after the last.
  Result `LatencyResult` {rtt_ms: [...], lost, cookie_replies, invalid}.
- ``rate`` {duration, outstanding}: ``outstanding`` initiations in flight for
  ``duration`` seconds, each answer (or timeout) freeing a place; responses are
  read to the end (MAC1 and the handshake). Result `RateResult`
  {sent, responses, cookie_replies, invalid, elapsed, per_second}.
  In both, a cookie reply is answered as an initiator does: the initiations
  sent while its cookie is fresh carry the MAC2 (so a responder under load
  still completes handshakes; ``cookie_replies`` says it was).
- ``flood`` {duration, rate}: initiations at ``rate`` a second whatever comes
  back; responses counted by their MAC1. Result `FloodResult`
  {sent, responses, cookie_replies, elapsed, achieved_rate}.
- ``load`` {rates, step_seconds}: a flood step per rate. Result `LoadResult` {steps: [{rate,
  sent, responses, cookie_replies, cookie_share}], cookie_onset_rate,
  retry_with_mac2_completed, retry_under_load}: the first rate whose step got
  cookie replies (null if none); after a step with cookie replies, within the
  responder's one-second hold, an initiation with the MAC2 of the latest
  cookie, sent right after one without (the control); completed if a valid
  response came back, under load if the control got a cookie reply.

Limits kept for every responder: an identity is used at most once per
`SPACING` (wireguard-go ignores an initiation within 20 ms of the last it
consumed from that peer) in ``latency``, ``rate`` and the MAC2 retry; a flood
sends round-robin over the identities at the rate asked, so with too few of
them the responder may ignore some. Every loop ends by its duration, count or
timeout; traffic goes to ``target`` only.
"""

from __future__ import annotations

import errno
import math
import select
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from harness.probe import Job, JobError, Mode
from harness.probe.core import (
    Common,
    Initiator,
    ReplyError,
    Sent,
    check_response,
    common_fields,
    number,
    open_cookie,
    reply_kind,
    response_mac1_ok,
    with_mac2,
)
from harness.pyref.cookie import COOKIE_LATENCY, COOKIE_SECRET_LIFETIME
from harness.pyref.messages import COOKIE_REPLY, RESPONSE

SPACING = 0.025
"""Seconds between two initiations of one identity (wireguard-go: at most one per 20 ms)."""
MAX_DURATION = 600.0
MAX_RATE = 1_000_000.0
PRECOMPUTE = 20_000
"""At most this many initiations are built before a flood or load step starts
(about 1.5 s of work); more are built while it runs."""
RETRY_ATTEMPTS = 4
RETRY_GAP = 0.15
"""The MAC2 retry: up to 4 attempts, 0.15 s apart, all within the responder's 1 s hold."""


# -- scheduling (sans-IO) ------------------------------------------------------
class Feeder:
    """Initiations round-robin over the identities, built ahead when there is
    time; one is handed out only if its identity was last used ``spacing``
    seconds ago or more (``now``: a monotonic clock; ``wall``: Unix time for the
    timestamps)."""

    def __init__(self, initiator: Initiator, spacing: float, wall: Callable[[], float] = time.time) -> None:
        self.initiator = initiator
        self.spacing = spacing
        self._wall = wall
        self._cursor = 0
        self._last_use = [float("-inf")] * len(initiator.identities)
        self._ready: deque[Sent] = deque()

    def __len__(self) -> int:
        return len(self._ready)

    def build(self, cookie: bytes | None = None) -> Sent:
        """The next identity's initiation, put at the end of the line."""
        identity, self._cursor = self._cursor, (self._cursor + 1) % len(self._last_use)
        sent = self.initiator.initiation(identity, self._wall(), cookie=cookie)
        self._ready.append(sent)
        return sent

    def available_at(self) -> float:
        """When the next initiation in line may go."""
        identity = self._ready[0].identity if self._ready else self._cursor
        return self._last_use[identity] + self.spacing

    def take(self, now: float) -> Sent | None:
        """The next initiation in line (built now if none is), or None if its
        identity was used less than ``spacing`` ago."""
        if now < self.available_at():
            return None
        if not self._ready:
            self.build()
        sent = self._ready.popleft()
        self._last_use[sent.identity] = now
        return sent

    def fresh(self, now: float, cookie: bytes | None = None) -> Sent | None:
        """A new initiation (with the MAC2 of ``cookie`` if given) from the identity
        used longest ago: those built ahead are dropped (a later timestamp now
        exists for their identities). None while that identity is too recent."""
        self._ready.clear()
        if now < self.available_at():
            return None
        self.build(cookie)
        return self.take(now)


@dataclass
class Tally:
    sent: int = 0
    responses: int = 0
    cookie_replies: int = 0
    invalid: int = 0


@dataclass
class Answer:
    """A reply matched to the initiation it answers."""

    sent: Sent
    tag: object
    """What the mode attached to the initiation when sending it."""
    kind: int
    """RESPONSE or COOKIE_REPLY."""
    data: bytes
    sent_at: float
    received_at: float


# -- results --------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyResult:
    """``latency``: handshakes one after another."""

    rtt_ms: tuple[float, ...]
    """Round-trip time of each completed handshake (ms, 3 decimals)."""
    lost: int
    """Initiations not sent or not answered within the timeout."""
    cookie_replies: int
    invalid: int
    """Replies that did not check out."""


@dataclass(frozen=True)
class RateResult:
    """``rate``: a fixed number of initiations in flight for a duration."""

    sent: int
    responses: int
    """Valid handshake responses."""
    cookie_replies: int
    invalid: int
    elapsed: float
    """Seconds the mode ran."""
    per_second: float
    """Responses a second."""


@dataclass(frozen=True)
class FloodResult:
    """``flood``: initiations at a fixed rate, whatever comes back."""

    sent: int
    responses: int
    """Responses with a valid MAC1."""
    cookie_replies: int
    elapsed: float
    achieved_rate: float
    """Initiations a second actually sent."""


@dataclass(frozen=True)
class LoadStep:
    """One flood step of ``load``."""

    rate: float
    """Initiations a second asked for."""
    sent: int
    responses: int
    cookie_replies: int
    cookie_share: float
    """cookie_replies / sent (0 if nothing was sent)."""


@dataclass(frozen=True)
class LoadResult:
    """``load``: flood steps at growing rates, and the MAC2 retry."""

    steps: tuple[LoadStep, ...]
    cookie_onset_rate: float | None
    """The first rate whose step got cookie replies (None if none did)."""
    retry_with_mac2_completed: bool
    retry_under_load: bool
    """The control initiation (no MAC2) of the retry got a cookie reply."""


# -- I/O -------------------------------------------------------------------------
class Link:
    """A non-blocking UDP socket connected to the target: it sends and receives
    nothing else. Replies are matched to pending initiations by receiver index."""

    def __init__(self, common: Common, *, use_cookies: bool = False) -> None:
        self.common = common
        self.use_cookies = use_cookies
        """Answer cookie replies as an initiator does: initiations sent while the
        latest cookie is fresh carry its MAC2 (the cookie binds our address and
        port, so one serves every identity)."""
        self.cookie: bytes | None = None
        self._cookie_at = -math.inf
        family = socket.AF_INET6 if ":" in common.target[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for option, size in ((socket.SO_RCVBUF, 1 << 22), (socket.SO_SNDBUF, 1 << 21)):
                self.sock.setsockopt(socket.SOL_SOCKET, option, size)
            if common.bind is not None:
                self.sock.bind((common.bind, 0))
            self.sock.connect(common.target)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)
        self.pending: OrderedDict[int, tuple[Sent, object, float]] = OrderedDict()
        self.unmatched = 0
        """Datagrams that answer no pending initiation (late, or not a reply)."""

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def take_cookie(self, initiator: Initiator, answer: Answer) -> None:
        """Keep the cookie of a cookie reply (if this link uses cookies and it opens)."""
        if self.use_cookies:
            try:
                self.cookie = open_cookie(initiator, answer.sent, answer.data)
                self._cookie_at = answer.received_at
            except ReplyError:
                pass

    def send(self, sent: Sent, tag: object) -> bool:
        """Send ``sent`` (with the MAC2 of a fresh cookie, if this link uses them)
        and wait for its reply; False if the socket's buffer is full or the
        target refused it."""
        message = sent.message
        if self.cookie is not None:
            if time.monotonic() - self._cookie_at < COOKIE_SECRET_LIFETIME - COOKIE_LATENCY:
                message = with_mac2(message, self.cookie)
            else:
                self.cookie = None
        try:
            self.sock.send(message)
        except (BlockingIOError, ConnectionRefusedError):
            return False
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return False
            raise
        self.pending[sent.index] = (sent, tag, time.monotonic())
        return True

    def receive(self, wait: float, limit: int = 256) -> list[Answer]:
        """The replies that arrive within ``wait`` seconds (at most ``limit``)."""
        answers: list[Answer] = []
        if wait > 0 and not self._poll.poll(max(1, math.ceil(wait * 1000))):
            return answers
        for _ in range(limit):
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                break
            except ConnectionRefusedError:  # an ICMP error from the target: nobody listens
                continue
            now = time.monotonic()
            kind = reply_kind(data)
            entry = self.pending.pop(kind[1], None) if kind else None
            if kind is None or entry is None:
                self.unmatched += 1
                continue
            sent, tag, sent_at = entry
            answers.append(Answer(sent, tag, kind[0], data, sent_at, now))
        return answers

    def expire(self, now: float) -> list[tuple[Sent, object]]:
        """Forget the initiations that waited ``timeout`` for a reply; those."""
        gone: list[tuple[Sent, object]] = []
        limit = now - self.common.timeout
        while self.pending:
            index, (sent, tag, sent_at) = next(iter(self.pending.items()))
            if sent_at > limit:
                break
            del self.pending[index]
            gone.append((sent, tag))
        return gone

    def next_expiry(self) -> float:
        if not self.pending:
            return math.inf
        _, _, sent_at = next(iter(self.pending.values()))
        return sent_at + self.common.timeout


def _count(link: Link, initiator: Initiator, answer: Answer, tally: Tally, *, full: bool) -> bool:
    """Count a reply in ``tally``; True for a valid response. ``full``: read the
    response to the end, else check its MAC1 only."""
    if answer.kind == COOKIE_REPLY:
        tally.cookie_replies += 1
        link.take_cookie(initiator, answer)
        return False
    if full:
        try:
            check_response(initiator, answer.sent, answer.data)
        except ReplyError:
            tally.invalid += 1
            return False
    elif not response_mac1_ok(initiator, answer.sent, answer.data):
        tally.invalid += 1
        return False
    tally.responses += 1
    return True


def _duration(job: Job) -> float:
    return number(job, "duration", minimum=0.001, maximum=MAX_DURATION)


# -- modes ---------------------------------------------------------------------
def latency(job: Job) -> LatencyResult:
    common = common_fields(job)
    count = int(number(job, "count", minimum=1, maximum=100_000, integer=True))
    interval = number(job, "interval", 0.03, minimum=0.0, maximum=60.0)
    initiator = Initiator(common.identities, common.responder_public)
    feeder = Feeder(initiator, SPACING)
    rtts: list[float] = []
    tally = Tally()
    lost = 0
    with Link(common, use_cookies=True) as link:
        next_at = time.monotonic()
        for _ in range(count):
            feeder.build()  # built before the clock starts
            start = max(next_at, feeder.available_at())
            time.sleep(max(0.0, start - time.monotonic()))
            sent = feeder.take(time.monotonic())
            if sent is None or not link.send(sent, None):
                lost += 1
                continue
            _, _, sent_at = link.pending[sent.index]
            next_at = sent_at + interval
            deadline = sent_at + common.timeout
            answered = False
            while not answered and (now := time.monotonic()) < deadline:
                for answer in link.receive(deadline - now):
                    if answer.sent is not sent:
                        continue
                    answered = True
                    if _count(link, initiator, answer, tally, full=True):
                        rtts.append((answer.received_at - answer.sent_at) * 1000)
            link.pending.pop(sent.index, None)
            if not answered:
                lost += 1
    return LatencyResult(tuple(round(r, 3) for r in rtts), lost, tally.cookie_replies, tally.invalid)


def rate(job: Job) -> RateResult:
    common = common_fields(job)
    duration = _duration(job)
    outstanding = int(number(job, "outstanding", minimum=1, maximum=65_536, integer=True))
    initiator = Initiator(common.identities, common.responder_public)
    feeder = Feeder(initiator, SPACING)
    for _ in range(min(outstanding, len(common.identities))):
        feeder.build()
    tally = Tally()
    with Link(common, use_cookies=True) as link:
        start = time.monotonic()
        end = start + duration
        while (now := time.monotonic()) < end:
            while len(link.pending) < outstanding and (sent := feeder.take(now)) is not None:
                if not link.send(sent, None):
                    break
                tally.sent += 1
            answers = link.receive(0)
            for answer in answers:
                _count(link, initiator, answer, tally, full=True)
            if answers:
                continue
            link.expire(now)  # only once every reply waiting was read
            if len(feeder) < outstanding:
                feeder.build()  # idle: build ahead
                continue
            wake = min(end, link.next_expiry())
            if len(link.pending) < outstanding:
                wake = min(wake, feeder.available_at())
            for answer in link.receive(wake - time.monotonic()):
                _count(link, initiator, answer, tally, full=True)
        elapsed = time.monotonic() - start
    return RateResult(
        sent=tally.sent,
        responses=tally.responses,
        cookie_replies=tally.cookie_replies,
        invalid=tally.invalid,
        elapsed=round(elapsed, 4),
        per_second=round(tally.responses / elapsed, 1),
    )


def _paced(
    link: Link,
    feeder: Feeder,
    per_second: float,
    duration: float,
    on_answer: Callable[[Answer], object],
    tag: object,
) -> tuple[int, float]:
    """Send initiations at ``per_second`` for ``duration`` seconds; every reply to
    ``on_answer``. (initiations sent, seconds taken)."""
    total = max(1, math.ceil(per_second * duration))
    while len(feeder) < min(total, PRECOMPUTE):
        feeder.build()
    sent_count = 0
    start = time.monotonic()
    end = start + duration
    while (now := time.monotonic()) < end:
        due = min(total, int((now - start) * per_second) + 1) - sent_count
        for _ in range(min(due, 64)):
            sent = feeder.take(now)
            if sent is None or not link.send(sent, tag):
                break
            sent_count += 1
        answers = link.receive(0)
        for answer in answers:
            on_answer(answer)
        if answers or due > 64:
            continue
        link.expire(now)  # only once every reply waiting was read
        next_send = start + sent_count / per_second if sent_count < total else end
        if next_send - time.monotonic() > 0.0002 and len(feeder) < min(PRECOMPUTE, total - sent_count):
            feeder.build()  # idle: build ahead
            continue
        for answer in link.receive(min(next_send, end) - time.monotonic()):
            on_answer(answer)
    return sent_count, time.monotonic() - start


def flood(job: Job) -> FloodResult:
    common = common_fields(job)
    duration = _duration(job)
    per_second = number(job, "rate", minimum=1.0, maximum=MAX_RATE)
    initiator = Initiator(common.identities, common.responder_public)
    feeder = Feeder(initiator, 0.0)
    tally = Tally()
    with Link(common) as link:
        sent, elapsed = _paced(
            link, feeder, per_second, duration, lambda a: _count(link, initiator, a, tally, full=False), None
        )
    return FloodResult(
        sent=sent,
        responses=tally.responses,
        cookie_replies=tally.cookie_replies,
        elapsed=round(elapsed, 4),
        achieved_rate=round(sent / elapsed, 1),
    )


def _rates(job: Job) -> list[float]:
    rates = job.get("rates")
    if not isinstance(rates, list) or not rates or len(rates) > 100:
        raise JobError("rates: expected a list of 1 to 100 rates (initiations a second)")
    return [number({"rates": r}, "rates", minimum=1.0, maximum=MAX_RATE) for r in rates]


def _retry(
    link: Link, feeder: Feeder, cookie: bytes, timeout: float, others: Callable[[Answer], object]
) -> tuple[bool, bool]:
    """Right after a step: a control initiation without MAC2, then one with the
    MAC2 of ``cookie``, up to RETRY_ATTEMPTS times RETRY_GAP apart until a valid
    response comes back; replies to other initiations go to ``others``.
    (retry completed, control got a cookie reply)."""
    initiator = feeder.initiator
    completed = under_load = False
    start = time.monotonic()
    for attempt in range(RETRY_ATTEMPTS):
        now = time.monotonic()
        time.sleep(max(0.0, start + attempt * RETRY_GAP - now))
        if attempt == 0 and (control := feeder.fresh(time.monotonic())) is not None:
            link.send(control, "control")
        retry = feeder.fresh(time.monotonic(), cookie)
        if retry is None or not link.send(retry, "retry"):
            continue
        deadline = time.monotonic() + min(timeout, RETRY_GAP)
        while not completed and (now := time.monotonic()) < deadline:
            for answer in link.receive(deadline - now):
                if not isinstance(answer.tag, str):
                    others(answer)
                elif answer.tag == "control" and answer.kind == COOKIE_REPLY:
                    under_load = True
                elif answer.sent is retry and answer.kind == RESPONSE:
                    try:
                        check_response(initiator, retry, answer.data)
                        completed = True
                    except ReplyError:
                        pass
        if completed:
            break
    return completed, under_load


def load(job: Job) -> LoadResult:
    common = common_fields(job)
    rates = _rates(job)
    step_seconds = number(job, "step_seconds", minimum=0.01, maximum=60.0)
    initiator = Initiator(common.identities, common.responder_public)
    feeder = Feeder(initiator, 0.0)
    tallies = [Tally() for _ in rates]
    latest_cookie: list[Answer] = []

    def on_answer(answer: Answer) -> None:
        if isinstance(answer.tag, int):
            _count(link, initiator, answer, tallies[answer.tag], full=False)
            if answer.kind == COOKIE_REPLY:
                latest_cookie[:] = [answer]

    onset: float | None = None
    completed = under_load = False
    with Link(common) as link:
        for i, per_second in enumerate(rates):
            latest_cookie.clear()
            tallies[i].sent, _ = _paced(link, feeder, per_second, step_seconds, on_answer, i)
            if not tallies[i].cookie_replies:
                continue
            if onset is None:
                onset = per_second
            if not completed and latest_cookie:
                got = latest_cookie[0]
                try:
                    cookie = open_cookie(initiator, got.sent, got.data)
                except ReplyError:
                    continue
                feeder.spacing = SPACING
                completed, under_load = _retry(link, feeder, cookie, common.timeout, on_answer)
                feeder.spacing = 0.0
        # The last step's late replies still count for it.
        deadline = time.monotonic() + min(common.timeout, 0.5)
        while link.pending and (now := time.monotonic()) < deadline:
            for answer in link.receive(deadline - now):
                on_answer(answer)
    steps = tuple(
        LoadStep(
            rate=r,
            sent=t.sent,
            responses=t.responses,
            cookie_replies=t.cookie_replies,
            cookie_share=round(t.cookie_replies / t.sent, 4) if t.sent else 0.0,
        )
        for r, t in zip(rates, tallies, strict=True)
    )
    return LoadResult(steps, onset, completed, under_load)


MODES: dict[str, Mode] = {"latency": latency, "rate": rate, "flood": flood, "load": load}
