"""Synthetic stored runs for comparison and report tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from harness.results.records import HostRecord, Measurement, RunRecord, new_run_id
from harness.results.store import Store

BASE = [700e6, 710e6, 690e6, 705e6, 695e6, 702e6]


def store_run(store: Store, build: str | None, values: list[float], *, minutes: int, status: str = "passed",
               cpu: str = "AMD EPYC", case: str = "tcp-1", facts: dict[str, Any] | None = None,
               lab: str = "local", runner: str | None = None,
               variants: dict[str, list[float]] | None = None) -> str:  # fmt: skip
    """A run of one host ``a``; ``facts`` are added to its facts (virtualization, extra...);
    ``runner`` None: a run stored before runners were; ``variants``: values measured with
    their own build label (a run of interleaved variants), by label."""
    run_id = new_run_id()
    store.begin_run(
        RunRecord(run_id, datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minutes), lab, "l.toml",
                  "ab" * 32, "", build, "0.1.0", "wgharness run", 1, "ci", runner)
    )  # fmt: skip
    store.add_hosts(
        run_id,
        [
            HostRecord(
                "a", "wireguard-go", "0.0.1", build, {"cpu_model": cpu, "kernel": "6.1", **(facts or {})}
            )
        ],
    )
    store.add_measurements(
        run_id,
        [
            Measurement("throughput", case, i + 1, "receiver_bps", v, "bit/s", "higher")
            for i, v in enumerate(values)
        ]
        + [
            Measurement("throughput", case, i + 1, "receiver_bps", v, "bit/s", "higher", build=label)
            for label, vs in (variants or {}).items()
            for i, v in enumerate(vs)
        ],
    )
    store.finish_run(run_id, status, "boom" if status == "error" else None)
    return run_id
