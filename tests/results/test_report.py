"""History reports, export, and pytest-benchmark import, on synthetic stores
and a real pytest-benchmark JSON file (tests/data/pytest-benchmark.json)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.results.compare import Settings, compare, parse_selector
from harness.results.history import history
from harness.results.render.junit import junit_xml
from harness.results.store import Store
from tests.support.paths import DATA
from tests.support.synthetic import BASE, store_run


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'h.db'}"


def test_history_judges_each_build_against_the_one_before(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A column beside the change points (tests/results/test_changes.py): four builds
    are too few for a change point, and the drop shows in the column."""
    store = Store.open(url)
    store_run(store, "v1", BASE, minutes=0)
    store_run(store, "v2", [v * 1.01 for v in BASE], minutes=1)
    store_run(store, "v3", [v * 0.8 for v in BASE], minutes=2)
    store_run(store, "v4", [v * 0.8 for v in BASE[::-1]], minutes=3)
    steps, runs, _ = history(store, "local", ("receiver_bps",))
    store.close()
    assert [(s.build, s.verdict) for s in steps] == [
        ("v1", ""),
        ("v2", "unchanged"),
        ("v3", "regressed"),
        ("v4", "unchanged"),
    ]
    assert len(runs) == 4
    assert main(["report", "local", "--store", url, "--out", str(tmp_path / "h")]) == 0
    out = capsys.readouterr().out
    assert "v3     6  560.8 Mbit/s  -20.8%       regressed" in out
    assert "Change points (`wgharness changes`):\n- none" in out
    assert (tmp_path / "h" / "history.html").read_text().count("<svg") == 1
    assert json.loads((tmp_path / "h" / "history.json").read_text())["change_points"] == []


def test_report_honours_thresholds(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 20% drop is a change point at the default 5% minimum effect, and not one
    when the thresholds file asks for 30% (as `compare --thresholds` would judge it)."""
    store = Store.open(url)
    store_run(store, "v1", BASE, minutes=0)
    store_run(store, "v2", [v * 0.8 for v in BASE], minutes=1)
    store.close()
    assert main(["report", "local", "--store", url]) == 0
    assert "-20.0%       regressed" in capsys.readouterr().out
    loose = tmp_path / "loose.toml"
    loose.write_text("default = 0.05\n[metrics]\nreceiver_bps = 0.3\n")
    assert main(["report", "local", "--store", url, "--thresholds", str(loose)]) == 0
    out = capsys.readouterr().out
    assert "regressed" not in out and "unchanged" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("default = 'five'\n")
    assert main(["report", "local", "--store", url, "--thresholds", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "default" in err[0]


def test_runs_of_lab_keeps_that_lab_and_the_runs_that_measured(url: str) -> None:
    store = Store.open(url)
    old = store_run(store, "v1", BASE, minutes=0)
    failed = store_run(store, "v2", BASE, minutes=1, status="failed")
    store_run(store, "v3", BASE, minutes=2, status="error")
    store_run(store, "v1", BASE, minutes=3, lab="other")
    new = store_run(store, "v4", BASE, minutes=4)
    assert [r.id for r in store.runs_of_lab("local")] == [new, failed, old]
    assert [r.id for r in store.runs_of_lab("local", limit=1)] == [new]
    assert [r.build for r in store.runs_of_lab("local", statuses=("error",))] == ["v3"]
    assert store.runs_of_lab("nothing") == []
    store.close()


def test_junit_of_a_comparison_on_a_synthetic_store(url: str) -> None:
    """One test case per compared metric, a regression as a failure with its
    verdict as type, and each infrastructure line as an error."""
    store = Store.open(url)
    store_run(store, "v1", BASE, minutes=0)
    store_run(store, "v1", BASE, minutes=1, case="udp-1")
    store_run(store, "v2", [v * 0.8 for v in BASE], minutes=2)
    store_run(store, "v2", [v * 1.001 for v in BASE], minutes=3, case="udp-1")
    c = compare(store, parse_selector("build:v1"), parse_selector("build:v2"), Settings())
    store.close()
    root = ET.fromstring(junit_xml(c, ["run abc: the lab did not come up"]))
    cases = {(tc.get("classname"), tc.get("name")): tc for tc in root.iter("testcase")}
    assert root.get("tests") == str(len(cases)) == "3"
    assert root.get("failures") == "1" and root.get("errors") == "1"
    regressed = cases[("throughput.tcp-1", "throughput/tcp-1/receiver_bps")].find("failure")
    assert regressed is not None and regressed.get("type") == "regressed"
    assert cases[("throughput.udp-1", "throughput/udp-1/receiver_bps")].find("failure") is None
    error = cases[("infrastructure", "run abc")].find("error")
    assert error is not None and "did not come up" in (error.get("message") or "")


def test_export_csv_and_parquet(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    run_id = store_run(store, "v1", BASE, minutes=0)
    store.close()
    assert main(["results", "export", "--out", str(tmp_path / "m.csv"), "--store", url]) == 0
    assert main(["results", "export", run_id[:6], "--out", str(tmp_path / "m.parquet"), "--store", url]) == 0
    csv = pd.read_csv(tmp_path / "m.csv")
    parquet = pd.read_parquet(tmp_path / "m.parquet")
    assert len(csv) == len(parquet) == len(BASE)
    assert list(parquet["value"]) == BASE and set(csv["impl_a"]) == {"wireguard-go"}


def test_pytest_benchmark_json_imports_and_compares(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = DATA / "pytest-benchmark.json"
    assert main(["results", "import-benchmark", str(src), "--build", "a", "--store", url]) == 0
    assert main(["results", "import-benchmark", str(src), "--build", "b", "--store", url]) == 0
    capsys.readouterr()
    store = Store.open(url)
    run = store.get_run("latest")
    store.close()
    cases = {m.case for m in run.measurements}
    # the recorded JSON names the file where it was then (tests/ before the subfolders)
    assert cases == {"tests/test_parse_bench.py::test_bench_parse_wg_dump_10k_peers",
                     "tests/test_parse_bench.py::test_bench_parse_iperf_json_tcp4"}  # fmt: skip
    assert {m.metric for m in run.measurements} == {"time_s"} and len(run.measurements) == 7 + 13
    # The same file against itself: identical samples, nothing changed.
    assert main(["compare", "build:a", "build:b", "--metric", "time_s", "--store", url]) == 0
    assert "verdict: OK" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"benchmarks": [{"name": "x"}]}')
    assert main(["results", "import-benchmark", str(bad), "--store", url]) == 2
    assert "not pytest-benchmark JSON" in capsys.readouterr().err


def test_conformance_matrix_and_handshake_table() -> None:
    from harness.results.records import Measurement
    from harness.results.render.summary import conformance_matrix, handshake_table

    def verdict(probe: str, impl: str, ok: bool) -> Measurement:
        return Measurement("conformance", probe, 1, "conformant", 1.0 if ok else 0.0, "bool", "higher",
                           params={"impl": impl})  # fmt: skip

    ms = [verdict("bad-mac1", "go 1", True), verdict("mtu", "go 1", True), verdict("bad-mac1", "py 2", False)]
    ms.append(
        Measurement("conformance", "peer-restart", 1, "conformant", 0.0, "bool", "higher",
                    params={"impl": "py 2", "measured": "3.00 s"})
    )  # fmt: skip
    matrix = conformance_matrix(ms)
    assert matrix is not None
    lines = matrix.splitlines()
    assert lines[0].split() == ["probe", "go", "1", "py", "2"]
    assert lines[2].split() == ["bad-mac1", "pass", "FAIL"] and lines[3].split() == ["mtu", "pass", "-"]
    assert lines[4].split() == ["peer-restart", "-", "FAIL", "(3.00", "s)"]
    hs = [
        Measurement("handshake", "latency", 1, "p50_ms", 0.5, "ms", "lower", build="go"),
        Measurement("handshake", "latency", 2, "p50_ms", 0.7, "ms", "lower", build="go"),
        Measurement(
            "handshake", "responder-rate", 1, "handshakes_per_s", 4000.0, "1/s", "higher", build="py"
        ),
    ]
    text = handshake_table(hs)
    assert text is not None and "latency p50 (ms)" in text and "0.60" in text and "4,000.00" in text
    assert handshake_table(ms) is None and conformance_matrix(hs) is None


def test_interop_matrix_of_a_variant_run() -> None:
    from harness.results.records import Measurement
    from harness.results.render.summary import interop_matrix

    def m(build: str, suite: str, metric: str, value: float, a: str) -> Measurement:
        return Measurement(suite, "c", 1, metric, value, "", "higher", build=build,
                           params={"impl_a": f"{a} 1", "impl_k": "kernel 1.0"})  # fmt: skip

    ms = [
        m("kp", "throughput", "receiver_bps", 4e8, "pyref"),
        m("kp", "conformance", "conformant", 1.0, "pyref"),
        m("kg", "throughput", "receiver_bps", 0.0, "wireguard-go"),
        m("kg", "conformance", "conformant", 1.0, "wireguard-go"),
        m("kg", "conformance", "conformant", 0.0, "wireguard-go"),
    ]
    text = interop_matrix(ms)
    assert text is not None
    lines = text.splitlines()
    assert lines[0].split() == ["interop", "throughput", "conformance"]
    assert lines[2].split()[-2:] == ["ok", "ok"] and "a=pyref ↔ k=kernel" in lines[2]
    assert lines[3].split()[-2:] == ["FAIL", "FAIL"]
    assert interop_matrix(ms[:2]) is None  # one pairing: nothing to tabulate
