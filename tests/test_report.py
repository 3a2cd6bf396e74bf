"""History reports, export, and pytest-benchmark import, on synthetic stores
and a real pytest-benchmark JSON file (tests/data/pytest-benchmark.json)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from synthetic import BASE, store_run  # type: ignore[import-not-found]

from harness.cli import main
from harness.history import history
from harness.store import Store

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'h.db'}"


def test_history_marks_the_change_point(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert "regressed at build v3 (-20.8%)" in out
    assert (tmp_path / "h" / "history.html").read_text().count("<svg") == 1


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
    from harness.store import Measurement
    from harness.summary import conformance_matrix, handshake_table

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
    from harness.store import Measurement
    from harness.summary import interop_matrix

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
