"""`wgharness changes` and `report` on stores, SQLite and PostgreSQL: series read
from the store (split by fingerprint, grouped by build), the change points listed,
the exit status of a new regression, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.results.changes import change_points
from harness.results.history import lab_history, series_of_lab
from harness.results.store import Store
from tests.support.synthetic import store_run


def _store_history(store: Store, n: int, step_at: int | None, runner: str = "ci", by: float = -0.10,
                   start: int = 0) -> None:  # fmt: skip
    """``n`` builds of 3 samples each (2% noise), ``by`` lower from build ``step_at`` (0-based) on."""
    rng = np.random.default_rng(len(runner) + n)
    for i in range(n):
        level = 700e6 * (1 + by if step_at is not None and i >= step_at else 1)
        values = [float(v) for v in level * np.exp(rng.normal(0, 0.02, 3))]
        store_run(store, f"build-{i + 1:02d}", values, minutes=start + i, runner=runner)


def test_series_are_split_by_fingerprint_and_grouped_by_build(store_url: str) -> None:
    """A series per runner; a run without a build label is a point of its own; a run
    of variants adds each measurement to the point of its own build label."""
    with Store.open(store_url) as store:
        _store_history(store, 12, 6, runner="ci-1")
        _store_history(store, 12, None, runner="ci-2", start=100)
        alone = store_run(store, None, [7e8, 7.1e8], minutes=200, runner="ci-2")
        variants = store_run(store, "build-01", [], minutes=201, runner="ci-2", variants={
            "build-13": [6e8, 6.1e8], "build-14": [6.5e8],
        })  # fmt: skip
        series = series_of_lab(store, "local", ("receiver_bps",))
    assert [s.fingerprint.split("@")[0] for s in series] == ["ci-1", "ci-2"]
    one, two = series
    assert [p.label for p in one.points] == [f"build-{i:02d}" for i in range(1, 13)]
    assert all(len(p.samples) == 3 and len(p.run_ids) == 1 for p in one.points)
    assert [p.label for p in two.points] == [
        *(f"build-{i:02d}" for i in range(1, 13)),
        f"run {alone}",
        "build-13",
        "build-14",
    ]
    assert variants not in two.points[0].run_ids and two.points[-2].run_ids == (variants,)
    assert two.points[-2].samples == (6e8, 6.1e8)
    assert [cp.index for cp in change_points(one)] == [6] and change_points(two) == []


def test_changes_command_on_a_store(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(store_url) as store:
        _store_history(store, 30, 20)
    assert main(["changes", "local", "--store", store_url]) == 0  # found long ago: not new
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("ci@"))
    assert "build-20" in line and "build-21" in line and "regressed" in line and "NEW" not in line
    assert "verdict: OK - 1 change point(s), none new and regressed" in out
    assert main(["changes", "local", "--store", store_url, "--json", "--out", str(tmp_path / "c")]) == 0
    doc = json.loads(capsys.readouterr().out)
    (cp,) = doc["change_points"]
    assert (cp["last_good"], cp["first_bad"], cp["verdict"], cp["new"]) == (
        "build-20",
        "build-21",
        "regressed",
        False,
    )
    assert cp["low"] < cp["change"] < cp["high"] < 0 and len(doc["series"][0]["points"]) == 30
    assert json.loads((tmp_path / "c" / "changes.json").read_text()) == doc
    assert "| build-20 | build-21 |" in (tmp_path / "c" / "changes.md").read_text()
    assert main(["report", "local", "--store", store_url, "--out", str(tmp_path / "r")]) == 0
    md = capsys.readouterr().out
    assert "regressed from build build-20 to build build-21" in md
    assert "build-21  3  " in md and "<- change point" in md
    report = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [c["first_bad"] for c in report["change_points"]] == ["build-21"] and len(report["steps"]) == 30


def test_changes_exits_1_on_a_new_regression_only(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Builds 15% slower, one a night after 26 flat ones: on the night the step is
    found it is new (exit 1, naming it); a night later it is not (exit 0)."""
    rng = np.random.default_rng(3)
    with Store.open(store_url) as store:
        _store_history(store, 26, None)
        for n in range(27, 37):
            values = [float(v) for v in 595e6 * np.exp(rng.normal(0, 0.02, 3))]
            store_run(store, f"build-{n}", values, minutes=n, runner="ci")
            if lab_history(store, "local", ("receiver_bps",)).changes:
                break
        (cp,) = lab_history(store, "local", ("receiver_bps",)).changes
    assert cp.new and cp.alarm and cp.first_bad.label == "build-27"
    assert main(["changes", "local", "--store", store_url]) == 1
    out = capsys.readouterr().out
    assert "NEW" in out and "verdict: REGRESSION - new change point: throughput/tcp-1/receiver_bps" in out
    assert "from build build-27 on ci@" in out
    assert main(["report", "local", "--store", store_url]) == 0  # report never fails
    assert "NEW" in capsys.readouterr().out
    with Store.open(store_url) as store:
        store_run(store, "build-99", [595e6, 600e6, 590e6], minutes=99, runner="ci")
    assert main(["changes", "local", "--store", store_url]) == 0
    assert "NEW" not in capsys.readouterr().out


def test_changes_exits_0_on_a_new_improvement(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(store_url) as store:
        _store_history(store, 26, 20, by=0.15)
    assert main(["changes", "local", "--store", store_url]) == 0
    assert "improved" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["changes"], "the following arguments are required: LAB_NAME"),
        (["changes", "local", "--bogus"], "unrecognized arguments: --bogus"),
        (["changes", "nolab"], "no runs of lab 'nolab'"),
        (["changes", "local", "--metric", "nothing"], "no runs of lab 'local' with these metrics"),
        (["changes", "local", "--store", "sqlite:////nonexistent/x.db"], "no store at"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    with Store.open(url) as store:
        _store_history(store, 3, None)
    try:
        status = main(argv if "--store" in argv else [*argv, "--store", url])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0]
