"""The conformance probes (`harness/probe/conformance.py`) and the timer probes
(`harness/probe/timers.py`).

Without root: each mode against a pyref `Device` served on a loopback UDP
socket by a thread of this process (it answers ICMP echo itself, as a kernel
behind a TUN would), and the job checks. As root (integration): each mode run
with ``python -m harness.probe`` inside a network namespace against
wireguard-go and pyref as real interfaces, asserting what a conformant
implementation does; the timer probes against wireguard-go, judged by
`harness.probe.upstream` (pyref is still being brought in line with it, issue 11);
the two that need minutes of protocol time are marked ``slow``."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.codec import from_json
from harness.impl.base import Driver
from harness.impl.config import InterfaceConfig
from harness.impl.pyref import Pyref
from harness.impl.wireguard_go import WireguardGo
from harness.keys import KeyPair, decode_key, encode_key
from harness.probe import Job, JobError, result_type, upstream
from harness.probe.conformance import MODES as CONFORMANCE_MODES
from harness.probe.conformance import (
    BadMac1Result,
    InnerSourceResult,
    ListenResult,
    ReplayInitiationResult,
    RoamingResult,
    TransportReplayResult,
)
from harness.probe.launch import finish_probe, has_event, wait_event
from harness.probe.timers import MODES as TIMER_MODES
from harness.probe.timers import echo_reply as silent_data
from harness.probe.wire import answer_initiation
from harness.pyref.crypto import public_of
from harness.pyref.device import Device
from harness.pyref.ipv4 import checksum, parse_echo_reply
from harness.pyref.messages import parse_response
from harness.pyref.noise import consume_response, create_initiation
from harness.pyref.transport import ReplayWindow
from harness.run.orchestrator import new_instance_id
from harness.targets.base import Process
from harness.targets.netns import NetnsTarget

MODES = {**CONFORMANCE_MODES, **TIMER_MODES}

DUT_INNER = "198.19.200.254"
PROBER_INNER = "198.19.200.1"
SPOOF_INNER = "198.19.200.2"
LOW_ORDER_KEY = encode_key(bytes([1]) + bytes(31))  # u = 1: a point of order 4 on Curve25519


def echo_reply(request: bytes) -> bytes | None:
    """The reply a host at the request's destination gives to an ICMP echo request."""
    if len(request) < 28 or request[0] != 0x45 or request[9] != 1 or request[20] != 8:
        return None
    icmp = b"\x00\x00\x00\x00" + request[24:]
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = request[:10] + b"\x00\x00" + request[16:20] + request[12:16]
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


@dataclass
class LoopbackDut:
    """A pyref device on 127.0.0.1, served by a thread; its tunnel address answers ping."""

    device: Device
    public: str
    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    stop: threading.Event = field(default_factory=threading.Event)
    delivered: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        dev = self.device
        while not self.stop.is_set():
            now = time.monotonic()
            due = dev.deadline()
            wait = 0.05 if due is None else min(0.05, max(0.0, due - now))
            ready, _, _ = select.select([self.sock], [], [], wait)
            out = dev.tick(time.monotonic())
            if ready:
                data, source = self.sock.recvfrom(65535)
                more, packets = dev.receive_datagram(data, source, time.monotonic())
                out += more
                for packet in packets:
                    self.delivered.append(packet)
                    reply = echo_reply(packet)
                    if reply is not None and packet[16:20] == socket.inet_aton(DUT_INNER):
                        out += dev.send_packet(reply, time.monotonic())
            for datagram, endpoint in out:
                self.sock.sendto(datagram, endpoint)


@contextlib.contextmanager
def loopback_dut(
    identities: list[KeyPair], keepalive: float | None = None, extra: tuple[str, str] | None = None
) -> Iterator[LoopbackDut]:
    """The DUT with ``identities`` as peers (the first at PROBER_INNER, the second at
    SPOOF_INNER), and optionally ``extra`` = (public key, endpoint "host:port") at 198.19.200.9."""
    private = os.urandom(32)
    device = Device(private, os.urandom)
    device.wall_offset = time.time() - time.monotonic()
    for ident, inner in zip(identities, (PROBER_INNER, SPOOF_INNER), strict=False):
        device.add_peer(base64.b64decode(ident.public), [f"{inner}/32"], persistent_keepalive=keepalive)
    if extra is not None:
        host, port = extra[1].rsplit(":", 1)
        peer = device.add_peer(base64.b64decode(extra[0]), ["198.19.200.9/32"], (host, int(port)))
        peer.set_persistent_keepalive(1.0, time.monotonic())
    dut = LoopbackDut(device, encode_key(public_of(private)))
    dut.sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=dut.serve, daemon=True)
    thread.start()
    try:
        yield dut
    finally:
        dut.stop.set()
        thread.join(5)
        dut.sock.close()


def job_for(mode: str, target_port: int, responder: str, identities: list[KeyPair], **extra: object) -> Job:
    return {
        "mode": mode,
        "target": ["127.0.0.1", target_port],
        "responder_public": responder,
        "identities": [k.private for k in identities],
        "inner": {"src": PROBER_INNER, "dst": DUT_INNER},
        "timeout": 1.0,
        **extra,
    }


def run_local(mode: str, dut: LoopbackDut, identities: list[KeyPair], **extra: object) -> Any:
    return MODES[mode](job_for(mode, dut.port, dut.public, identities, **extra))


# -- without root: pyref in this process ----------------------------------------------
def test_echo_reply_helper_answers_a_request() -> None:
    from harness.pyref.ipv4 import echo_request, parse_echo_reply

    reply = echo_reply(echo_request("198.19.200.1", DUT_INNER, 7, 9))
    assert reply is not None and parse_echo_reply(reply) == (DUT_INNER, "198.19.200.1", 7, 9)


def test_replay_initiation_against_pyref() -> None:
    me = KeyPair.generate()
    with loopback_dut([me]) as dut:
        assert run_local("replay-initiation", dut, [me]) == ReplayInitiationResult(
            first_answered=True, replay_answered=False
        )
        assert dut.device.peers[base64.b64decode(me.public)].peer.counters.replayed == 1


def test_bad_mac1_against_pyref() -> None:
    me = KeyPair.generate()
    with loopback_dut([me]) as dut:
        assert run_local("bad-mac1", dut, [me]) == BadMac1Result(answered=False, control_answered=True)
        assert dut.device.counters.bad_mac1 == 1


def test_transport_replay_against_pyref() -> None:
    me = KeyPair.generate()
    with loopback_dut([me]) as dut:
        result = run_local("transport-replay", dut, [me], count=10)
    assert result == TransportReplayResult(
        in_order_sent=10,
        in_order_replies=10,
        replay_replied=False,
        out_of_order_sent=4,
        out_of_order_replies=4,
    )


def test_roaming_against_pyref() -> None:
    me = KeyPair.generate()
    with loopback_dut([me]) as dut:
        result = run_local("roaming", dut, [me])
    assert result == RoamingResult(first_reply_port_ok=True, reply_to_new_port=True, reply_to_old_port=False)


def test_inner_source_against_pyref() -> None:
    me, other = KeyPair.generate(), KeyPair.generate()
    with loopback_dut([me, other]) as dut:
        result = run_local("inner-source", dut, [me, other], spoof_src=SPOOF_INNER)
        assert dut.device.counters.not_allowed_source == 1
    assert result == InnerSourceResult(spoofed_replied=False, control_replied=True, return_path=True)


def test_keepalive_against_pyref() -> None:
    me = KeyPair.generate()
    with loopback_dut([me], keepalive=0.5) as dut:
        result = run_local("keepalive", dut, [me], listen=2.2)
    times, intervals = result.keepalive_times, result.intervals
    assert 4 <= len(times) <= 5, result
    assert all(abs(i - 0.5) < 0.2 for i in intervals), result
    assert result.listen == 2.2


def test_listen_counts_datagrams_and_sources() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results: list[ListenResult] = []
    thread = threading.Thread(
        target=lambda: results.append(MODES["listen"]({"mode": "listen", "port": port, "listen": 0.6}))
    )
    thread.start()
    time.sleep(0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        for _ in range(3):
            sender.sendto(b"x", ("127.0.0.1", port))
        source = f"127.0.0.1:{sender.getsockname()[1]}"
        thread.join(5)
    assert results == [ListenResult(datagrams=3, sources=(source,))]


def listen_while(port: int, seconds: float, key: str) -> ListenResult:
    """What the listen mode hears on ``port`` while a loopback DUT has a peer ``key``
    there with a persistent keepalive (which makes it start a handshake at once)."""
    results: list[ListenResult] = []
    thread = threading.Thread(
        target=lambda: results.append(MODES["listen"]({"mode": "listen", "port": port, "listen": seconds}))
    )
    thread.start()
    time.sleep(0.2)  # bound by now
    with loopback_dut([KeyPair.generate()], extra=(key, f"127.0.0.1:{port}")):
        thread.join(seconds + 5)
    return results[0]


def test_listen_against_pyref_with_a_low_order_peer_hears_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert listen_while(port, 1.0, LOW_ORDER_KEY) == ListenResult(datagrams=0, sources=())
    assert listen_while(port, 1.0, KeyPair.generate().public).datagrams == 1  # the control: an initiation


def test_a_silent_target_is_a_job_error_or_no_answer() -> None:
    me = KeyPair.generate()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        responder = KeyPair.generate().public
        job = job_for("replay-initiation", port, responder, [me], timeout=0.1)
        assert MODES["replay-initiation"](job) == ReplayInitiationResult(
            first_answered=False, replay_answered=False
        )
        with pytest.raises(JobError, match="did not answer the handshake"):
            MODES["roaming"]({**job, "mode": "roaming"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "127.0.0.1:1"}, "target"),
        ({"target": ["127.0.0.1", 70000]}, "target"),
        ({"responder_public": "nope"}, "responder_public"),
        ({"identities": []}, "identities"),
        ({"inner": {"src": "198.19.200.1"}}, "inner.dst"),
        ({"timeout": -1}, "timeout"),
        ({"count": 0}, "count"),
    ],
)
def test_bad_fields_are_job_errors(change: dict[str, object], message: str) -> None:
    job = {**job_for("transport-replay", 9, KeyPair.generate().public, [KeyPair.generate()]), **change}
    with pytest.raises(JobError, match=message):
        MODES["transport-replay"](job)


def test_inner_source_needs_a_spoofed_address_that_differs() -> None:
    job = job_for("inner-source", 9, KeyPair.generate().public, [KeyPair.generate()], spoof_src=PROBER_INNER)
    with pytest.raises(JobError, match="spoof_src"):
        MODES["inner-source"](job)


def test_listen_needs_a_port() -> None:
    with pytest.raises(JobError, match="port"):
        MODES["listen"]({"mode": "listen"})


def test_replay_window_against_pyref_matches_its_window() -> None:
    """The mode's observations are what pyref's own replay window says of the same
    counters, in the same order (whatever size that window has)."""
    me = KeyPair.generate()
    offsets = [1, 2047, 2048, 2400]
    with loopback_dut([me]) as dut:
        r = run_local("replay-window", dut, [me], reorder=2500, chunk=250, offsets=offsets, timeout=1.5)
    window = ReplayWindow()
    accepted = [c for c in [0, 2501, *range(2500, 0, -1)] if window.accept(c)]
    top = 2500 + 2 + 2400
    assert r.top == top and r.top_delivered == window.accept(top)
    assert r.offsets_accepted == tuple(k for k in offsets if window.accept(top - k))
    assert r.reorder_delivered == len(accepted) - 1  # counter 0 is the confirming keepalive
    assert r.reorder_sent <= 2501


def test_initiation_flood_against_pyref_reports_each_pair() -> None:
    me = KeyPair.generate()
    with loopback_dut([me]) as dut:
        r = run_local("initiation-flood", dut, [me])
    (short, long) = r.pairs
    assert 0.005 <= short.gap < 0.05 <= long.gap
    assert short.answered[0] and long.answered == (True, True)


def test_silent_data_is_an_echo_reply_nobody_answers() -> None:
    assert parse_echo_reply(silent_data(PROBER_INNER, DUT_INNER, 7, 9)) == (PROBER_INNER, DUT_INNER, 7, 9)


def test_answer_initiation_only_from_the_dut_and_in_order() -> None:
    prober, dut, stranger = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    me, them = decode_key(prober.private), decode_key(dut.private)
    msg, state = create_initiation(them, public_of(me), os.urandom(32), 42, time.time())
    got = answer_initiation(me, public_of(them), msg.encode())
    assert got is not None
    keys = consume_response(state, them, public_of(me), parse_response(got.response))
    assert (keys.send_key, keys.receive_key) == (got.tunnel.keys.receive_key, got.tunnel.keys.send_key)
    assert answer_initiation(me, public_of(them), msg.encode(), got.timestamp) is None  # not later: a replay
    assert answer_initiation(me, decode_key(stranger.public), msg.encode()) is None  # someone else's
    assert answer_initiation(me, public_of(them), msg.encode()[:-1]) is None


def test_progress_events_are_found_in_a_probers_output() -> None:
    out = b'{"event": "ready", "port": 9}\nnoise\n{"listen": 1.0}\n'
    assert has_event(out, "ready") and not has_event(out, "up") and not has_event(b"", "ready")


@pytest.mark.parametrize(
    ("mode", "change", "message"),
    [
        ("dut-initiates", {}, "port"),
        ("dut-initiates", {"port": 9, "answer": "yes"}, "answer"),
        ("dut-initiates", {"port": 9, "listen": 500}, "listen"),
        ("replay-window", {"offsets": []}, "offsets"),
        ("replay-window", {"reorder": 30001}, "reorder"),
        ("passive-keepalive", {"inner": None}, "inner"),
        ("keepalive-rearm", {"every": 0}, "every"),
    ],
)
def test_timer_modes_check_their_fields(mode: str, change: dict[str, object], message: str) -> None:
    job = {**job_for(mode, 9, KeyPair.generate().public, [KeyPair.generate()], timeout=0.1), **change}
    with pytest.raises(JobError, match=message):
        MODES[mode](job)


# -- as root: wireguard-go and pyref in a namespace ------------------------------------
DUT_PORT = 51900
KINDS = ["wireguard-go", "pyref"]


@dataclass
class Lab:
    host: NetnsTarget
    driver: Driver
    ifname: str
    public: str

    def wg(self, *args: str) -> None:
        self.host.check(["wg", *args])

    def probe(self, job: Job) -> Any:
        """The prober's result, read back as the harness reads it (`harness.codec`)."""
        result = self.host.run(
            [sys.executable, "-m", "harness.probe"], input=json.dumps(job).encode(), timeout=90
        )
        assert result.status == 0, (result.stdout, result.stderr)
        return from_json(result.stdout, result_type(job["mode"]))

    def job(self, mode: str, identities: list[KeyPair], **extra: object) -> Job:
        return job_for(mode, DUT_PORT, self.public, identities, **extra)

    def add(self, ident: KeyPair, inner: str, *extra: str) -> None:
        self.wg("set", self.ifname, "peer", ident.public, "allowed-ips", f"{inner}/32", *extra)

    def start(self, job: Job) -> Process:
        """The prober in the background (for modes during which the DUT must be made to send)."""
        return self.host.start(
            [sys.executable, "-m", "harness.probe"], env={"WGH_PROBE_JOB": json.dumps(job)}
        )

    def ping(self, count: int, interval: float = 0.2) -> None:
        """Data from the DUT for the prober's identity (PROBER_INNER); nobody answers."""
        self.host.run(["ping", "-c", str(count), "-i", f"{interval:g}", "-W", "1", PROBER_INNER],
                      timeout=count * interval + 30)  # fmt: skip


@contextlib.contextmanager
def lab_of(kind: str) -> Iterator[Lab]:
    tag = new_instance_id()
    host = NetnsTarget("dut", f"wgh-{tag}-dut")
    ifname = f"wgh{tag}c"
    keys = KeyPair.generate()
    driver = (WireguardGo if kind == "wireguard-go" else Pyref)(host, ifname)
    try:
        host.setup()
        driver.check()
        driver.up(InterfaceConfig(ifname, keys.private, DUT_PORT, (f"{DUT_INNER}/24",), 1420))
        yield Lab(host, driver, ifname, keys.public)
    finally:
        driver.down()
        host.teardown()


@pytest.fixture(params=KINDS)
def lab(request: pytest.FixtureRequest, no_leftovers: None) -> Iterator[Lab]:
    with lab_of(request.param) as running:
        yield running


@pytest.fixture
def go_lab(no_leftovers: None) -> Iterator[Lab]:
    """wireguard-go only: the timer probes' reference (pyref does not follow all of it yet)."""
    with lab_of("wireguard-go") as running:
        yield running


def test_replayed_initiation_is_not_answered(lab: Lab) -> None:
    me = KeyPair.generate()
    lab.add(me, PROBER_INNER)
    assert lab.probe(lab.job("replay-initiation", [me])) == ReplayInitiationResult(
        first_answered=True, replay_answered=False
    )


def test_bad_mac1_is_not_answered(lab: Lab) -> None:
    me = KeyPair.generate()
    lab.add(me, PROBER_INNER)
    assert lab.probe(lab.job("bad-mac1", [me])) == BadMac1Result(answered=False, control_answered=True)


def test_replayed_transport_dropped_and_out_of_order_delivered(lab: Lab) -> None:
    me = KeyPair.generate()
    lab.add(me, PROBER_INNER)
    result = lab.probe(lab.job("transport-replay", [me], count=10))
    assert result == TransportReplayResult(
        in_order_sent=10,
        in_order_replies=10,
        replay_replied=False,
        out_of_order_sent=4,
        out_of_order_replies=4,
    )


def test_roaming_replies_go_to_the_new_port(lab: Lab) -> None:
    me = KeyPair.generate()
    lab.add(me, PROBER_INNER)
    result = lab.probe(lab.job("roaming", [me]))
    assert result == RoamingResult(first_reply_port_ok=True, reply_to_new_port=True, reply_to_old_port=False)


def test_persistent_keepalive_at_the_configured_interval(lab: Lab) -> None:
    me = KeyPair.generate()
    lab.add(me, PROBER_INNER, "persistent-keepalive", "1")
    result = lab.probe(lab.job("keepalive", [me], listen=4.3))
    assert len(result.keepalive_times) >= 4, result
    assert all(abs(i - 1.0) <= 0.5 for i in result.intervals), result


def test_spoofed_inner_source_is_dropped(lab: Lab) -> None:
    me, other = KeyPair.generate(), KeyPair.generate()
    lab.add(me, PROBER_INNER)
    lab.add(other, SPOOF_INNER)
    result = lab.probe(lab.job("inner-source", [me, other], spoof_src=SPOOF_INNER))
    assert result == InnerSourceResult(spoofed_replied=False, control_replied=True, return_path=True)


def test_low_order_peer_gets_nothing(lab: Lab) -> None:
    # Two listeners: the low-order peer's endpoint, and a control peer's (an ordinary
    # key) that proves the same trigger makes the DUT send.
    ports = {"low-order": 51998, "control": 51999}
    results: dict[str, ListenResult] = {}
    listeners = [
        threading.Thread(
            target=lambda n=name, p=port: results.update(
                {n: lab.probe({"mode": "listen", "port": p, "listen": 3.0})}
            )
        )
        for name, port in ports.items()
    ]
    for listener in listeners:
        listener.start()
    try:
        time.sleep(0.8)  # the listeners bind well within this
        for key, inner, port in ((LOW_ORDER_KEY, "198.19.200.9", ports["low-order"]),
                                 (KeyPair.generate().public, "198.19.200.8", ports["control"])):  # fmt: skip
            lab.wg("set", lab.ifname, "peer", key, "allowed-ips", f"{inner}/32",
                   "endpoint", f"127.0.0.1:{port}", "persistent-keepalive", "1")  # fmt: skip
            lab.host.run(["ping", "-c", "2", "-i", "0.3", "-W", "1", inner])
    finally:
        for listener in listeners:
            listener.join(30)
    assert results["low-order"] == ListenResult(datagrams=0, sources=())
    assert results["control"].datagrams >= 1 and results["control"].sources == (f"127.0.0.1:{DUT_PORT}",)


# -- as root: the timer probes against wireguard-go, judged as the suite judges -------------
PROBER_PORT = 51990
PROBER_ENDPOINT = f"127.0.0.1:{PROBER_PORT}"


def dut_initiates(lab: Lab, me: KeyPair, listen: float, trigger: Any, **fields: object) -> Any:
    proc = lab.start(
        lab.job("dut-initiates", [me], port=PROBER_PORT, bind="127.0.0.1", listen=listen, **fields)
    )
    try:
        wait_event(proc, "dut-initiates", "ready", 20)
        trigger()
        return finish_probe(proc, "dut-initiates", timeout=listen + 30)
    finally:
        proc.kill()


def test_go_persistent_keepalive_without_a_session_starts_a_handshake(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER)
    r = dut_initiates(go_lab, me, 4.0, lambda: go_lab.add(me, PROBER_INNER, "endpoint", PROBER_ENDPOINT,
                                                          "persistent-keepalive", "1"))  # fmt: skip
    j = upstream.keepalive_starts_handshake(r, 1)
    assert j.passed, j.detail
    assert r.answered == r.initiations and r.keepalives, r  # answered: keepalives on the session follow


def test_go_peer_restart_new_handshake_after_15s(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER)
    proc = go_lab.start(go_lab.job("peer-restart", [me], alive=2.0, wait=20.0))
    ping: Process | None = None
    try:
        wait_event(proc, "peer-restart", "up", 20)
        ping = go_lab.host.start(["ping", "-c", "60", "-i", "0.5", "-W", "1", PROBER_INNER])
        r = finish_probe(proc, "peer-restart", timeout=60)
    finally:
        proc.kill()
        if ping is not None:
            ping.kill()
    j = upstream.peer_restart(r)
    assert j.passed, j.detail
    assert r.answered_data >= 1, r


def test_go_initiations_at_most_one_per_rekey_timeout(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER)

    def trigger() -> None:
        go_lab.add(me, PROBER_INNER, "endpoint", PROBER_ENDPOINT)
        go_lab.ping(count=50)

    r = dut_initiates(go_lab, me, 11.0, trigger, answer=False)
    j = upstream.initiation_rate(r, 11.0)
    assert j.passed and len(r.initiations) >= 2, j.detail
    assert r.answered == (), r


def test_go_second_initiation_within_20ms_is_ignored(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER)
    j = upstream.initiation_flood(go_lab.probe(go_lab.job("initiation-flood", [me])))
    assert j.passed, j.detail


def test_go_crossed_initiation_waits_for_rekey_timeout(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER)
    proc = go_lab.start(go_lab.job("crossed-initiation", [me], listen=7.0))
    try:
        wait_event(proc, "crossed-initiation", "answered", 20)
        go_lab.ping(count=30)
        r = finish_probe(proc, "crossed-initiation", timeout=30)
    finally:
        proc.kill()
    j = upstream.crossed_initiation(r)
    assert j.passed, j.detail
    assert r.initiations, r  # with data waiting, it does initiate once the 5 s are over


def test_go_replay_window_and_reordering(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER)
    r = go_lab.probe(go_lab.job("replay-window", [me], timeout=2.0))
    for j in (upstream.replay_window(r), upstream.reordering(r)):
        assert j.passed, j.detail


def test_go_persistent_keepalive_pushed_back_by_received_packets(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER, "persistent-keepalive", "1")
    r = go_lab.probe(go_lab.job("keepalive-rearm", [me], every=0.5, window=4.0, control=2.5))
    j = upstream.keepalive_rearmed(r, 1)
    assert j.passed, j.detail


def test_go_passive_keepalive_10s_after_the_first_data(go_lab: Lab) -> None:
    me = KeyPair.generate()
    go_lab.add(me, PROBER_INNER)
    r = go_lab.probe(go_lab.job("passive-keepalive", [me], listen=14.0))
    j = upstream.passive_keepalive(r)
    assert j.passed, j.detail


def _rekey_on_keepalive(lab: Lab) -> upstream.Judgement:
    me = KeyPair.generate()
    lab.add(me, PROBER_INNER)
    listen = upstream.REKEY_AFTER_TIME + 5 + 8
    r = dut_initiates(lab, me, listen, lambda: lab.add(me, PROBER_INNER, "endpoint", PROBER_ENDPOINT,
                                                       "persistent-keepalive", "5"))  # fmt: skip
    return upstream.rekey_on_keepalive(r, 5)


def _rekey_on_receive(lab: Lab) -> upstream.Judgement:
    me = KeyPair.generate()
    lab.add(me, PROBER_INNER)

    def trigger() -> None:
        lab.add(me, PROBER_INNER, "endpoint", PROBER_ENDPOINT)
        lab.ping(count=1)

    r = dut_initiates(lab, me, upstream.RECEIVE_REKEY_AGE + 2 + 8, trigger, keepalive_every=2.0)
    return upstream.rekey_on_receive(r, 2.0)


@pytest.mark.slow
def test_go_alone_rekeys_after_120s_keeping_alive_and_at_165s_receiving(no_leftovers: None) -> None:
    """The two long timers, each minutes of waiting, in two labs at once: a wireguard-go
    that only sends keepalives rekeys after REKEY_AFTER_TIME; one that only receives, at
    REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT (165 s)."""
    with (
        lab_of("wireguard-go") as sending,
        lab_of("wireguard-go") as receiving,
        ThreadPoolExecutor(2) as pool,
    ):
        on_keepalive = pool.submit(_rekey_on_keepalive, sending)
        on_receive = pool.submit(_rekey_on_receive, receiving)
        judged = {"rekey-on-keepalive": on_keepalive.result(), "rekey-on-receive": on_receive.result()}
    for name, j in judged.items():
        print(f"{name}, wireguard-go: {j.measured}: {j.detail}")
    assert all(j.passed for j in judged.values()), {name: j.detail for name, j in judged.items()}
