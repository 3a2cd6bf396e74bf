"""Comparison: statistics on synthetic data, verdicts, selectors, and the
`compare` command on a store of synthetic runs."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.cli import main
from harness.errors import LabError, UsageError
from harness.results.compare import Settings, compare, judge, load_thresholds, parse_selector, select_runs
from harness.results.records import HostRecord, ImplRecord, Measurement, MetricKind, Verdict, impls_text
from harness.results.stats import bootstrap_change_ci, mann_whitney_p, min_p_value, min_samples_for, summarize
from harness.results.store import Store
from tests.support.synthetic import BASE, store_run


def test_exact_test_floor() -> None:
    # 2 / C(6, 3) = 0.1: three repetitions a side can never be significant at 5%.
    assert min_p_value(3, 3) == pytest.approx(0.1)
    assert min_samples_for(0.05) == 4 and min_samples_for(0.01) == 5
    assert mann_whitney_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert mann_whitney_p([1.0] * 5, [1.0] * 5) == 1.0 and mann_whitney_p([], [1.0]) == 1.0


def test_summary_and_interval() -> None:
    s = summarize([1, 2, 3, 4, 100])
    assert (s.n, s.median, s.iqr) == (5, 3, 2)
    lo, hi = bootstrap_change_ci([100, 101, 99, 100, 102], [90, 91, 89, 90, 92])
    assert -0.13 < lo <= -0.10 < hi < -0.07
    assert bootstrap_change_ci([1, 2], [1, 2]) == bootstrap_change_ci([1, 2], [1, 2])  # seeded


@pytest.mark.parametrize(
    ("cand", "direction", "verdict"),
    [
        ([v * 0.85 for v in BASE], "higher", "regressed"),
        ([v * 1.15 for v in BASE], "higher", "improved"),
        ([v * 0.85 for v in BASE], "lower", "improved"),  # latency-like: lower is better
        ([v * 1.01 for v in BASE], "higher", "unchanged"),  # significant but below 5%
        (BASE[::-1], "higher", "unchanged"),
        ([0.0, 0.0, 0.0, 0.0], "higher", "failed"),
        ([], "higher", "missing"),
        ([v * 0.5 for v in BASE[:3]], "higher", "inconclusive"),  # 3 samples cannot be significant
    ],
)
def test_verdicts(cand: list[float], direction: str, verdict: str) -> None:
    got = judge(BASE, cand, direction, "bit/s", 0.05, 0.05)
    assert got[0] == verdict, got[1]


def test_wide_spread_is_inconclusive_not_unchanged() -> None:
    noisy = [700e6, 400e6, 900e6, 500e6, 800e6, 650e6]
    verdict, reason, *_ = judge(BASE, noisy, "higher", "bit/s", 0.05, 0.05)
    assert verdict == "inconclusive" and "repeat more" in reason


def _aa_rates(n: int, trials: int, shift: float, cv: float = 0.06) -> dict[str, float]:
    rng = random.Random(1234)
    counts: dict[str, int] = {}
    for _ in range(trials):
        a = [rng.gauss(700e6, 700e6 * cv) for _ in range(n)]
        b = [rng.gauss(700e6 * (1 + shift), 700e6 * cv) for _ in range(n)]
        v = judge(a, b, "higher", "bit/s", 0.05, 0.05)[0]
        counts[v] = counts.get(v, 0) + 1
    return {k: c / trials for k, c in counts.items()}


def test_aa_rarely_cries_wolf_and_ab_catches_ten_percent() -> None:
    # Noise like this machine's (6% coefficient of variation), 8 repetitions a side.
    aa = _aa_rates(8, 300, 0.0)
    assert aa.get("regressed", 0) + aa.get("improved", 0) < 0.03, aa
    ab = _aa_rates(8, 300, -0.10)
    assert ab.get("regressed", 0) > 0.5, ab
    assert ab.get("improved", 0) == 0, ab


def test_selectors() -> None:
    assert parse_selector("latest").kind == "latest" and parse_selector("latest~2").values == ("2",)
    assert parse_selector("build:nightly-1").values == ("nightly-1",)
    r = parse_selector("range:2026-11-01..")
    assert r.start == datetime(2026, 11, 1, tzinfo=UTC) and r.end is None
    assert parse_selector("abc123,def4").values == ("abc123", "def4")
    for bad in ("build:", "latest~x", "range:2026", "range:yesterday..", "not-a-run!"):
        with pytest.raises(UsageError):
            parse_selector(bad)


def test_thresholds_file(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text("default = 0.1\n[metrics]\nreceiver_bps = 0.03\n")
    assert load_thresholds(str(f)) == (0.1, {"receiver_bps": 0.03})
    f.write_text('default = "big"\n')
    with pytest.raises(LabError, match="default: must be a fraction"):
        load_thresholds(str(f))


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    yield s
    s.close()


def test_compare_builds_end_to_end(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_run(store, "v1", BASE[:3], minutes=0)
    store_run(store, "v1", BASE[3:], minutes=1)
    store_run(store, "v2", [v * 0.85 for v in BASE], minutes=2)
    store_run(store, "v2", [], minutes=3, status="error")
    result = compare(store, parse_selector("build:v1"), parse_selector("build:v2"), Settings())
    assert [r.verdict for r in result.rows] == ["regressed"]
    assert result.rows[0].base.n == 6 and math.isclose(result.rows[0].change, -0.15, rel_tol=1e-6)
    assert len(result.infra) == 1 and "error" in result.infra[0]
    assert result.exit_status() == 1
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["compare", "build:v1", "build:v2", "--store", url]) == 1
    out = capsys.readouterr().out
    assert "verdict: REGRESSION" in out and "throughput/tcp-1/receiver_bps" in out and "-15.0%" in out
    # latest~1 is the run before the latest one (the error run is latest); the
    # first v1 run alone has 3 samples: too few to call anything.
    assert main(["compare", "latest~3", "latest~1", "--store", url]) == 0
    assert "inconclusive" in capsys.readouterr().out
    assert main(["compare", "build:v1", "build:v1", "--store", url, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["metrics"][0]["verdict"] == "unchanged" and doc["exit_status"] == 0
    # Only infrastructure failures on one side: not a regression, exit 3.
    assert main(["compare", "build:v1", "build:nope", "--store", url]) == 3


def test_missing_case_and_failed_run_fail(store: Store) -> None:
    store_run(store, "v1", BASE, minutes=0)
    store_run(store, "v1", BASE, minutes=1, case="tcp-4")
    store_run(store, "v2", BASE, minutes=2, status="failed")
    result = compare(store, parse_selector("build:v1"), parse_selector("build:v2"), Settings())
    verdicts = {r.case: r.verdict for r in result.rows}
    assert verdicts == {"tcp-1": "unchanged", "tcp-4": "missing"}
    assert result.failed_runs and result.exit_status() == 1


def test_metadata_mismatch_is_refused_unless_allowed(store: Store) -> None:
    store_run(store, "v1", BASE, minutes=0)
    store_run(store, "v2", BASE, minutes=1, cpu="Intel Xeon")
    with pytest.raises(UsageError, match="host a: CPU model: AMD EPYC vs Intel Xeon"):
        compare(store, parse_selector("build:v1"), parse_selector("build:v2"), Settings())
    result = compare(
        store, parse_selector("build:v1"), parse_selector("build:v2"), Settings(allow_mismatch=True)
    )
    assert result.mismatches and result.rows[0].verdict == "unchanged"


TCG = {"virtualization": "TCG (QEMU, -cpu qemu64)", "extra": {"accelerator": "tcg", "qemu_cpu": "qemu64"}}
KVM = {"virtualization": "KVM (QEMU, -cpu qemu64)", "extra": {"accelerator": "kvm", "qemu_cpu": "qemu64"}}


def test_runs_on_another_accelerator_or_virtualization_are_refused(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same CPU model and kernel, one run under TCG and one under KVM: `compare`
    refuses (exit 2, one line naming both) unless --allow-mismatch."""
    store_run(store, "v1", BASE, minutes=0, facts=TCG)
    store_run(store, "v2", BASE, minutes=1, facts=KVM)
    store_run(store, "v3", BASE, minutes=2, facts={"virtualization": "bare metal"})
    store_run(store, "v4", BASE, minutes=3, facts={"virtualization": "KVM"})
    store.close()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    code = main(["compare", "build:v1", "build:v2", "--store", url])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "host a: accelerator: tcg vs kvm" in err
    assert "host a: virtualization: TCG (QEMU, -cpu qemu64) vs KVM (QEMU, -cpu qemu64)" in err
    assert "--allow-mismatch" in err
    assert main(["compare", "build:v3", "build:v4", "--store", url]) == 2
    assert "host a: virtualization: bare metal vs KVM" in capsys.readouterr().err
    assert main(["compare", "build:v1", "build:v2", "--store", url, "--allow-mismatch"]) == 0
    assert "host a: accelerator" in capsys.readouterr().out


def test_runs_stored_before_virtualization_was_recorded_still_compare(store: Store) -> None:
    store_run(store, "old", BASE, minutes=0)
    store_run(store, "new", BASE, minutes=1, facts={"virtualization": "bare metal"})
    result = compare(store, parse_selector("build:old"), parse_selector("build:new"), Settings())
    assert result.mismatches == [] and result.rows[0].verdict == "unchanged"


def test_zero_throughput_fails_by_the_metric_kind() -> None:
    """Zero is a failure for a throughput (bit/s, higher is better), a value like any other else."""
    assert MetricKind.of("bit/s", "higher") == MetricKind.THROUGHPUT
    assert MetricKind.of("bit/s", "none") == MetricKind.MEASURE
    assert MetricKind.of("bool", "higher") == MetricKind.OUTCOME
    assert Measurement("t", "c", 1, "receiver_bps", 0.0, "bit/s", "higher").kind == MetricKind.THROUGHPUT
    zero = [0.0] * 6
    assert judge(BASE, zero, "higher", "bit/s", 0.05, 0.05)[0] is Verdict.FAILED
    assert judge(BASE, zero, "higher", "1/s", 0.05, 0.05)[0] is Verdict.REGRESSED
    assert judge(BASE, zero, "lower", "bit/s", 0.05, 0.05)[0] is Verdict.IMPROVED


def test_verdicts_are_typed_and_print_as_their_words() -> None:
    got = judge(BASE, [v * 0.85 for v in BASE], "higher", "bit/s", 0.05, 0.05)[0]
    assert got is Verdict.REGRESSED and f"{got}" == "regressed" and json.dumps(got) == '"regressed"'
    assert [v for v in Verdict if v.failing] == [Verdict.REGRESSED, Verdict.FAILED, Verdict.MISSING]


def _two_host_run(store: Store, build: str, minutes: int, a: str, b: str, values: list[float]) -> None:
    run_id = store_run(store, build, values, minutes=minutes)
    with store.engine.begin() as conn:  # the synthetic run's one host, replaced by two
        conn.execute(sa.text("DELETE FROM run_hosts WHERE run_id = :r"), {"r": run_id})
    facts = {"cpu_model": "AMD EPYC", "kernel": "6.1"}
    store.add_hosts(run_id, [HostRecord("a", a, "1.0", None, facts), HostRecord("b", b, None, None, facts)])


def test_impl_and_host_filters_use_the_impl_records(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--impl keeps the runs where a host ran it; --host narrows that to one host."""
    _two_host_run(store, "v1", 0, "wireguard-go", "kernel", BASE)
    _two_host_run(store, "v1", 1, "kernel", "wireguard-go", [v * 0.8 for v in BASE])
    _two_host_run(store, "v2", 2, "wireguard-go", "pyref", BASE)
    runs = store.list_runs()
    assert impls_text(runs[0].impls) == "a=wireguard-go 1.0, b=pyref"
    assert runs[1].impls == (ImplRecord("a", "kernel", "1.0"), ImplRecord("b", "wireguard-go"))

    def chosen(**kw: str) -> list[str]:
        return [r.id for r in select_runs(store, parse_selector("build:v1"), Settings(**kw))]  # type: ignore[arg-type]

    assert chosen() == chosen(impl="wireguard-go") == [runs[1].id, runs[2].id]
    assert chosen(impl="wireguard-go", host="a") == [runs[2].id]
    assert chosen(impl="wireguard-go", host="b") == chosen(impl="kernel", host="a") == [runs[1].id]
    assert chosen(impl="pyref") == chosen(impl="wireguard-go 1.0") == chosen(impl="kernel", host="c") == []
    store.close()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert (
        main(["compare", "build:v1", "build:v2", "--store", url, "--impl", "wireguard-go", "--host", "a"])
        == 0
    )
    out = capsys.readouterr().out
    assert f"baseline  build:v1: 1 run(s) {runs[2].id}" in out and "unchanged" in out
    assert main(["compare", "build:v1", "build:v2", "--store", url, "--impl", "kernel", "--host", "a"]) == 3
    assert "NOTHING TO COMPARE - no usable candidate run" in capsys.readouterr().out
