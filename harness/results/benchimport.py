"""Import pytest-benchmark JSON (``pytest --benchmark-json=FILE``, best with
``--benchmark-save-data``) as a stored run, so microbenchmarks compare like
lab runs: one case per benchmark, metric ``time_s`` (lower is better), the
timed rounds as samples."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import LabError
from harness.results.records import Direction, HostRecord, Measurement, RunRecord, RunStatus, new_run_id
from harness.results.store import Store
from harness.validate import read_file

MAX_SAMPLES = 500
MAX_BENCHMARK_FILE = 256 * 1024 * 1024
"""pytest-benchmark keeps every round's time: its files can be large, not endless."""


def _samples(stats: dict[str, Any]) -> list[float]:
    data = stats.get("data")
    if isinstance(data, list) and data:
        step = max(1, len(data) // MAX_SAMPLES)  # evenly spaced rounds, at most MAX_SAMPLES
        return [float(x) for x in data[::step][:MAX_SAMPLES]]
    return [float(stats["median"])]


def import_pytest_benchmark(store: Store, path: str, build: str | None = None) -> str:
    raw = read_file(path, MAX_BENCHMARK_FILE)
    try:
        doc = json.loads(raw)
        benchmarks = doc["benchmarks"]
        machine = doc.get("machine_info", {})
        measurements = []
        for i, bench in enumerate(benchmarks):
            name = bench.get("fullname") or bench["name"]
            params = {"group": bench.get("group") or "", "rounds": bench["stats"].get("rounds", 0)}
            for rep, value in enumerate(_samples(bench["stats"]), start=1):
                measurements.append(
                    Measurement("microbench", name, rep, "time_s", value, "s", Direction.LOWER, name, params)
                )
            if not isinstance(name, str):
                raise TypeError(f"benchmarks[{i}].fullname")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise LabError(path, "", f"not pytest-benchmark JSON ({type(exc).__name__}: {exc})") from None
    when = doc.get("datetime")
    try:
        started = datetime.fromisoformat(when) if isinstance(when, str) else datetime.now(UTC)
    except ValueError:
        started = datetime.now(UTC)
    started = started if started.tzinfo else started.replace(tzinfo=UTC)
    run_id = new_run_id()
    store.begin_run(
        RunRecord(
            id=run_id,
            started_at=started,
            lab_name="pytest-benchmark",
            lab_path=path,
            lab_sha256=hashlib.sha256(raw).hexdigest(),
            lab_text="",
            build=build,
            harness_version=__version__,
            command=f"wgharness results import-benchmark {path}",
            pid=os.getpid(),
            hostname=socket.gethostname(),
        )  # fmt: skip
    )
    facts = {
        "cpu_model": (machine.get("cpu") or {}).get("brand_raw", ""),
        "kernel": machine.get("release", ""),
        "hostname": machine.get("node", ""),
        "python": machine.get("python_version", ""),
    }
    store.add_hosts(run_id, [HostRecord("machine", "pytest-benchmark", doc.get("version"), build, facts)])
    store.add_measurements(run_id, measurements)
    store.add_artifact(run_id, Path(path).name, raw, "application/json")
    store.finish_run(run_id, RunStatus.PASSED)
    return run_id
