"""The command line without a lab: usage errors are one line and exit 2,
store commands read what is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.results.records import Measurement, RunRecord
from harness.results.store import Store
from tests.support.paths import ROOT


def one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out, err = capsys.readouterr()
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run"], "the following arguments are required: lab"),
        (["run", "labs/local.toml", "--repeat", "0"], "must be at least 1"),
        (["run", "labs/local.toml", "--duration", "ten"], "expected a whole number"),
        (["frobnicate"], "invalid choice"),
        (["run", "no/such/lab.toml"], "no/such/lab.toml: cannot read"),
        (["run", "labs/local.toml", "--suite", "handshake"], "--suite: 'handshake' is not a suite"),
        (["results", "list", "--store", "nonsense"], "store nonsense: not a database URL"),
        (["lab", "check", "README.md"], "README.md: invalid TOML"),
        (["run", "labs/local.toml", "--runner", "ci 1"], "a runner is a name without spaces"),
        (
            [
                "nightly",
                "labs/local.toml",
                "--build",
                "b",
                "--baseline",
                "latest",
                "--out",
                "o",
                "--runner",
                "",
            ],
            "a runner is a name without spaces",
        ),
        (["repro", "scenarios/peer-restart.toml", "--runner", " "], "a runner is a name without spaces"),
    ],
)
def test_usage_errors(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert words in one_line_error(capsys, code)


def test_lab_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "check", str(ROOT / "labs" / "local.toml")]) == 0
    assert "lab local is valid" in capsys.readouterr().out


def test_results_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert "no store at" in one_line_error(capsys, main(["results", "list", "--store", url]))
    store = Store.open(url)
    assert main(["results", "list", "--store", url]) == 0
    assert "no runs stored" in capsys.readouterr().out
    store.begin_run(
        RunRecord("0123456789ab", datetime.now(UTC), "local", "l.toml", "0" * 64, "", "nightly-7",
                  "0.1.0", "wgharness run l.toml", 1, "elsewhere")
    )  # fmt: skip
    store.add_measurements(
        "0123456789ab",
        [
            Measurement("throughput", "tcp-1", r, "receiver_bps", v, "bit/s", "higher")
            for r, v in ((1, 7e8), (2, 9e8))
        ],
    )
    store.add_artifact("0123456789ab", "note.txt", b"hello")
    store.finish_run("0123456789ab", "failed", "zero throughput")
    store.close()
    assert main(["results", "list", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "0123456789ab" in out and "failed" in out and "nightly-7" in out
    assert main(["results", "show", "0123", "--store", url]) == 0
    out = capsys.readouterr().out
    # Median of 700 and 900 Mbit/s, and the range.
    assert "800.0" in out and "700.0-900.0" in out and "error: zero throughput" in out
    assert main(["results", "show", "latest", "--store", url, "--artifact", "note.txt"]) == 0
    assert capsys.readouterr().out == "hello"
    assert "no run 'ffff'" in one_line_error(capsys, main(["results", "show", "ffff", "--store", url]))


def test_summary_and_results_show_say_what_each_host_ran_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A vm lab's figures came from TCG: the summary names the accelerator, the -cpu
    model, the CPU and cores per host, and says TCG figures are not hardware's."""
    from harness.results.records import HostRecord
    from harness.results.render.summary import run_summary

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store.open(url)
    store.begin_run(
        RunRecord("0123456789ab", datetime.now(UTC), "vm-kernel", "l.toml", "0" * 64, "", None,
                  "0.1.0", "wgharness run l.toml", 1, "here")
    )  # fmt: skip
    vm = {"cpu_model": "QEMU Virtual CPU version 2.5+", "cores": 2, "kernel": "6.1.0-28-amd64",
          "virtualization": "TCG (QEMU, -cpu qemu64)", "extra": {"accelerator": "tcg", "qemu_cpu": "qemu64"}}  # fmt: skip
    here = {"cpu_model": "AMD EPYC", "cores": 2, "kernel": "6.18", "virtualization": "KVM"}
    old = {"cpu_model": "AMD EPYC", "cores": 2, "extra": {"accelerator": "tcg", "qemu_cpu": "max"}}
    store.add_hosts("0123456789ab", [
        HostRecord("guest", "kernel", "6.1", None, vm),
        HostRecord("ref", "pyref", "0.1", None, here),
        HostRecord("older", "kernel", "6.1", None, old),
        HostRecord("unknown", "pyref", "0.1", None, {}),
    ])  # fmt: skip
    store.add_measurements(
        "0123456789ab", [Measurement("throughput", "tcp-1", 1, "receiver_bps", 1.5e8, "bit/s", "higher")]
    )
    store.finish_run("0123456789ab", "passed", None)
    summary = run_summary(store.get_run("0123456789ab"))
    store.close()
    lines = summary.splitlines()
    assert lines[3].split() == ["host", "runs", "on", "CPU", "cores"]
    assert " ".join(lines[5].split()) == "guest TCG (QEMU, -cpu qemu64) QEMU Virtual CPU version 2.5+ 2"
    assert (
        " ".join(lines[6].split()) == "older TCG (QEMU, -cpu max) AMD EPYC 2"
    )  # stored before "virtualization"
    assert " ".join(lines[7].split()) == "ref KVM AMD EPYC 2"
    assert " ".join(lines[8].split()) == "unknown not recorded ? ?"
    assert lines[9].startswith("note: guest, older ran under TCG, QEMU's software emulation of the CPU")
    assert main(["results", "show", "0123", "--store", url]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(summary) and "150.0" in shown
    assert "host guest: kernel 6.1 build -; ?, kernel 6.1.0-28-amd64" in shown
