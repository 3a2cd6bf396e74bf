"""Conformance: does the implementation under test follow the protocol?

Each probe is one test; its verdict is stored as the metric ``conformant``
(1 or 0) with the implementation it ran against, and the run's summary prints
the matrix of implementations × probes. Raw probes come from the prober
(`harness.probe`) on the other tunnel end's host, speaking WireGuard to the
end under test (``dut`` in the lab file); the others go through the tunnel.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest

from harness.lab.spec import ConformanceParams, Lab
from harness.parsers.wgdump import PeerDump
from harness.probe import upstream
from harness.probe.conformance import (
    BadMac1Result,
    InnerSourceResult,
    KeepaliveResult,
    ListenResult,
    ReplayInitiationResult,
    ReplayWindowResult,
    RoamingResult,
    TransportReplayResult,
)
from harness.probe.launch import (
    PROBER_NET,
    PROBER_PORT,
    Identity,
    ProberSide,
    finish_probe,
    job,
    ping_from_dut,
    prober_endpoint,
    prober_peers,
    run_probe,
    set_peer,
    sides,
    start_probe,
    wait_event,
)
from harness.probe.timers import (
    CrossedInitiationResult,
    DutInitiatesResult,
    InitiationFloodResult,
    KeepaliveRearmResult,
    PassiveKeepaliveResult,
    PeerRestartResult,
)
from harness.probe.upstream import Judgement
from harness.progress import Progress
from harness.results.records import Direction, Measurement
from harness.run.orchestrator import EndRuntime, LabInstance
from harness.targets.base import Process

SUITE = "conformance"
PARAMS = ConformanceParams
# A point of order 8 on Curve25519: every X25519 with it gives all zeros. It is
# among the points libsodium's crypto_scalarmult_curve25519 refuses ("blocklist"),
# from the list in the Curve25519 paper's security discussion.
LOW_ORDER_POINT = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
LISTEN_PORT = 51999
LOW_ORDER_ADDRESS = "198.19.201.1"


@pytest.fixture
def side(active_lab: LabInstance, suite_params: ConformanceParams) -> ProberSide:
    return sides(active_lab, suite_params.dut)


RecordVerdict = Callable[[str, bool, str], None]
"""verdict(probe, passed, detail): store it, then fail if not passed."""
Judge = Callable[..., None]
"""judge(probe, judgement, ...): store each, then fail if any did not pass."""


def _impl(side: ProberSide) -> str:
    info = side.dut.info
    return f"{side.dut.spec.impl} {info.version if info else ''}".strip()


def _store(
    side: ProberSide,
    record: Callable[[list[Measurement]], None],
    progress: Progress,
    probe: str,
    j: Judgement,
) -> None:
    impl = _impl(side)
    params = {"dut": side.dut.spec.host, "impl": impl, "detail": j.detail[:500], "measured": j.measured[:60]}
    ms = [
        Measurement(
            SUITE, probe, 1, "conformant", 1.0 if j.passed else 0.0, "bool", Direction.HIGHER, params=params
        )
    ]
    if j.value is not None:
        ms.append(Measurement(SUITE, probe, 1, "observed", j.value, j.unit, Direction.NONE, params=params))
    record(ms)
    progress.step(f"conformance {probe} against {impl}: {'pass' if j.passed else 'FAIL'} ({j.detail})")


@pytest.fixture
def verdict(
    side: ProberSide, record: Callable[[list[Measurement]], None], progress: Progress
) -> RecordVerdict:
    """verdict(probe, passed, detail): store it with the implementation under test, fail if not passed."""

    def _verdict(probe: str, passed: bool, detail: str) -> None:
        _store(side, record, progress, probe, Judgement(passed, "", detail))
        assert passed, f"{_impl(side)}: {detail}"

    return _verdict


@pytest.fixture
def judge(side: ProberSide, record: Callable[[list[Measurement]], None], progress: Progress) -> Judge:
    """judge(probe, judgement, [probe, judgement...]): store each (with its measured value
    for the matrix), then fail if any did not pass."""

    def _judge(*pairs: Any) -> None:
        named = list(zip(pairs[::2], pairs[1::2], strict=True))
        for probe, j in named:
            _store(side, record, progress, probe, j)
        failed = [f"{probe}: {j.detail}" for probe, j in named if not j.passed]
        assert not failed, f"{_impl(side)}: " + "; ".join(failed)

    return _judge


def _slow(params: ConformanceParams) -> None:
    if not params.slow:
        pytest.skip("a slow probe (minutes of protocol time): set slow = true in [suites.conformance]")


def _inner(side: ProberSide, source: str) -> dict[str, str]:
    return {"src": source, "dst": side.dut.inner_ip}


# -- probes from the prober --------------------------------------------------------
def test_replayed_initiation_is_rejected(side: ProberSide, verdict: RecordVerdict) -> None:
    with prober_peers(side, 1) as ids:
        r: ReplayInitiationResult = run_probe(side, job(side, "replay-initiation", ids), timeout=30)
    verdict(
        "replayed-initiation",
        bool(r.first_answered) and not r.replay_answered,
        f"first initiation answered: {r.first_answered}, the same bytes again answered: {r.replay_answered}",
    )


def test_replayed_transport_is_dropped_and_reordered_delivered(
    side: ProberSide, verdict: RecordVerdict
) -> None:
    with prober_peers(side, 1) as ids:
        r: TransportReplayResult = run_probe(
            side, job(side, "transport-replay", ids, inner=_inner(side, ids[0].address)), timeout=30
        )
    ok = r.in_order_replies > 0 and not r.replay_replied and r.out_of_order_replies == r.out_of_order_sent > 0
    verdict(
        "replayed-transport",
        ok,
        f"in order: {r.in_order_replies} replies; replayed counter answered: {r.replay_replied}; "
        f"out of order within the window: {r.out_of_order_replies}/{r.out_of_order_sent} answered",
    )


def test_bad_mac1_gets_no_answer(side: ProberSide, verdict: RecordVerdict) -> None:
    with prober_peers(side, 1) as ids:
        r: BadMac1Result = run_probe(side, job(side, "bad-mac1", ids), timeout=30)
    verdict(
        "bad-mac1",
        bool(r.control_answered) and not r.answered,
        f"bad MAC1 answered: {r.answered}; a valid initiation answered: {r.control_answered}",
    )


def test_persistent_keepalive_arrives_at_the_interval(
    side: ProberSide, verdict: RecordVerdict, suite_params: ConformanceParams
) -> None:
    interval = suite_params.keepalive_interval
    with prober_peers(side, 1, keepalive=interval) as ids:
        r: KeepaliveResult = run_probe(
            side, job(side, "keepalive", ids, listen=3 * interval + 1), timeout=6 * interval + 30
        )
    gaps = [float(x) for x in r.intervals]
    ok = len(gaps) >= 2 and all(abs(g - interval) <= 0.5 for g in gaps)
    verdict(
        "persistent-keepalive",
        ok,
        f"configured {interval}s; keepalives {len(r.keepalive_times)}, gaps {[round(g, 2) for g in gaps]}",
    )


def test_roaming_replies_to_the_new_endpoint(side: ProberSide, verdict: RecordVerdict) -> None:
    with prober_peers(side, 1) as ids:
        r: RoamingResult = run_probe(
            side, job(side, "roaming", ids, inner=_inner(side, ids[0].address)), timeout=30
        )
    verdict(
        "roaming",
        bool(r.first_reply_port_ok) and bool(r.reply_to_new_port),
        f"reply to the first port: {r.first_reply_port_ok}; after moving, reply to the new port: "
        f"{r.reply_to_new_port} (to the old one: {r.reply_to_old_port})",
    )


def test_packet_from_outside_the_allowed_ips_is_dropped(side: ProberSide, verdict: RecordVerdict) -> None:
    # The spoofed source is the second identity's address: were the packet wrongly
    # delivered, the DUT's answer would have a way back (through that identity's
    # session) and the prober would see it.
    with prober_peers(side, 2) as ids:
        r: InnerSourceResult = run_probe(
            side,
            job(side, "inner-source", ids, inner=_inner(side, ids[0].address), spoof_src=ids[1].address),
            timeout=30,
        )
    verdict(
        "cryptokey-routing",
        bool(r.control_replied) and bool(r.return_path) and not r.spoofed_replied,
        f"inner source outside the peer's allowed IPs answered: {r.spoofed_replied}; "
        f"from its own address answered: {r.control_replied}; a way back for a wrong answer: "
        f"{r.return_path}",
    )


def test_peer_with_a_low_order_key_gets_nothing(side: ProberSide, verdict: RecordVerdict) -> None:
    dut, ifname = side.dut, side.dut.driver.ifname
    key = base64.b64encode(LOW_ORDER_POINT).decode()
    prober_address = str(side.prober.spec.endpoint)
    listener = start_probe(side, {"mode": "listen", "port": LISTEN_PORT, "listen": 4.0})
    time.sleep(0.5)  # the listener binds before anything could be sent to it
    added = dut.host.run([
        "wg", "set", ifname, "peer", key, "allowed-ips", f"{LOW_ORDER_ADDRESS}/32",
        "endpoint", f"{prober_address}:{LISTEN_PORT}",
    ])  # fmt: skip
    try:
        dut.host.run(["ip", "route", "replace", str(PROBER_NET), "dev", ifname])
        dut.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", LOW_ORDER_ADDRESS], timeout=15)
        r: ListenResult = finish_probe(listener, "listen", timeout=30)
    finally:
        dut.host.run(["wg", "set", ifname, "peer", key, "remove"])
        dut.host.run(["ip", "route", "del", str(PROBER_NET), "dev", ifname])
        listener.kill()
    # Sending nothing because the device fell over is no pass: the tunnel must still work.
    alive = side.prober.host.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", dut.inner_ip], timeout=15)
    how = "accepted" if added.ok else f"refused ({added.stderr.strip()[-120:]})"
    verdict(
        "low-order-key",
        r.datagrams == 0 and alive.ok,
        f"peer with a low-order key {how}; datagrams sent to it: {r.datagrams}; "
        f"the tunnel afterwards: {'working' if alive.ok else 'DOWN'}",
    )


# -- timer probes (issue 11): what the DUT does over time -----------------------------------
# The rules and the verdicts are harness/probe/upstream.py's; the prober's modes are in
# harness/probe/timers.py. Each probe is bounded by its own durations.
SLOW_KEEPALIVE = 5
"""Persistent keepalive (s) of the slow rekey-on-keepalive probe: a rekey comes within it after 120 s."""
RECEIVE_EVERY = 2.0
"""Seconds between the prober's keepalives in the slow rekey-on-receive probe."""
RATE_WINDOW = 12.0
"""Seconds of data pending for a peer whose initiations are dropped (about three initiations)."""


def _dut_initiates(
    side: ProberSide, ids: list[Identity], listen: float, trigger: Callable[[], object], **fields: Any
) -> DutInitiatesResult:
    """The prober listening as the DUT's peer (``dut-initiates``) while ``trigger`` makes the DUT send."""
    proc = start_probe(side, job(side, "dut-initiates", ids, port=PROBER_PORT, listen=listen, **fields))
    try:
        wait_event(proc, "dut-initiates", "ready", 30)
        trigger()
        return finish_probe(proc, "dut-initiates", timeout=listen + 60)
    finally:
        proc.kill()


def _ping_once(side: ProberSide, ident: Identity, count: int = 1, interval: float = 0.2) -> object:
    return side.dut.host.run(
        side.dut.host.ping_argv(ident.address, count=count, interval=interval, wait=1),
        timeout=count * interval + 30,
    )


def test_persistent_keepalive_without_a_session_starts_a_handshake(
    side: ProberSide, judge: Judge, suite_params: ConformanceParams
) -> None:
    interval = suite_params.keepalive_interval
    with prober_peers(side, 1) as ids:
        r = _dut_initiates(
            side, ids, interval + 3.0,
            lambda: set_peer(side, ids[0], "endpoint", prober_endpoint(side), "persistent-keepalive", str(interval)),
        )  # fmt: skip
    judge("keepalive-starts-handshake", upstream.keepalive_starts_handshake(r, interval))


@pytest.mark.slow
def test_keepalives_alone_rekey_after_rekey_after_time(
    side: ProberSide, judge: Judge, suite_params: ConformanceParams
) -> None:
    _slow(suite_params)
    listen = upstream.REKEY_AFTER_TIME + SLOW_KEEPALIVE + 8
    with prober_peers(side, 1) as ids:
        r = _dut_initiates(
            side, ids, listen,
            lambda: set_peer(side, ids[0], "endpoint", prober_endpoint(side), "persistent-keepalive",
                             str(SLOW_KEEPALIVE)),
        )  # fmt: skip
    judge("rekey-on-keepalive", upstream.rekey_on_keepalive(r, SLOW_KEEPALIVE))


@pytest.mark.slow
def test_receiving_alone_rekeys_before_reject_after_time(
    side: ProberSide, judge: Judge, suite_params: ConformanceParams
) -> None:
    _slow(suite_params)
    listen = upstream.RECEIVE_REKEY_AGE + RECEIVE_EVERY + 8

    def trigger() -> None:  # data from the DUT: it initiates, then only receives
        set_peer(side, ids[0], "endpoint", prober_endpoint(side))
        _ping_once(side, ids[0])

    with prober_peers(side, 1) as ids:
        r = _dut_initiates(side, ids, listen, trigger, keepalive_every=RECEIVE_EVERY)
    judge("rekey-on-receive", upstream.rekey_on_receive(r, RECEIVE_EVERY))


def test_peer_restart_gets_a_new_handshake(side: ProberSide, judge: Judge) -> None:
    with prober_peers(side, 1) as ids:
        proc = start_probe(side, job(side, "peer-restart", ids, alive=3.0, wait=25.0))
        ping: Process | None = None
        try:
            wait_event(proc, "peer-restart", "up", 30)
            ping = ping_from_dut(side, ids[0].address, count=80, interval=0.5)
            r: PeerRestartResult = finish_probe(proc, "peer-restart", timeout=60)
        finally:
            proc.kill()
            if ping is not None:
                ping.kill()
    judge("peer-restart", upstream.peer_restart(r))


def test_initiations_at_most_one_per_rekey_timeout(side: ProberSide, judge: Judge) -> None:
    def trigger() -> None:  # data pending for the whole window, every initiation dropped
        set_peer(side, ids[0], "endpoint", prober_endpoint(side))
        _ping_once(side, ids[0], count=int((RATE_WINDOW - 1) / 0.2), interval=0.2)

    with prober_peers(side, 1) as ids:
        r = _dut_initiates(side, ids, RATE_WINDOW, trigger, answer=False)
    judge("initiation-rate", upstream.initiation_rate(r, RATE_WINDOW))


def test_initiations_from_one_peer_within_20ms(side: ProberSide, judge: Judge) -> None:
    with prober_peers(side, 1) as ids:
        r: InitiationFloodResult = run_probe(side, job(side, "initiation-flood", ids), timeout=30)
    judge("initiation-flood", upstream.initiation_flood(r))


def test_crossed_initiation_waits_for_rekey_timeout(side: ProberSide, judge: Judge) -> None:
    with prober_peers(side, 1) as ids:
        proc = start_probe(side, job(side, "crossed-initiation", ids, listen=7.0))
        try:
            wait_event(proc, "crossed-initiation", "answered", 30)
            _ping_once(side, ids[0], count=30, interval=0.2)
            r: CrossedInitiationResult = finish_probe(proc, "crossed-initiation", timeout=30)
        finally:
            proc.kill()
    judge("crossed-initiations", upstream.crossed_initiation(r))


def test_replay_window_reach_and_long_reordering(side: ProberSide, judge: Judge) -> None:
    with prober_peers(side, 1) as ids:
        r: ReplayWindowResult = run_probe(
            side,
            job(side, "replay-window", ids, inner=_inner(side, ids[0].address), timeout=2.0),
            timeout=300,
        )
    judge("replay-window", upstream.replay_window(r), "reordering-8000", upstream.reordering(r))


def test_persistent_keepalive_pushed_back_by_received_packets(
    side: ProberSide, judge: Judge, suite_params: ConformanceParams
) -> None:
    interval = suite_params.keepalive_interval
    with prober_peers(side, 1, keepalive=interval) as ids:
        fields = {"every": interval / 2, "window": 4 * interval, "control": interval + 1.5}
        r: KeepaliveRearmResult = run_probe(
            side, job(side, "keepalive-rearm", ids, **fields), timeout=6 * interval + 30
        )
    judge("keepalive-rearmed-on-receive", upstream.keepalive_rearmed(r, interval))


def test_passive_keepalive_after_data_received(side: ProberSide, judge: Judge) -> None:
    with prober_peers(side, 1) as ids:
        r: PassiveKeepaliveResult = run_probe(
            side, job(side, "passive-keepalive", ids, inner=_inner(side, ids[0].address)), timeout=60
        )
    judge("passive-keepalive", upstream.passive_keepalive(r))


# -- probes through the tunnel ---------------------------------------------------------
def _transport_size(ip_length: int, mtu: int) -> int:
    """A transport datagram's UDP payload: 16-byte header, the packet padded to 16 (not past the MTU), 16-byte tag."""
    padded = min(-(-ip_length // 16) * 16, max(mtu, ip_length))
    return 16 + padded + 16


def _peer(end: EndRuntime) -> PeerDump:
    return end.driver.stats().peers[0]


def test_transfer_counters_are_exact(
    active_lab: LabInstance,
    side: ProberSide,
    verdict: RecordVerdict,
    lab_spec: Lab,
    suite_params: ConformanceParams,
) -> None:
    p = suite_params
    src, dst = side.prober, side.dut
    each = _transport_size(28 + p.ping_size, lab_spec.tunnel.mtu)  # IPv4 20 + ICMP 8 + payload
    detail = ""
    for _attempt in range(2):  # a rekey in the window would add handshake bytes: measure again
        before = (_peer(src), _peer(dst))
        src.host.check(
            ["ping", "-c", str(p.pings), "-i", "0.05", "-W", "2", "-s", str(p.ping_size), dst.inner_ip]
        )
        time.sleep(0.3)
        after = (_peer(src), _peer(dst))
        if after[0].latest_handshake != before[0].latest_handshake:
            continue
        sent = after[0].tx_bytes - before[0].tx_bytes
        got = after[1].rx_bytes - before[1].rx_bytes
        back = after[1].tx_bytes - before[1].tx_bytes
        back_got = after[0].rx_bytes - before[0].rx_bytes
        want = p.pings * each
        detail = (
            f"{p.pings} pings of {p.ping_size} bytes, {each} bytes each on the wire: expected {want}; "
            f"sent {sent} / received {got}; replies sent {back} / received {back_got}"
        )
        verdict("exact-counters", sent == got == back == back_got == want, detail)
        return
    verdict("exact-counters", False, "a handshake happened in both measurement windows")


def _readd_peer(end: EndRuntime, old_public: str, new_public: str) -> None:
    """Replace ``end``'s peer ``old_public`` with ``new_public``, same settings as the lab gave it."""
    assert end.config is not None
    peer = end.config.peers[0]
    ifname = end.driver.ifname
    end.host.check(["wg", "set", ifname, "peer", old_public, "remove"])
    argv = ["wg", "set", ifname, "peer", new_public, "allowed-ips", ",".join(peer.allowed_ips)]
    if peer.endpoint:
        argv += ["endpoint", peer.endpoint]
    if peer.persistent_keepalive:
        argv += ["persistent-keepalive", str(peer.persistent_keepalive)]
    psk = peer.preshared_key
    if psk:
        argv += ["preshared-key", "/dev/stdin"]
    end.host.check(argv, input=psk.encode() if psk else None)


def _set_key(end: EndRuntime, private: str) -> None:
    end.host.check(["wg", "set", end.driver.ifname, "private-key", "/dev/stdin"], input=private.encode())


def test_key_rotation_gives_a_fresh_handshake(side: ProberSide, verdict: RecordVerdict) -> None:
    from harness.keys import KeyPair

    dut, other = side.dut, side.prober
    first = _peer(other).latest_handshake
    new = KeyPair.generate()
    time.sleep(1.1)  # handshake times have one-second resolution
    _set_key(dut, new.private)
    _readd_peer(other, dut.keys.public, new.public)
    try:
        moved = other.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "3", dut.inner_ip], timeout=30)
        later = _peer(other).latest_handshake
        back = dut.host.run(["ping", "-c", "2", "-i", "0.2", "-W", "3", other.inner_ip], timeout=30)
    finally:  # the lab's keys again, for the tests after this one
        _set_key(dut, dut.keys.private)
        _readd_peer(other, new.public, dut.keys.public)
    restored = other.host.run(["ping", "-c", "2", "-i", "0.2", "-W", "3", dut.inner_ip], timeout=30)
    verdict(
        "key-rotation",
        moved.ok and back.ok and later > first and restored.ok,
        f"after a new private key: traffic {'continued' if moved.ok and back.ok else 'stopped'}, "
        f"handshake {'fresh' if later > first else 'not renewed'}; "
        f"back to the old key: {'ok' if restored.ok else 'traffic stopped'}",
    )


def test_mtu_largest_packet_passes_one_more_does_not(
    side: ProberSide, verdict: RecordVerdict, lab_spec: Lab
) -> None:
    mtu = lab_spec.tunnel.mtu
    src, dst = side.prober, side.dut

    def ping(size: int) -> Any:  # don't fragment: the packet is exactly 28 + size bytes
        return src.host.run(
            ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", str(size), dst.inner_ip]
        )

    fits, over = ping(mtu - 28), ping(mtu - 27)
    verdict(
        "mtu",
        fits.ok and not over.ok,
        f"tunnel MTU {mtu}: a {mtu}-byte packet {'passed' if fits.ok else 'did not pass'}; "
        f"{mtu + 1} bytes with DF {'passed (!)' if over.ok else 'refused'}",
    )
