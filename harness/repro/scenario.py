"""Scenario files: a bug story as TOML, validated into frozen dataclasses.

A scenario is a lab (in the same file, as a lab file's tables, or named by
path), the tunnel end under test (``subject``, whose implementation
``--impl`` swaps), impairments of the outer path, a timeline of steps, and
expectations checked against what the timeline measured. Every mistake is a
`LabError` naming the file, the dotted field and the reason.

    [scenario]
    name = "peer-restart"
    story = "After the other side restarts, no traffic for minutes."
    subject = "b"
    lab = "../labs/local.toml"        # or [hosts.*], [[links]], [tunnel] here

    [[steps]]
    do = "ping"
    name = "p"
    from = "b"

    [[expect]]
    what = "resumes"
    traffic = "p"
    after = "restart-a"
    within = 20

The actions and expectations, with their fields, are documented in
docs/repro.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from ipaddress import ip_interface
from pathlib import Path

from harness.errors import LabError, UsageError
from harness.impair.model import Impairment, parse_impairment
from harness.impl import ImplName
from harness.lab.spec import (
    KNOWN_IMPLS,
    MAX_SECONDS,
    IPInterface,
    Lab,
    VmHostSpec,
    iperf_port,
    lab_from_table,
    load_lab,
    parse_lab,
    parse_rate,
)
from harness.targets.base import HostKind
from harness.validate import Fields, parse_toml, read_text

SCENARIO_NAME = r"[a-z][a-z0-9-]{0,47}"
STEP_ID = r"[a-z][a-z0-9_-]{0,31}"
BACKENDS = ("auto", "netem", "relay")
BACKGROUND = ("ping", "iperf3", "flood")
ACTIONS = (
    *BACKGROUND,
    "stop",
    "wait",
    "pause",
    "restart",
    "roam",
    "clear_key",
    "set_key",
    "link_mtu",
    "tunnel_mtu",
    "rotate_keys",
    "cut",
)
EXPECTATIONS = (
    "resumes",
    "throughput",
    "handshakes",
    "handshake",
    "counters_equal",
    "no_packets",
    "ping_loss",
)
EDGES = ("effect", "start", "end")
MAX_MBPS = 1e6
"""A terabit a second: the bound of a throughput expectation."""
DURATION_STEPS = ("wait", "pause", "cut")
"""Steps whose effect is over at their end; every other step takes effect as it starts."""
SCENARIO_KEYS = ("scenario", "impairments", "steps", "expect")
"""The tables of a scenario file that are not the lab's."""


@dataclass(frozen=True)
class Step:
    """One step of the timeline. Which fields an action uses is in docs/repro.md;
    the others keep their defaults."""

    index: int
    id: str
    do: str
    host: str | None = None
    """The host acted on (``from`` for traffic: where it starts)."""
    peer: str | None = None
    """Traffic: the host it goes to (its tunnel address)."""
    name: str | None = None
    """Background traffic: the name ``stop`` and expectations use."""
    seconds: float = 0.0
    interval: float = 0.2
    size: int = 56
    protocol: str = "tcp"
    bitrate: str | None = None
    reverse: bool = False
    streams: int = 1
    rate: int = 0
    """flood: initiations a second."""
    port: int | None = None
    address: IPInterface | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class Expectation:
    index: int
    id: str
    what: str
    traffic: str | None = None
    after: str | None = None
    edge: str = "effect"
    """Measured from: ``effect`` (the end of a wait/pause/cut, the start of any other
    step: a command's own latency counts against the implementation), ``start`` or ``end``."""
    until: str | None = None
    within: float | None = None
    at_least_mbps: float | None = None
    at_most_mbps: float | None = None
    at_least_ratio: float | None = None
    of: str | None = None
    at_most: int | None = None
    at_most_pct: float | None = None
    tolerance_bytes: int = 0
    source: str | None = None
    """``from``: the host sending (handshakes, no_packets)."""
    dest: str | None = None
    """``to``: the host received at (no_packets)."""

    def describe(self) -> str:
        window = ""
        if self.after:
            window += f" after {self.after}" + {"start": " began", "end": " ended"}.get(self.edge, "")
        if self.until:
            window += f" until {self.until}"
        if self.what == "resumes":
            return f"{self.traffic} resumes within {self.within:g}s{window}"
        if self.what == "throughput":
            parts = []
            if self.at_least_mbps is not None:
                parts.append(f">= {self.at_least_mbps:g} Mbit/s")
            if self.at_most_mbps is not None:
                parts.append(f"<= {self.at_most_mbps:g} Mbit/s")
            if self.at_least_ratio is not None:
                parts.append(f">= {self.at_least_ratio:g} x {self.of}")
            return f"{self.traffic} throughput {' and '.join(parts)}"
        if self.what == "handshakes":
            return f"at most {self.at_most} handshake initiations from {self.source}{window}"
        if self.what == "handshake":
            return f"a handshake within {self.within:g}s{window}"
        if self.what == "counters_equal":
            slack = f" (+-{self.tolerance_bytes} B)" if self.tolerance_bytes else ""
            return f"counters equal on both ends{slack}"
        if self.what == "no_packets":
            return f"no packet from {self.source} to {self.dest}{window}"
        return f"{self.traffic} loss at most {self.at_most_pct:g}%{window}"


@dataclass(frozen=True)
class ImpairmentSpec:
    rate: str | None
    rate_bps: int | None
    impairment: Impairment
    backend: str


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    story: str
    text: str
    sha256: str
    lab: Lab
    lab_path: str | None
    """The lab file named by ``scenario.lab``; None: the lab is in the scenario file."""
    subject: str
    reference: str
    link: int
    """Index of the link the capture and the impairments are on."""
    impairments: ImpairmentSpec
    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...]
    sample_interval: float

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def lab_for(self, impl: str | None) -> Lab:
        """The lab with the subject's implementation swapped (``--impl``): ``kernel``
        makes the subject a QEMU guest with Debian's kernel, on the same link."""
        lab = self.lab
        if self.impairments.rate_bps:
            links = tuple(
                replace(lk, rate=self.impairments.rate, rate_bps=self.impairments.rate_bps)
                if lk.index == self.link
                else lk
                for lk in lab.links
            )
            lab = replace(lab, links=links)
        if impl is None:
            return lab
        if impl not in KNOWN_IMPLS:
            raise UsageError(f"--impl: {impl!r} is not an implementation (known: {', '.join(KNOWN_IMPLS)})")
        name = ImplName(impl)
        ends = tuple(
            replace(e, impl=name, program=None, build=impl) if e.host == self.subject else e
            for e in lab.tunnel.ends
        )
        hosts = dict(lab.hosts)
        subject_host = hosts[self.subject]
        if name is ImplName.KERNEL and subject_host.kind is not HostKind.VM:
            hosts[self.subject] = replace(subject_host, kind=HostKind.VM, vm=VmHostSpec())
        elif name is not ImplName.KERNEL and subject_host.kind is HostKind.VM:
            raise UsageError(
                f"--impl {impl}: the subject {self.subject} is a vm, which runs kernel WireGuard"
            )
        tunnel = replace(lab.tunnel, ends=(ends[0], ends[1]))
        return replace(lab, hosts=hosts, tunnel=tunnel, variants=())


def load_scenario(path: str) -> Scenario:
    return parse_scenario(read_text(path), path)


def parse_scenario(
    text: str, path: str, *, bundle: str | None = None, lab_text: str | None = None
) -> Scenario:
    """``bundle``: the scenario is that bundle's, and so is everything it names: its lab
    is ``lab_text`` (the bundle's lab.toml) or the scenario's own tables, never a file
    named outside the bundle, and names no program, key file or tool outside it."""
    data = parse_toml(text, path)
    f = Fields(path, "", data)
    meta = Fields(path, "scenario", f.table_of("scenario"))
    stem = re.sub(r"[^a-z0-9-]", "-", Path(path).stem.lower())
    name = meta.text("name", stem if re.fullmatch(SCENARIO_NAME, stem) else None, pattern=SCENARIO_NAME,
                     hint="lower-case letters, digits and '-', starting with a letter, at most 48")  # fmt: skip
    if name is None:
        raise meta.error("name", "required field is missing (the file's name is not a scenario name)")
    story = meta.text("story", "")
    lab_path = meta.text("lab", None)
    lab_tables = {k: v for k, v in data.items() if k not in SCENARIO_KEYS}
    if lab_path is not None:
        if lab_tables:
            raise LabError(
                path, next(iter(lab_tables)), "the lab is named by scenario.lab: no lab tables here"
            )
        if bundle is None:
            lab = load_lab(str(Path(path).parent / lab_path), suites=False)
        elif lab_text is None:
            raise meta.error("lab", f"{lab_path!r} is outside the bundle, which holds no lab.toml: "
                             "a bundle's paths resolve inside it only")  # fmt: skip
        else:
            lab = parse_lab(lab_text, f"{bundle}:lab.toml", suites=False)
    else:
        if not lab_tables:
            raise meta.error("lab", "required: a lab file's path, or the lab's tables in this file")
        lab_tables.setdefault("lab", {"name": name[:32].rstrip("-")})
        lab = lab_from_table(lab_tables, text, path, suites=False)
    if bundle is not None:
        _inside_the_bundle(lab)
    hosts = (lab.tunnel.ends[0].host, lab.tunnel.ends[1].host)
    subject = meta.choice("subject", hosts, hosts[1])
    reference = hosts[0] if subject == hosts[1] else hosts[1]
    if lab.hosts[reference].kind is not HostKind.NETNS:
        raise meta.error(
            "subject", f"the other end ({reference}) must be a netns host: the capture and relay run there"
        )
    link = lab.link_between(*hosts)
    if link is None:
        raise meta.error("subject", f"no link joins the tunnel's hosts {hosts[0]} and {hosts[1]}")
    sample = meta.number("sample_interval", 1.0, lo_exclusive=0.05, hi=60)
    meta.done()
    impairments = _impairments(f)
    steps = _steps(f, lab, hosts)
    expectations = _expectations(f, steps, hosts)
    if impairments.impairment.active and any(s.do == "roam" for s in steps):
        raise LabError(path, "steps", "roam cannot be combined with delay/loss impairments (the relay "
                       "forwards to fixed endpoints)")  # fmt: skip
    # Every other top-level table is the lab's, and its parser refused what it does not know.
    return Scenario(
        path=path,
        name=name,
        story=story,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        lab=lab,
        lab_path=lab_path,
        subject=subject,
        reference=reference,
        link=link.index,
        impairments=impairments,
        steps=steps,
        expectations=expectations,
        sample_interval=sample,
    )


def _inside_the_bundle(lab: Lab) -> None:
    """A bundle's lab names no file of the machine that reruns it: no program to run,
    no SSH key or known_hosts file, no iperf3 path (each would be the rerunner's file,
    chosen by whoever made the bundle)."""
    named = [(f"tunnel.ends[{i}].program", e.program) for i, e in enumerate(lab.tunnel.ends)]
    named += [(f"variants[{i}].program", v.program) for i, v in enumerate(lab.variants)]
    for name, host in lab.hosts.items():
        if host.ssh is not None:
            named += [
                (f"hosts.{name}.{key}", getattr(host.ssh, key)) for key in ("key", "known_hosts", "iperf3")
            ]
    for field, value in named:
        if value is not None:
            raise LabError(lab.path, field, f"{value!r} is a path outside the bundle: a bundle's lab runs "
                           "no program and reads no file of this machine (run its scenario.toml and lab.toml "
                           "as files to use one)")  # fmt: skip


def _impairments(f: Fields) -> ImpairmentSpec:
    table = f.table_of("impairments", {})
    i = Fields(f.file, "impairments", table)
    rate = i.text("rate", None)
    rate_bps = i.parsed("rate", parse_rate, "expected a rate like '50mbit', '1gbit' or '800k'", None)
    backend = i.choice("backend", BACKENDS, "auto")
    # The rest are the impairment's own fields, validated by it (rate and backend are seen).
    impairment = parse_impairment(i)
    return ImpairmentSpec(rate, rate_bps, impairment, backend)


def _steps(f: Fields, lab: Lab, ends: tuple[str, str]) -> tuple[Step, ...]:
    tables = f.list_of_tables("steps")
    if not tables:
        raise f.error("steps", "at least one step is needed")
    steps: list[Step] = []
    ids: set[str] = set()
    running: set[str] = set()
    names: set[str] = set()
    for index, body in enumerate(tables):
        s = Fields(f.file, f"steps[{index}]", body)
        do = s.choice("do", ACTIONS)
        step_id = s.text("id", f"{do}-{index + 1}", pattern=STEP_ID,
                         hint="lower-case letters, digits, '_' and '-', starting with a letter")  # fmt: skip
        if step_id in ids:
            raise s.error("id", f"{step_id!r} is the id of an earlier step")
        ids.add(step_id)
        step = _step(s, index, step_id, do, lab, ends, running, names)
        s.done()
        steps.append(step)
    return tuple(steps)


def _step(
    s: Fields,
    index: int,
    step_id: str,
    do: str,
    lab: Lab,
    ends: tuple[str, str],
    running: set[str],
    names: set[str],
) -> Step:
    step = Step(index, step_id, do)
    if do in BACKGROUND:
        name = s.text("name", pattern=STEP_ID, hint="lower-case letters, digits, '_' and '-'")
        if name in names:
            raise s.error("name", f"{name!r} names earlier traffic")
        names.add(name)
        running.add(name)
        if do == "flood":
            target = s.choice("at", ends, ends[1])
            return replace(step, name=name, host=[e for e in ends if e != target][0], peer=target,
                           rate=s.integer("rate", 1000, 1, 100_000),
                           seconds=s.number("seconds", lo_exclusive=0, hi=MAX_SECONDS))  # fmt: skip
        src = s.choice("from", ends)
        dst = s.choice("to", ends, ends[0] if src == ends[1] else ends[1])
        if dst == src:
            raise s.error("to", "traffic goes to the other tunnel end")
        step = replace(step, name=name, host=src, peer=dst)
        if do == "ping":
            return replace(step, interval=s.number("interval", 0.2, lo_exclusive=0.009, hi=60),
                           size=s.integer("size", 56, 0, 65000))  # fmt: skip
        return replace(
            step,
            seconds=float(s.integer("seconds", lo=1, hi=MAX_SECONDS)),
            protocol=s.choice("protocol", ("tcp", "udp"), "tcp"),
            bitrate=s.text(
                "bitrate", None, pattern=r"[0-9]+(\.[0-9]+)?[kKmMgG]?", hint="iperf3's bitrate, e.g. '100M'"
            ),  # fmt: skip
            reverse=s.flag("reverse", False),
            streams=s.integer("streams", 1, 1, 128),
            port=iperf_port(s, "port", 5201 + index, lab.tunnel, lo=1024),
        )
    if do == "stop":
        name = s.text("name")
        if name not in running:
            raise s.error("name", f"{name!r} is not traffic started by an earlier step and still running")
        running.discard(name)
        return replace(step, name=name)
    if do in ("wait", "cut"):
        return replace(step, seconds=s.number("seconds", lo_exclusive=0, hi=MAX_SECONDS))
    if do == "pause":
        return replace(
            step, host=s.choice("host", ends), seconds=s.number("seconds", lo_exclusive=0, hi=MAX_SECONDS)
        )
    if do in ("restart", "clear_key", "set_key", "rotate_keys"):
        return replace(step, host=s.choice("host", ends))
    if do == "roam":
        host = s.choice("host", ends)
        port = s.integer("port", None, 1, 65535)
        address = s.parsed(
            "address", ip_interface, "expected an address with its prefix, e.g. 198.18.0.9/24", None
        )
        if (port is None) == (address is None):
            raise s.error(
                "port", "roam needs exactly one of port (a new listen port) and address (a new link address)"
            )
        return replace(step, host=host, port=port, address=address)
    if do == "link_mtu":
        return replace(
            step, host=s.choice("host", tuple(sorted(lab.hosts))), mtu=s.integer("mtu", lo=576, hi=65535)
        )
    # tunnel_mtu
    return replace(step, host=s.choice("host", ends, None), mtu=s.integer("mtu", lo=576, hi=65535))


def _expectations(f: Fields, steps: tuple[Step, ...], ends: tuple[str, str]) -> tuple[Expectation, ...]:
    tables = f.list_of_tables("expect", [])
    ids = tuple(s.id for s in steps)
    traffic = {s.name: s.do for s in steps if s.do in BACKGROUND}
    out = []
    for index, body in enumerate(tables):
        e = Fields(f.file, f"expect[{index}]", body)
        what = e.choice("what", EXPECTATIONS)
        exp = Expectation(index, e.text("id", f"e{index + 1}", pattern=STEP_ID, hint="a short id"), what)

        if what == "resumes":
            exp = _window(
                e,
                ids,
                replace(exp, traffic=_traffic(e, traffic, "ping"), within=_within(e)),
            )
            if exp.after is None:
                raise e.error("after", "required: the step after which the traffic must resume")
        elif what == "throughput":
            exp = replace(
                exp,
                traffic=_traffic(e, traffic, "iperf3"),
                at_least_mbps=e.number("at_least_mbps", None, lo_exclusive=0, hi=MAX_MBPS),
                at_most_mbps=e.number("at_most_mbps", None, lo_exclusive=0, hi=MAX_MBPS),
                at_least_ratio=e.number("at_least_ratio", None, lo_exclusive=0, hi=1000),
                of=e.text("of", None),
            )
            if (exp.at_least_ratio is None) != (exp.of is None):
                raise e.error("of", "at_least_ratio and of (the iperf3 traffic compared with) go together")
            if exp.of is not None and traffic.get(exp.of) != "iperf3":
                raise e.error("of", f"{exp.of!r} is not iperf3 traffic of this scenario")
            if exp.at_least_mbps is None and exp.at_most_mbps is None and exp.of is None:
                raise e.error("at_least_mbps", "give at_least_mbps, at_most_mbps or at_least_ratio with of")
        elif what == "handshakes":
            exp = _window(
                e,
                ids,
                replace(exp, source=e.choice("from", ends), at_most=e.integer("at_most", lo=0, hi=10**6)),
            )
        elif what == "handshake":
            exp = _window(e, ids, replace(exp, within=_within(e)))
            if exp.after is None:
                raise e.error("after", "required: the step after which a handshake must complete")
        elif what == "counters_equal":
            exp = replace(exp, tolerance_bytes=e.integer("tolerance_bytes", 0, 0, 2**40))
        elif what == "no_packets":
            src = e.choice("from", ends)
            dst = e.choice("to", ends, ends[0] if src == ends[1] else ends[1])
            exp = _window(e, ids, replace(exp, source=src, dest=dst))
        else:  # ping_loss
            exp = _window(
                e,
                ids,
                replace(exp, traffic=_traffic(e, traffic, "ping"), at_most_pct=_percent(e, "at_most_pct")),
            )
        e.done()
        out.append(exp)
    if len({x.id for x in out}) != len(out):
        raise f.error("expect", "two expectations have the same id")
    return tuple(out)


def _traffic(e: Fields, traffic: dict[str | None, str], kind: str) -> str:
    name: str = e.text("traffic")
    if traffic.get(name) != kind:
        raise e.error("traffic", f"{name!r} is not {kind} traffic of this scenario")
    return name


def _window(e: Fields, ids: tuple[str, ...], x: Expectation) -> Expectation:
    return replace(x, after=e.choice("after", ids, None), edge=e.choice("edge", EDGES, "effect"),
                   until=e.choice("until", ids, None))  # fmt: skip


def _within(e: Fields) -> float:
    value: float = e.number("within", lo_exclusive=0, hi=MAX_SECONDS)
    return value


def _percent(e: Fields, key: str) -> float:
    value: float = e.number(key)
    if not 0 <= value <= 100:
        raise e.error(key, f"must be a percentage from 0 to 100, got {value:g}")
    return value
