"""Impairments: the `[impairments]` table validated with errors that name the
field, netem's arguments for each impairment, and (as root) netem detected the
way it really behaves on this kernel."""

from __future__ import annotations

import json

import pytest

from harness.errors import InfraError, LabError
from harness.impair.model import (
    NETEM_LIMIT,
    Impairment,
    Qdisc,
    apply_netem,
    netem_argv,
    netem_available,
    parse_impairment,
    root_qdisc,
)
from harness.run.orchestrator import new_instance_id
from harness.targets.links import LinkEnd, VethLink
from harness.targets.local import LocalTarget
from harness.targets.netns import NetnsTarget
from harness.validate import Fields


def parse(table: dict[str, object]) -> Impairment:
    return parse_impairment(Fields("scenario.toml", "impairments", table))


def test_an_empty_table_is_no_impairment() -> None:
    imp = parse({})
    assert imp == Impairment()
    assert not imp.active
    assert imp.describe() == "none"


def test_every_field_is_read() -> None:
    imp = parse(
        {"delay_ms": 50, "jitter_ms": 10.5, "loss_pct": 1, "reorder_pct": 25, "duplicate_pct": 0.5, "seed": 7}
    )
    assert imp == Impairment(
        delay_ms=50, jitter_ms=10.5, loss_pct=1, reorder_pct=25, duplicate_pct=0.5, seed=7
    )
    assert imp.active
    assert imp.describe() == "delay 50 ms ± 10.5 ms, loss 1%, reorder 25%, duplicate 0.5%, seed 7"


def test_a_seed_alone_changes_nothing() -> None:
    assert not parse({"seed": 3}).active


@pytest.mark.parametrize(
    ("table", "field", "reason"),
    [
        ({"loss_pct": 120}, "loss_pct", "percentage from 0 to 100"),
        ({"duplicate_pct": -1}, "duplicate_pct", "percentage from 0 to 100"),
        ({"reorder_pct": 10}, "reorder_pct", "needs delay_ms > 0"),
        ({"delay_ms": 10, "jitter_ms": 20}, "jitter_ms", "must not exceed delay_ms"),
        ({"delay_ms": 20_000}, "delay_ms", "from 0 to 10000"),
        ({"delay_ms": "50ms"}, "delay_ms", "must be a number"),
        ({"delay_ms": float("nan")}, "delay_ms", "must be a finite number"),
        ({"loss_pct": True}, "loss_pct", "must be a number"),
        ({"seed": -1}, "seed", "between 0 and"),
        ({"seed": 1.5}, "seed", "must be an integer"),
        ({"lag_ms": 5}, "lag_ms", "unknown field"),
    ],
)
def test_errors_name_file_and_field(table: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(LabError) as err:
        parse(table)
    assert (err.value.file, err.value.field) == ("scenario.toml", f"impairments.{field}")
    assert reason in err.value.reason
    assert "\n" not in str(err.value)


def test_the_dataclass_refuses_what_the_file_would() -> None:
    with pytest.raises(ValueError, match="loss_pct"):
        Impairment(loss_pct=101)
    with pytest.raises(ValueError, match="reorder_pct"):
        Impairment(reorder_pct=5)


@pytest.mark.parametrize(
    ("imp", "args"),
    [
        (Impairment(), []),
        (Impairment(delay_ms=50), ["delay", "50ms"]),
        (Impairment(delay_ms=50, jitter_ms=10), ["delay", "50ms", "10ms"]),
        (Impairment(loss_pct=1.5), ["loss", "random", "1.5%"]),
        (Impairment(duplicate_pct=10), ["duplicate", "10%"]),
        (Impairment(delay_ms=10, reorder_pct=25), ["delay", "10ms", "reorder", "25%", "gap", "1"]),
        (Impairment(loss_pct=1, seed=9), ["loss", "random", "1%"]),
    ],
)
def test_netem_args(imp: Impairment, args: list[str]) -> None:
    assert imp.netem_args() == ["limit", str(NETEM_LIMIT), *args]


# `tc -j qdisc show dev d0 root` on this machine, with the tbf `harness.targets.links` sets.
TBF_ROOT = (
    '[{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,'
    '"options":{"rate":12500000,"burst":32762,"lat":50000}}]'
)


def test_root_qdisc_from_tc_json() -> None:
    assert root_qdisc(TBF_ROOT) == Qdisc("tbf", "8001:")
    assert root_qdisc("[]") is None  # noqueue: tc lists nothing
    assert root_qdisc("") is None


def test_netem_goes_under_a_tbf_rate_limit_else_at_the_root() -> None:
    imp = Impairment(delay_ms=5)
    under = netem_argv("d0", imp, Qdisc("tbf", "8001:"))
    assert under == ["tc", "qdisc", "replace", "dev", "d0", "parent", "8001:1", "netem", *imp.netem_args()]
    alone = netem_argv("d0", imp, None)
    assert alone == ["tc", "qdisc", "replace", "dev", "d0", "root", "netem", *imp.netem_args()]
    assert netem_argv("d0", imp, Qdisc("pfifo_fast", "0:"))[5] == "root"


# -- as root: the real kernel -------------------------------------------------------


@pytest.fixture
def namespace(no_leftovers: None):  # type: ignore[no-untyped-def]
    host = NetnsTarget("t", f"wgh-{new_instance_id()}-t")
    host.setup()
    try:
        yield host
    finally:
        host.teardown()


def test_netem_available_agrees_with_tc(namespace: NetnsTarget) -> None:
    # The reference: add netem for real, in a namespace of the test's own.
    works = namespace.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).ok
    assert netem_available(LocalTarget("local")) is works
    assert netem_available(namespace) is works
    # netem is on the loopback only where the reference put it: the check added none.
    root = root_qdisc(namespace.check(["tc", "-j", "qdisc", "show", "dev", "lo", "root"]).stdout)
    assert (root is not None and root.kind == "netem") is works


def test_apply_netem_under_the_links_rate_limit(no_leftovers: None) -> None:
    a = NetnsTarget("a", f"wgh-{new_instance_id()}-a")
    b = NetnsTarget("b", f"wgh-{new_instance_id()}-b")
    link = VethLink(
        LinkEnd(a, "imp-a", "198.18.0.1/24"), LinkEnd(b, "imp-b", "198.18.0.2/24"), rate_bps=100_000_000
    )
    try:
        a.setup()
        b.setup()
        link.setup()
        imp = Impairment(delay_ms=5, loss_pct=1)
        if netem_available(a):
            apply_netem(a, "imp-a", imp)
            shown = json.loads(a.check(["tc", "-j", "qdisc", "show", "dev", "imp-a"]).stdout)
            assert [q["kind"] for q in shown] == ["tbf", "netem"]
        else:
            with pytest.raises(InfraError, match="cannot put netem on imp-a") as err:
                apply_netem(a, "imp-a", imp)
            assert "\n" not in str(err.value)
            # The rate limit is still there.
            assert (
                root_qdisc(a.check(["tc", "-j", "qdisc", "show", "dev", "imp-a", "root"]).stdout) is not None
            )
        apply_netem(a, "imp-a", Impairment())  # nothing to do: no tc call that could fail
    finally:
        link.teardown()
        a.teardown()
        b.teardown()
