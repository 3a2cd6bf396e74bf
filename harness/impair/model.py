"""Impairments of the underlay path between two WireGuard peers: delay, jitter,
loss, reordering and duplication, as one frozen `Impairment`.

Two backends carry it out (docs/impairments.md): netem on a link's interface
where the host's kernel has it (`netem_available`, `apply_netem`), and the
userspace relay (`harness.impair.relay`) everywhere else. Both follow netem's
meaning of each field; where the relay differs, docs/impairments.md says so.
Rate limits are not here: links have their own (tbf, `harness.targets.links`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from harness.errors import InfraError
from harness.targets.base import Target
from harness.validate import Fields

MAX_DELAY_MS = 10_000.0
"""Ten seconds: more is not a network path but a stall."""
MAX_SEED = 2**63 - 1
NETEM_LIMIT = 100_000
"""Packets netem may hold. Its default (1000) drops packets as soon as rate x delay
exceeds it (1 Gbit/s of 1420-byte packets is 88,000 a second, 4,400 per 50 ms),
which the relay never does; this keeps the two backends alike."""


@dataclass(frozen=True)
class Impairment:
    """What happens to each datagram on its way, in one direction (both directions
    get the same, independently)."""

    delay_ms: float = 0
    """Added to every datagram."""
    jitter_ms: float = 0
    """Each datagram's delay is drawn uniformly from delay ± jitter (netem's draw when no
    distribution table is named). Like netem, datagrams leave in order of their drawn
    time, so jitter reorders; at most ``delay_ms``."""
    loss_pct: float = 0
    """Chance that a datagram is dropped, 0-100."""
    reorder_pct: float = 0
    """Chance that a datagram is sent at once instead of after the delay, overtaking the
    delayed ones (netem's ``reorder`` with gap 1); needs ``delay_ms`` > 0."""
    duplicate_pct: float = 0
    """Chance that a datagram that was not dropped is sent twice, 0-100."""
    seed: int | None = None
    """Seed of the random draws (None: a fresh one, reported by the relay)."""

    def __post_init__(self) -> None:
        problem = _problem({name: getattr(self, name) for name in FIELDS}, self.seed)
        if problem:
            field, reason = problem
            raise ValueError(f"{field}: {reason}")

    @property
    def active(self) -> bool:
        """Does it change anything at all?"""
        return any((self.delay_ms, self.jitter_ms, self.loss_pct, self.reorder_pct, self.duplicate_pct))

    def describe(self) -> str:
        """One line, e.g. ``delay 50 ms ± 10 ms, loss 1%, seed 7``; ``none`` if inactive."""
        parts = []
        if self.delay_ms:
            parts.append(
                f"delay {self.delay_ms:g} ms" + (f" ± {self.jitter_ms:g} ms" if self.jitter_ms else "")
            )
        for name, pct in (
            ("loss", self.loss_pct),
            ("reorder", self.reorder_pct),
            ("duplicate", self.duplicate_pct),
        ):
            if pct:
                parts.append(f"{name} {pct:g}%")
        if not parts:
            return "none"
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts)

    def netem_args(self) -> list[str]:
        """The arguments after ``tc qdisc ... netem`` for the same behaviour.

        No ``distribution`` is named, so the kernel draws jitter uniformly, as the relay
        does (tc only sends a table when one is named; there is no uniform table). The
        seed is left out: netem's ``seed`` (iproute2 6.6 and later; Debian 12's tc
        refuses it) seeds only its loss draws, so it would not make a run repeatable.
        """
        args = ["limit", str(NETEM_LIMIT)]
        if self.delay_ms:
            args += ["delay", f"{self.delay_ms:g}ms"]
            if self.jitter_ms:
                args.append(f"{self.jitter_ms:g}ms")
        if self.loss_pct:
            args += ["loss", "random", f"{self.loss_pct:g}%"]
        if self.duplicate_pct:
            args += ["duplicate", f"{self.duplicate_pct:g}%"]
        if self.reorder_pct:
            args += ["reorder", f"{self.reorder_pct:g}%", "gap", "1"]
        return args


FIELDS = ("delay_ms", "jitter_ms", "loss_pct", "reorder_pct", "duplicate_pct")


def _problem(values: dict[str, float], seed: int | None) -> tuple[str, str] | None:
    """(field, reason) of the first value out of range, or None: one set of rules for
    `Impairment` itself and for the errors of `parse_impairment`."""
    for name in ("delay_ms", "jitter_ms"):
        value = values[name]
        if not (math.isfinite(value) and 0 <= value <= MAX_DELAY_MS):
            return name, f"must be a number of milliseconds from 0 to {MAX_DELAY_MS:g}, got {value:g}"
    for name in ("loss_pct", "reorder_pct", "duplicate_pct"):
        value = values[name]
        if not (math.isfinite(value) and 0 <= value <= 100):
            return name, f"must be a percentage from 0 to 100, got {value:g}"
    if values["jitter_ms"] > values["delay_ms"]:
        return "jitter_ms", f"must not exceed delay_ms ({values['delay_ms']:g}): a delay cannot go below zero"
    if values["reorder_pct"] and not values["delay_ms"]:
        return "reorder_pct", "needs delay_ms > 0 (a reordered datagram is one sent without the delay)"
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        return "seed", f"must be a whole number from 0 to {MAX_SEED}, got {seed!r}"
    return None


def parse_impairment(f: Fields) -> Impairment:
    """An `[impairments]` table: the fields of `Impairment`, each optional (default 0,
    no seed); a wrong value or an unknown key is a `LabError` naming the field."""
    values = {name: f.number(name, 0.0) for name in FIELDS}
    seed = f.integer("seed", None, lo=0, hi=MAX_SEED)
    f.done()
    problem = _problem(values, seed)
    if problem:
        raise f.error(*problem)
    return Impairment(**values, seed=seed)


# -- netem ---------------------------------------------------------------------------


def netem_available(host: Target) -> bool:
    """Can netem be used on ``host``? Found out by doing it where it costs nothing: a
    netem qdisc is added to the loopback of a network namespace that exists only for
    the one command (``unshare --net``), so no interface of the host is touched and
    nothing is left to remove. Asking for the module instead would be wrong both
    ways: netem may be built in (no module) or the module may exist but not load.
    The kernel may load ``sch_netem`` to answer. False also where the check cannot
    run (no ``unshare`` or ``tc``, not root), since `apply_netem` could not either."""
    probe = ["unshare", "--net", "--", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    return host.run(probe, timeout=20).ok


@dataclass(frozen=True)
class Qdisc:
    kind: str
    handle: str
    """E.g. ``8001:``."""


def root_qdisc(tc_json: str) -> Qdisc | None:
    """The root qdisc in ``tc -j qdisc show dev IF root`` (None where tc lists none, as
    for a device that is down)."""
    for entry in json.loads(tc_json or "[]"):
        if entry.get("root"):
            return Qdisc(str(entry["kind"]), str(entry["handle"]))
    return None


def netem_argv(ifname: str, imp: Impairment, root: Qdisc | None) -> list[str]:
    """The tc command that puts ``imp`` on ``ifname``'s egress. Under a tbf rate limit
    at the root (the one `harness.targets.links` sets), netem becomes tbf's child, so
    the rate still holds; otherwise netem replaces the root qdisc."""
    where = ["parent", f"{root.handle}1"] if root is not None and root.kind == "tbf" else ["root"]
    return ["tc", "qdisc", "replace", "dev", ifname, *where, "netem", *imp.netem_args()]


def apply_netem(host: Target, ifname: str, imp: Impairment) -> None:
    """Put ``imp`` on the egress of ``ifname`` on ``host`` with netem (each end of a
    link impairs what it sends; impair both ends for both directions). An inactive
    impairment changes nothing. InfraError if tc refuses (e.g. no netem)."""
    if not imp.active:
        return
    shown = host.run(["tc", "-j", "qdisc", "show", "dev", ifname, "root"], timeout=20)
    if not shown.ok:
        raise InfraError(f"{host.name}: cannot read the qdiscs of {ifname}: {_last_line(shown.stderr)}")
    argv = netem_argv(ifname, imp, root_qdisc(shown.stdout))
    result = host.run(argv, timeout=20)
    if not result.ok:
        raise InfraError(
            f"{host.name}: cannot put netem on {ifname} ({imp.describe()}): {_last_line(result.stderr)}"
        )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output on stderr"
