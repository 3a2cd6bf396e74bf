"""Play a scenario's steps against a running lab and record what happened.

Every step is an `Event` with wall-clock start and end (the clock ping's -D
timestamps and the packet capture use, so all three line up). Background
traffic (ping, iperf3, a handshake flood) runs until its ``stop`` step or the
end of the timeline; `wg show` dumps of both ends are sampled meanwhile.
Whatever happens — a failed step, Ctrl-C — paused processes are continued,
cut links are set up again and background processes are stopped by the PIDs
started, before the exception goes on.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from harness.errors import InfraError
from harness.parsers.iperf import client_argv, parse_iperf_json, server_argv
from harness.parsers.wgdump import redact_wg_dump
from harness.progress import Progress
from harness.repro.scenario import Scenario, Step
from harness.run.orchestrator import LabInstance
from harness.run.throughput import wait_for_server
from harness.targets.base import HostKind, Process, Target
from harness.targets.netns import NetnsTarget

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) .*time=([0-9.]+) ms", re.MULTILINE)
_SEQ = re.compile(r"icmp_seq=(\d+)")
_NO_ANSWER = re.compile(r"^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Event:
    step: str
    do: str
    start: float
    end: float
    detail: str = ""


@dataclass(frozen=True)
class PingLog:
    name: str
    started: float
    stopped: float
    interval: float
    replies: tuple[tuple[int, float, float], ...]
    """(icmp_seq, unix time its request was sent, unix time the reply arrived), in arrival order."""
    sent: int
    """The highest sequence number ping reported, i.e. requests sent but the last."""
    raw: str = field(repr=False, default="")
    unanswered: tuple[tuple[int, float], ...] = ()
    """(icmp_seq, unix time it was sent) of requests ping reported unanswered: with -O it
    says so as it sends the next one, one interval later."""

    def loss_pct(self, start: float | None = None, end: float | None = None) -> float | None:
        """Lost requests among those sent in [start, end), by their send times (ping's own
        clock: a paused sender sends nothing meanwhile); None if none was sent then."""
        lo = self.started if start is None else start
        hi = self.stopped if end is None else end
        answered = {seq for seq, sent, _ in self.replies if lo <= sent < hi}
        lost = {seq for seq, sent in self.unanswered if lo <= sent < hi} - {seq for seq, _, _ in self.replies}
        if not answered and not lost:
            return None
        return 100.0 * len(lost) / (len(lost) + len(answered))


@dataclass(frozen=True)
class IperfLog:
    name: str
    started: float
    stopped: float
    receiver_bps: float | None
    error: str | None
    raw: str = field(repr=False, default="")


@dataclass(frozen=True)
class Sample:
    time: float
    host: str
    dump: str
    """Redacted `wg show IF dump`, or 'error: ...'."""


@dataclass
class Observations:
    started: float
    ended: float = 0.0
    events: list[Event] = field(default_factory=list)
    pings: dict[str, PingLog] = field(default_factory=dict)
    iperfs: dict[str, IperfLog] = field(default_factory=dict)
    floods: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    addresses: dict[str, set[str]] = field(default_factory=dict)
    """Each tunnel host's addresses on the captured link (roaming adds one)."""
    clock_offsets: dict[str, float] = field(default_factory=dict)
    """Guest host -> its clock minus this machine's, measured at the start (pings from a
    guest carry the guest's timestamps)."""
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Host -> (rx_bytes, tx_bytes) of its one peer, at the end."""

    def event(self, step_id: str) -> Event:
        return next(e for e in self.events if e.step == step_id)

    def timeline_json(self) -> list[dict[str, Any]]:
        return [
            {"step": e.step, "do": e.do, "t_start": round(e.start - self.started, 3),
             "t_end": round(e.end - self.started, 3), "start": e.start, "end": e.end, "detail": e.detail}
            for e in self.events
        ]  # fmt: skip


class _Background:
    def __init__(self, step: Step, started: float) -> None:
        self.step = step
        self.started = started
        self.procs: list[Process] = []
        self.stack = contextlib.ExitStack()


class Timeline:
    def __init__(self, scenario: Scenario, lab: LabInstance, progress: Progress | None = None) -> None:
        self.scenario = scenario
        self.lab = lab
        self.progress = progress or Progress(quiet=True)
        self.obs = Observations(started=time.time())
        link = lab.lab.links[scenario.link]
        self.link = link
        for host in (scenario.subject, scenario.reference):
            address = link.a_address if link.a == host else link.b_address
            self.obs.addresses[host] = {str(address.ip)}
        self._running: dict[str, _Background] = {}
        self._paused: set[int] = set()
        self._cut: list[tuple[Target, str]] = []
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="wg-dump-sampler", daemon=True)

    # -- the whole timeline ---------------------------------------------------
    def run(self) -> Observations:
        for name, spec in self.lab.lab.hosts.items():
            if spec.kind is HostKind.VM:
                self.obs.clock_offsets[name] = clock_offset(self.lab.hosts[name])
        self.obs.started = time.time()
        self._sampler.start()
        try:
            for step in self.scenario.steps:
                t0 = time.time()
                self.progress.step(f"t+{t0 - self.obs.started:6.2f}s {step.id}: {self._say(step)}")
                detail = self._do(step) or ""
                self.obs.events.append(Event(step.id, step.do, t0, time.time(), detail))
            for name in list(self._running):
                self._finish(name)
        finally:
            self._restore()
            self._stop_sampling.set()
            self._sampler.join(timeout=40)
            self.obs.ended = time.time()
        self._final_counters()
        return self.obs

    def _say(self, step: Step) -> str:
        parts = [step.do]
        if step.name:
            parts.append(step.name)
        if step.host:
            parts.append(f"on {step.host}")
        if step.seconds and step.do not in ("iperf3",):
            parts.append(f"for {step.seconds:g}s")
        return " ".join(parts)

    def _restore(self) -> None:
        """Undo what must never outlive the timeline: pauses, cuts, background traffic."""
        for pid in list(self._paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused.clear()
        for host, ifname in self._cut:
            host.run(["ip", "link", "set", "dev", ifname, "up"])
        self._cut.clear()
        for bg in self._running.values():
            for proc in bg.procs:
                proc.kill()
            bg.stack.close()
        self._running.clear()

    # -- steps ------------------------------------------------------------------
    def _do(self, step: Step) -> str | None:
        method = getattr(self, f"_step_{step.do}")
        result: str | None = method(step)
        return result

    def _ip(self, host: str) -> str:
        return self.lab.end(host).inner_ip

    def _step_ping(self, step: Step) -> str:
        assert step.host and step.peer and step.name
        host = self.lab.hosts[step.host]
        argv = ["ping", "-D", "-O", "-n", "-i", f"{step.interval:g}", "-s", str(step.size), "-W", "1",
                self._ip(step.peer)]  # fmt: skip
        bg = _Background(step, time.time())
        bg.procs.append(host.start(argv))
        self._running[step.name] = bg
        return f"ping {self._ip(step.peer)} every {step.interval:g}s"

    def _step_iperf3(self, step: Step) -> str:
        assert step.host and step.peer and step.name and step.port
        client, server = self.lab.hosts[step.host], self.lab.hosts[step.peer]
        ip = self._ip(step.peer)
        bg = _Background(step, time.time())
        self._running[step.name] = bg
        srv = server.start(server_argv(step.port, bind=ip))
        bg.procs.append(srv)
        wait_for_server(server, srv, step.port)
        argv = client_argv(ip, step.port, protocol=step.protocol, reverse=step.reverse,
                           streams=step.streams, bitrate=step.bitrate, duration=int(step.seconds), omit=0)  # fmt: skip
        bg.procs.insert(0, client.start(argv))
        bg.started = time.time()
        return f"iperf3 {step.protocol} to {ip} for {step.seconds:g}s"

    def _step_flood(self, step: Step) -> str:
        from harness.probe.launch import job, prober_peers, sides, start_probe

        assert step.peer and step.name
        side = sides(self.lab, step.peer)
        bg = _Background(step, time.time())
        self._running[step.name] = bg
        ids = bg.stack.enter_context(prober_peers(side, 1))
        proc = start_probe(side, job(side, "flood", ids, rate=step.rate, duration=step.seconds))
        bg.procs.append(proc)
        return f"{step.rate} initiations/s at {step.peer} for {step.seconds:g}s"

    def _step_stop(self, step: Step) -> str:
        assert step.name
        return self._finish(step.name)

    def _finish(self, name: str) -> str:
        bg = self._running.pop(name)
        step = bg.step
        try:
            if step.do == "ping":
                proc = bg.procs[0]
                proc.kill()
                log = parse_ping(name, proc.output()[0].decode("utf-8", "replace"), bg.started, time.time(),
                                 step.interval, self.obs.clock_offsets.get(step.host or "", 0.0))  # fmt: skip
                self.obs.pings[name] = log
                return f"{len(log.replies)} replies to {log.sent} requests"
            if step.do == "iperf3":
                client = bg.procs[0]
                try:
                    client.wait(step.seconds + 60)
                except TimeoutError:
                    client.kill()
                out, err = client.output()
                raw = out.decode("utf-8", "replace")
                bps: float | None = None
                error = None
                try:
                    bps = parse_iperf_json(raw).directions[0].receiver_bps
                except Exception as exc:  # an iperf3 failure is a measurement: no throughput
                    error = str(exc).strip().splitlines()[0] if str(exc).strip() else "iperf3 failed"
                self.obs.iperfs[name] = IperfLog(name, bg.started, time.time(), bps, error, raw)
                return f"{bps / 1e6:.1f} Mbit/s" if bps is not None else f"failed: {error}"
            # flood
            from harness.probe.launch import finish_probe

            result = finish_probe(bg.procs[0], "flood", timeout=step.seconds + 60)
            self.obs.floods[name] = result
            return f"{result.get('sent', '?')} initiations sent"
        finally:
            for proc in bg.procs:
                proc.kill()
            bg.stack.close()

    def _step_wait(self, step: Step) -> None:
        time.sleep(step.seconds)

    def _pid(self, host: str) -> int:
        pid = self.lab.end(host).driver.pid()
        if pid is None:
            vm = getattr(self.lab.hosts[host], "vm", None)
            pid = getattr(vm, "pid", None)
        if pid is None:
            raise InfraError(f"{host}: its implementation is not a process this machine can pause")
        return int(pid)

    def _step_pause(self, step: Step) -> str:
        assert step.host
        pid = self._pid(step.host)
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(pid)
        try:
            time.sleep(step.seconds)
        finally:
            self._paused.discard(pid)
            os.kill(pid, signal.SIGCONT)
        return f"SIGSTOP/SIGCONT pid {pid}"

    def _step_restart(self, step: Step) -> str:
        assert step.host
        self.lab.restart_end(step.host)
        return f"{self.lab.end(step.host).spec.impl} restarted"

    def _device(self, host: str) -> tuple[Target, str]:
        """``host``'s own interface on the scenario's link: a netns host's veth end, or
        a guest's NIC, as the guest names it."""
        if self.lab.lab.hosts[host].kind is HostKind.VM:
            from harness.targets.vm.qemu import LabNic

            return self.lab.hosts[host], LabNic.guest_ifname
        return self.lab.hosts[host], self.lab.link_device(self.link.index, host)

    def _step_roam(self, step: Step) -> str:
        assert step.host
        end = self.lab.end(step.host)
        if step.port is not None:
            end.host.check(["wg", "set", end.driver.ifname, "listen-port", str(step.port)])
            return f"listen port {step.port}"
        assert step.address is not None
        host, ifname = self._device(step.host)
        old = self.link.a_address if self.link.a == step.host else self.link.b_address
        # The old address goes first: deleting a primary address deletes the secondaries of its subnet.
        host.check(["ip", "address", "del", str(old), "dev", ifname])
        host.check(["ip", "address", "add", str(step.address), "dev", ifname])
        self.obs.addresses[step.host].add(str(step.address.ip))
        return f"link address {old} -> {step.address}"

    def _step_clear_key(self, step: Step) -> str:
        assert step.host
        end = self.lab.end(step.host)
        end.host.check(["wg", "set", end.driver.ifname, "private-key", "/dev/null"])
        return "private key removed"

    def _step_set_key(self, step: Step) -> str:
        assert step.host
        end = self.lab.end(step.host)
        end.host.check(
            ["wg", "set", end.driver.ifname, "private-key", "/dev/stdin"], input=end.keys.private.encode()
        )
        return "private key set"

    def _step_rotate_keys(self, step: Step) -> str:
        assert step.host
        new = self.lab.rotate_keys(step.host)
        return f"new public key {new.public}"

    def _step_link_mtu(self, step: Step) -> str:
        assert step.host and step.mtu
        host, ifname = self._device(step.host)
        host.check(["ip", "link", "set", "dev", ifname, "mtu", str(step.mtu)])
        if self.lab.lab.hosts[step.host].kind is not HostKind.VM:
            return f"{ifname} mtu {step.mtu}"
        # A veth drops arriving frames longer than its MTU; a guest's virtio NIC takes
        # them. The same silent drop, made in the guest: packets longer than the MTU
        # are dropped on arrival (tc's basic classifier; its length excludes the
        # Ethernet header, as the veth's check does).
        host.run(["tc", "qdisc", "del", "dev", ifname, "ingress"])
        host.check(["tc", "qdisc", "add", "dev", ifname, "ingress"])
        host.check(["tc", "filter", "add", "dev", ifname, "parent", "ffff:", "protocol", "all", "basic",
                    "match", f"meta(pkt_len gt {step.mtu})", "action", "drop"])  # fmt: skip
        return f"{ifname} mtu {step.mtu}, longer packets dropped on arrival (tc ingress)"

    def _step_tunnel_mtu(self, step: Step) -> str:
        assert step.mtu
        for end in self.lab.ends:
            if step.host in (None, end.spec.host):
                end.host.check(["ip", "link", "set", "dev", end.driver.ifname, "mtu", str(step.mtu)])
        return f"tunnel mtu {step.mtu}"

    def _step_cut(self, step: Step) -> str:
        sides = [h for h in (self.link.a, self.link.b) if isinstance(self.lab.hosts[h], NetnsTarget)]
        if not sides:
            raise InfraError("cut: neither end of the link is a netns host")
        for name in sides:
            host = self.lab.hosts[name]
            ifname = self.lab.link_device(self.link.index, name)
            self._cut.append((host, ifname))
            host.check(["ip", "link", "set", "dev", ifname, "down"])
        time.sleep(step.seconds)
        for host, ifname in self._cut:
            host.check(["ip", "link", "set", "dev", ifname, "up"])
        self._cut.clear()
        return f"link {self.link.a}<->{self.link.b} down for {step.seconds:g}s"

    # -- sampling -----------------------------------------------------------------
    def _sample(self) -> None:
        while True:
            for end in self.lab.ends:
                now = time.time()
                try:
                    text = redact_wg_dump(end.driver.dump())
                except Exception as exc:  # a sample that fails is kept as such
                    text = f"error: {exc}"
                self.obs.samples.append(Sample(now, end.spec.host, text))
            if self._stop_sampling.wait(self.scenario.sample_interval):
                return

    def _final_counters(self) -> None:
        for end in self.lab.ends:
            try:
                peer = end.driver.stats().peers[0]
            except Exception as exc:  # the expectation that needs them says so
                self.progress.warn(f"{end.spec.host}: no final counters: {exc}")
                continue
            self.obs.counters[end.spec.host] = (peer.rx_bytes, peer.tx_bytes)


def clock_offset(host: Target, tries: int = 3) -> float:
    """``host``'s clock minus this machine's: its `date` read between two readings of
    ours, from the quickest of a few tries (the error is at most half that round trip)."""
    best: tuple[float, float] | None = None
    for _ in range(tries):
        t0 = time.time()
        out = host.check(["date", "+%s.%N"]).stdout.strip()
        t1 = time.time()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, float(out) - (t0 + t1) / 2)
    assert best is not None
    return best[1]


def parse_ping(
    name: str, text: str, started: float, stopped: float, interval: float, offset: float = 0.0
) -> PingLog:
    """ping -D -O output: replies with their send time (arrival less the round trip ping
    measured) and arrival time, and how many requests it reported. ``offset``: how far
    the clock of the host ping ran on is ahead of this machine's (a guest's), taken off."""
    replies: list[tuple[int, float, float]] = []
    seen: set[int] = set()
    for match in _REPLY.finditer(text):
        seq = int(match.group(2))
        if seq not in seen:  # a duplicate reply (DUP!) is not another answer
            seen.add(seq)
            arrived = float(match.group(1)) - offset
            replies.append((seq, arrived - float(match.group(3)) / 1000.0, arrived))
    sent = max((int(m.group(1)) for m in _SEQ.finditer(text)), default=0)
    unanswered = tuple(
        (int(m.group(2)), float(m.group(1)) - offset - interval) for m in _NO_ANSWER.finditer(text)
    )
    return PingLog(name, started, stopped, interval, tuple(replies), sent, text, unanswered)
