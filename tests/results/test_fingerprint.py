"""Fingerprints of stored runs: the fields, the refusal of a comparison naming the
field that differs, runs stored before a field was recorded, and history series
split by fingerprint; on synthetic stores whose host facts are what this
machine's facts script printed (tests/data/facts/)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.codec import encode
from harness.errors import UsageError
from harness.parsers.facts import parse_facts, parse_link
from harness.results.compare import Settings, compare, parse_selector
from harness.results.fingerprint import Fingerprint, differences, fingerprint
from harness.results.history import history
from harness.results.store import Store
from tests.support.paths import DATA
from tests.support.synthetic import BASE, store_run


def real_facts(**changes: Any) -> dict[str, Any]:
    """Host facts as a run stores them: this machine's captured facts, its lab link's
    interface and offloads, then ``changes``."""
    facts = parse_facts((DATA / "facts" / "debian12-kvm.txt").read_text())
    interface, offloads = parse_link((DATA / "facts" / "link-veth.txt").read_text())
    stored: dict[str, Any] = encode(replace(facts, link_interface=interface, link_offloads=offloads))
    stored.update(changes)
    return stored


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'f.db'}"


def test_the_fields_of_a_real_hosts_fingerprint(url: str) -> None:
    with Store.open(url) as store:
        run = store_run(store, "v1", BASE, minutes=0, facts=real_facts(), runner="ci-1")
        fp = fingerprint(store.get_run(run))
    fields = dict(fp.fields)
    assert fields == {
        "runner": "ci-1",
        "lab file": "ab" * 6,
        "host a: CPU model": "AMD EPYC",
        "host a: cores": "2",
        "host a: kernel": "6.18.44-fc-v1300",
        "host a: virtualization": "KVM",
        "host a: tcp congestion control": "bbr",
        "host a: net.core.rmem_max": "4194304",
        "host a: net.core.wmem_max": "4194304",
        "host a: net.ipv4.tcp_rmem": "4096 131072 33554432",
        "host a: net.ipv4.tcp_wmem": "4096 16384 4194304",
        "host a: offload generic-receive-offload": "off",
        "host a: offload generic-segmentation-offload": "on",
        "host a: offload large-receive-offload": "off",
        "host a: offload rx-checksumming": "on",
        "host a: offload rx-udp-gro-forwarding": "off",
        "host a: offload scatter-gather": "on",
        "host a: offload tcp-segmentation-offload": "on",
        "host a: offload tx-checksumming": "on",
        "host a: offload tx-udp-segmentation": "on",
    }  # no governor (no cpufreq here), no interface name (it names the lab instance)
    assert len(fp.short) == 8 and fp.label == f"ci-1@{fp.short}"
    assert Fingerprint(fp.fields).short == fp.short  # stable: a hash of the fields only
    assert Fingerprint((*fp.fields[:-1], (fp.fields[-1][0], "off"))).short != fp.short


def test_a_comparison_across_congestion_controls_is_refused_naming_the_field(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same host but its TCP congestion control: bbr for the baseline, cubic for
    the candidate. `compare` refuses (exit 2, one line naming the field and both
    values) unless --allow-mismatch, which then shows the difference."""
    with Store.open(url) as store:
        store_run(store, "v1", BASE, minutes=0, facts=real_facts(), runner="ci-1")
        store_run(
            store, "v2", BASE, minutes=1, facts=real_facts(tcp_congestion_control="cubic"), runner="ci-1"
        )
    assert main(["compare", "build:v1", "build:v2", "--store", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "host a: tcp congestion control: bbr vs cubic" in err and "--allow-mismatch" in err
    assert "CPU model" not in err  # only what differs
    assert main(["compare", "build:v1", "build:v2", "--store", url, "--allow-mismatch"]) == 0
    assert "fingerprint differs (baseline vs candidate): host a: tcp congestion control: bbr vs cubic" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("candidate", "runner", "named"),
    [
        ({"socket_buffers": {"net.core.rmem_max": "212992"}}, "ci-1", "host a: net.core.rmem_max: 4194304 vs 212992"),
        ({"cpu_governor": "powersave"}, "ci-1", None),  # the baseline has no governor: not compared
        ({"link_offloads": {"generic-receive-offload": "on"}}, "ci-1",
         "host a: offload generic-receive-offload: off vs on"),
        ({"cores": 4}, "ci-1", "host a: cores: 2 vs 4"),
        ({}, "ci-2", "runner: ci-1 vs ci-2"),
    ],
)  # fmt: skip
def test_each_field_that_differs_is_named(
    url: str, candidate: dict[str, Any], runner: str, named: str | None
) -> None:
    with Store.open(url) as store:
        store_run(store, "v1", BASE, minutes=0, facts=real_facts(), runner="ci-1")
        store_run(store, "v2", BASE, minutes=1, facts=real_facts(**candidate), runner=runner)
        result = compare(
            store, parse_selector("build:v1"), parse_selector("build:v2"), Settings(allow_mismatch=True)
        )
    assert result.mismatches == ([named] if named else [])


def test_runs_stored_before_the_fingerprint_compare_with_new_ones(url: str) -> None:
    """A run with the old facts (CPU model, kernel) and no runner against a new one
    with every field: compared on what both recorded, so not refused."""
    with Store.open(url) as store:
        store_run(store, "old", BASE, minutes=0, facts=real_facts(), runner=None)
        old = {"cpu_model": "AMD EPYC", "kernel": "6.18.44-fc-v1300"}
        store_run(store, "older", BASE, minutes=1, facts=old)
        store_run(store, "new", BASE, minutes=2, facts=real_facts(), runner="ci-1")
        for baseline in ("build:old", "build:older"):
            result = compare(store, parse_selector(baseline), parse_selector("build:new"), Settings())
            assert result.mismatches == [] and result.rows[0].verdict == "unchanged"
        store_run(store, "other-kernel", BASE, minutes=3, facts={"kernel": "6.1"})
        with pytest.raises(UsageError, match="host a: kernel: 6.1 vs 6.18.44-fc-v1300"):
            compare(store, parse_selector("build:other-kernel"), parse_selector("build:new"), Settings())


def test_differences_of_sides_with_several_runs() -> None:
    a = Fingerprint((("runner", "r1"), ("host a: kernel", "6.1")))
    b = Fingerprint((("runner", "r1"), ("host a: kernel", "6.2")))
    assert differences([a, b], [a]) == ["host a: kernel: 6.1, 6.2 vs 6.1"]
    assert differences([a], [Fingerprint(())]) == []  # nothing recorded on one side


def test_history_series_are_split_by_fingerprint(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs of the same builds on two runners: two series, each judged on its own. A
    20% lower runner is no regression; its own slowdown is, on its series."""
    with Store.open(url) as store:
        store_run(store, "v1", BASE, minutes=0, facts=real_facts(), runner="fast")
        store_run(store, "v1", [v * 0.8 for v in BASE], minutes=1, facts=real_facts(), runner="slow")
        store_run(store, "v2", BASE, minutes=2, facts=real_facts(), runner="fast")
        store_run(store, "v2", [v * 0.6 for v in BASE], minutes=3, facts=real_facts(), runner="slow")
        steps, _, details = history(store, "local", ("receiver_bps",))
    fast, slow = (fingerprint(d).label for d in details[:2])
    assert fast.startswith("fast@") and slow.startswith("slow@")
    assert [(s.series, s.build, s.verdict) for s in steps] == [
        (fast, "v1", ""),
        (fast, "v2", "unchanged"),
        (slow, "v1", ""),
        (slow, "v2", "regressed"),
    ]
    assert main(["report", "local", "--store", url]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(slow)]
    assert rows[1][2] == "v2" and rows[1][-2:] == ["-25.0%", "regressed"]
