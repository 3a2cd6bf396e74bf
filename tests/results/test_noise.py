"""`wgharness noise` on a synthetic store whose spreads are checked by hand, the
starting rounds it suggests, and its one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.cli import main
from harness.results.noise import AA_ROUNDS, pooled_cv, spreads, starting_rounds
from harness.results.sequential import DEFAULT_MAX_ROUNDS
from harness.results.store import Store
from tests.support.synthetic import store_run

M = 1e6


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with A/A runs on two runners:

    ci-1, lab local: v1 medians 100, 110, 90 (mean 100, squared deviations
    0 + 0.01 + 0.01), v2 one run (no A/A pair), v3 95, 105 (0.0025 + 0.0025):
    pooled CV sqrt(0.025 / (2 + 1)) = 9.129%, n 5, 2 builds;
    ci-2, lab local: v1 200, 204, 196, 200: sqrt(0.0008 / 3) = 1.633%, n 4;
    and runs left out: an infrastructure failure, another lab (filtered)."""
    u = f"sqlite:///{tmp_path / 'n.db'}"
    with Store.open(u) as store:
        for minutes, (build, value) in enumerate([("v1", 100), ("v1", 110), ("v1", 90), ("v2", 120),
                                                   ("v3", 95), ("v3", 105)]):  # fmt: skip
            # three repetitions around the run's median: the median is what counts
            store_run(store, build, [value * M - 5, value * M, value * M + 9], minutes=minutes, runner="ci-1")
        for minutes, value in enumerate([200, 204, 196, 200], start=10):
            store_run(store, "v1", [value * M], minutes=minutes, runner="ci-2")
        store_run(store, "v1", [1.0], minutes=20, runner="ci-2", status="error")
        store_run(store, "v1", [50 * M], minutes=21, runner="ci-2", lab="other")
        store_run(store, "v1", [60 * M], minutes=22, runner="ci-2", lab="other")
    return u


def test_spreads_by_hand(url: str) -> None:
    with Store.open(url) as store:
        found = spreads(store, lab="local")
    one, two = sorted(found, key=lambda s: s.runner)
    assert (one.runner, one.lab, one.key, one.unit, one.n, one.builds) == (
        "ci-1", "local", "throughput/tcp-1/receiver_bps", "bit/s", 5, 2,
    )  # fmt: skip
    assert one.cv == pytest.approx(math.sqrt(0.025 / 3))  # 9.129%
    assert one.rounds == 35  # 27 at 7%, 38 at 10%: 27 + 11 * 2.129 / 3 = 34.8, rounded up
    assert (two.runner, two.n, two.builds) == ("ci-2", 4, 1)
    assert two.cv == pytest.approx(math.sqrt(0.0008 / 3))  # 1.633%
    assert two.rounds == 11  # 9 at 1%, 12 at 2%: 9 + 3 * 0.633 = 10.9
    assert one.series.startswith("ci-1@") and two.series.startswith("ci-2@")


def test_noise_command_filters_and_formats(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["noise", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "9.1%" in out and "1.6%" in out and "other" in out and "start rounds" in out
    assert main(["noise", "--store", url, "--lab", "local", "--runner", "ci-2", "--format", "json"]) == 0
    (only,) = json.loads(capsys.readouterr().out)["spreads"]
    assert (only["runner"], only["n"], only["rounds"]) == ("ci-2", 4, 11)
    assert main(["noise", "--store", url, "--runner", "ci-1", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| local | ci-1@" in out and "| 9.1% | 35 |" in out
    assert main(["noise", "--store", url, "--metric", "sender_bps"]) == 0
    assert capsys.readouterr().out.startswith("no A/A data")


def test_noise_of_an_empty_store_and_of_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store.open(empty).close()
    assert main(["noise", "--store", empty]) == 0
    assert capsys.readouterr().out == f"no runs stored in {empty}\n"
    missing = tmp_path / "nowhere" / "x.db"
    assert main(["noise", "--store", f"sqlite:///{missing}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and f"no store at {missing}" in err
    assert not missing.parent.exists()  # a read-only command creates nothing
    assert main(["noise", "--store", "nonsense"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as info:
        main(["noise", "--format", "xml"])
    assert info.value.code == 2


def test_starting_rounds_follow_the_measured_table() -> None:
    assert [starting_rounds(cv) for cv, _ in AA_ROUNDS] == [r for _, r in AA_ROUNDS]
    assert starting_rounds(0.0) == starting_rounds(0.005) == AA_ROUNDS[0][1]
    assert starting_rounds(0.04) == 18  # halfway from 15 (3%) to 21 (5%)
    assert starting_rounds(0.2) == DEFAULT_MAX_ROUNDS  # beyond the measured range: the cap
    rounds = [starting_rounds(cv / 1000) for cv in range(0, 200)]
    assert rounds == sorted(rounds)
    with pytest.raises(ValueError):
        starting_rounds(math.nan)
    assert math.isnan(pooled_cv([[1.0], []])) and math.isnan(pooled_cv([[0.0, 0.0]]))
    assert pooled_cv([[90.0, 110.0]]) == pytest.approx(math.sqrt(0.02))
