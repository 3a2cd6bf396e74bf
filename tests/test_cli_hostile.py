"""The command line on hostile input (issue 22): a damaged store, an output path
that cannot be written, a lab or scenario file that is no file, nested too deeply or
holds an infinite number. Each is one line on stderr and exit status 2, never a
traceback; a command that only reads a store creates none."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.cli import main
from harness.results.records import HostRecord, Measurement, RunRecord
from harness.results.store import Store
from tests.support.paths import DATA, ROOT


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[Path]:
    """``path`` (a file or folder) made unwritable, for root too (immutable) where the
    test runs as root."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i does not work here: {done.stderr.decode().strip()}")
        try:
            yield path
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield path
        finally:
            path.chmod(mode)


# -- a damaged store -------------------------------------------------------------------


def _stored(db: Path) -> str:
    """A store with two finished runs of lab ``local`` (builds b1 and b2), closed."""
    url = f"sqlite:///{db}"
    with Store.open(url) as store:
        for n, build in enumerate(("b1", "b2")):
            run_id = f"0123456789a{n}"
            store.begin_run(RunRecord(run_id, datetime(2026, 12, 1, n, tzinfo=UTC), "local", "l.toml", "0" * 64,
                                      "", build, "0.1.0", "wgharness run l.toml", 1, "elsewhere"))  # fmt: skip
            store.add_hosts(run_id, [HostRecord("a", "wireguard-go", "0.0.1", build, {"kernel": "6.1"})])
            store.add_measurements(run_id, [
                Measurement("throughput", "tcp-1", r, "receiver_bps", 7e8 + r, "bit/s", "higher",
                            params={"streams": 1}, series=[(1.0, 7e8)])
                for r in range(1, 4)
            ])  # fmt: skip
            store.add_artifact(run_id, "note.txt", b"hello" * 2000)
            store.finish_run(run_id, "passed")
    return url


def _sql(statement: str) -> Callable[[Path, str], str]:
    def damage(db: Path, url: str) -> str:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
        engine.dispose()
        return url

    return damage


def _flip_pages(db: Path, url: str) -> str:
    data = bytearray(db.read_bytes())
    for page in range(1, len(data) // 4096):
        for offset in range(page * 4096, page * 4096 + 64):
            data[offset] ^= 0x5A
    db.write_bytes(bytes(data))
    return url


DAMAGES: dict[str, Callable[[Path, str], str]] = {
    "flipped pages": _flip_pages,
    "schema version not a number": _sql("UPDATE meta SET value = 'four' WHERE key = 'schema_version'"),
    "version row deleted": _sql("DELETE FROM meta"),
    "unknown status": _sql("UPDATE runs SET status = 'bogus'"),
    "bad JSON facts": _sql("UPDATE run_hosts SET facts = '{not json'"),
    "bad JSON params": _sql("UPDATE measurements SET params = '{'"),
    "bad series": _sql("UPDATE measurements SET series = '[[1]]'"),
    "bad zlib artifact": _sql("UPDATE artifacts SET data = X'00010203'"),
    "bad start time": _sql("UPDATE runs SET started_at = 'yesterday'"),
    "a table dropped": _sql("DROP TABLE run_hosts"),
}
COMMANDS = {
    "list": ["results", "list"],
    "show": ["results", "show", "0123456789a0"],
    "show artifact": ["results", "show", "latest", "--artifact", "note.txt"],
    "export": ["results", "export", "--out", "{tmp}/out.csv"],
    "compare": ["compare", "build:b1", "build:b2"],
    "report": ["report", "local"],
    "report out": ["report", "local", "--out", "{tmp}/report"],
    "noise": ["noise"],
    "import": ["results", "import-benchmark", str(DATA / "pytest-benchmark.json")],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("damage", [*DAMAGES, "read-only file"])
def test_a_damaged_store_is_one_line_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, command: str
) -> None:
    db = tmp_path / "r.db"
    url = _stored(db)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]] + ["--store", url]
    if damage == "read-only file":
        with unwritable(db):
            code, _, err = run_cli(argv, capsys)
    else:
        DAMAGES[damage](db, url)
        code, _, err = run_cli(argv, capsys)
    if code not in (0, 1):  # the command may not read what is damaged; compare: 1 is a verdict
        assert_one_line(code, err)
        assert f"store {url}" in err


# -- output paths ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["unwritable", "missing", "directory"])
@pytest.mark.parametrize("command", ["export", "export parquet", "report"])
def test_an_output_path_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, command: str
) -> None:
    url = _stored(tmp_path / "r.db")
    folder = tmp_path / "out"
    folder.mkdir()
    a_file = tmp_path / "plain"
    a_file.write_text("")
    out = {
        "unwritable": folder / ("x" if command == "report" else "x.csv"),
        "missing": tmp_path / "no" / "such" / "x.csv",
        "directory": folder,
    }[where]
    if command == "report":
        out = {"missing": a_file / "sub", "directory": a_file}.get(where, out)  # a folder can be made
        argv = ["report", "local", "--out", str(out), "--store", url]
    else:
        argv = ["results", "export", "--out", str(out), "--store", url]
        argv += ["--format", "parquet"] if command == "export parquet" else []
    with unwritable(folder) if where == "unwritable" else contextlib.nullcontext():
        code, _, err = run_cli(argv, capsys)
    assert_one_line(code, err)
    assert f"--out {out}" in err


BAD_OUT = [
    (command, where)
    for command in ("nightly", "nightly adaptive", "bisect", "repro")
    for where in (
        "unwritable",
        "under a file",
        "a folder for a file" if command == "repro" else "a file for a folder",
    )
]


@pytest.mark.parametrize(("command", "where"), BAD_OUT)
def test_an_output_path_is_checked_before_the_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    command: str,
) -> None:
    """`nightly --out DIR` and `repro --out BUNDLE` are written after the run: a path that
    cannot be is one line before anything runs, not a traceback after it."""

    def ran(*args: object, **kwargs: object) -> None:
        raise AssertionError("the run started")

    monkeypatch.setattr("harness.cli.run_lab", ran)
    monkeypatch.setattr("harness.run.rounds.run_adaptive", ran)
    monkeypatch.setattr("harness.repro.run.run_scenario", ran)
    folder = tmp_path / "out"
    folder.mkdir()
    a_file = tmp_path / "plain"
    a_file.write_text("")
    out = {
        "unwritable": folder / "x",
        "under a file": a_file / "x" / "y",
        "a file for a folder": a_file,
        "a folder for a file": folder,
    }[where]
    if command == "repro":
        argv = ["repro", str(ROOT / "scenarios" / "key-after-up.toml"), "--out", str(out)]
    elif command == "bisect":
        monkeypatch.setattr("harness.run.bisect.run_bisect", ran)
        builds = tmp_path / "builds.txt"
        builds.write_text("good /usr/bin/wireguard-go\nbad /usr/bin/wireguard-go\n")
        argv = ["bisect", str(ROOT / "benchmarks" / "overhead.toml"), "--builds", str(builds),
                "--out", str(out), "--store", f"sqlite:///{tmp_path / 'r.db'}"]  # fmt: skip
    else:
        argv = ["nightly", str(ROOT / "labs" / "local.toml"), "--build", "b", "--baseline", "build:a",
                "--out", str(out), "--store", f"sqlite:///{tmp_path / 'r.db'}"]  # fmt: skip
        argv += ["--rounds", "adaptive"] if command == "nightly adaptive" else []
    with unwritable(folder) if where == "unwritable" else contextlib.nullcontext():
        code, _, err = run_cli(argv, capsys)
    assert_one_line(code, err)
    assert f"--out {out}" in err


# -- stores that do not exist ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["results", "list"], ["results", "show", "latest"], ["compare", "latest", "latest"],
     ["report", "local"], ["results", "export", "--out", "{tmp}/x.csv"], ["noise"]],
    ids=["list", "show", "compare", "report", "export", "noise"],
)  # fmt: skip
def test_reading_commands_never_create_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    missing = tmp_path / "typo" / "wgharness.db"
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run_cli([*args, "--store", f"sqlite:///{missing}"], capsys)
    assert_one_line(code, err)
    assert f"no store at {missing}" in err
    assert not (tmp_path / "typo").exists()


def test_run_ids_are_matched_literally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _stored(tmp_path / "r.db")
    for ref in ("_", "%", "0123%", "0123456789a_"):
        code, _, err = run_cli(["results", "show", ref, "--store", url], capsys)
        assert_one_line(code, err)
        assert f"no run {ref!r}" in err


# -- lab and scenario files ----------------------------------------------------------------


def _lab_commands(path: Path) -> list[list[str]]:
    return [["lab", "check", str(path)], ["run", "--dry-run", str(path)], ["repro", str(path), "--check"]]


def test_a_deeply_nested_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000)
    for argv in _lab_commands(deep):
        code, _, err = run_cli(argv, capsys)
        assert_one_line(code, err)
        assert f"{deep}: invalid TOML" in err and "nested too deeply" in err


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "folder", "fifo"])
def test_a_path_that_is_no_regular_file_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    target = Path(path) if path.startswith("/") else tmp_path / path
    if path == "folder":
        target.mkdir()
    elif path == "fifo":
        os.mkfifo(target)
    done = threading.Event()

    def unblock() -> None:  # a FIFO the harness waits on gets a writer after 20 s, so a failing test ends
        if not done.is_set() and path == "fifo":
            os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(20, unblock)
    timer.start()
    try:
        for argv in _lab_commands(target):
            code, _, err = run_cli(argv, capsys)
            assert_one_line(code, err)
            assert f"{target}: not a regular file" in err or f"{target}: cannot read" in err
    finally:
        done.set()
        timer.cancel()


def test_a_file_too_large_for_a_lab_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of zeros that cost no disk
    for argv in _lab_commands(big):
        code, _, err = run_cli(argv, capsys)
        assert_one_line(code, err)
        assert f"{big}: larger than" in err


SCENARIO = (ROOT / "scenarios" / "peer-restart.toml").read_text()


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-inf"])
def test_an_unbounded_number_in_a_scenario_fails_its_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert "seconds = 20" in SCENARIO
    path = tmp_path / "s.toml"
    text = SCENARIO.replace("seconds = 20", f"seconds = {value}")
    path.write_text(text.replace('lab = "lab.toml"', f'lab = "{ROOT}/scenarios/lab.toml"'))
    code, _, err = run_cli(["repro", str(path), "--check"], capsys)
    assert_one_line(code, err)
    assert ".seconds: must be" in err


def test_the_commands_run_as_a_program_too(tmp_path: Path) -> None:
    """The same through `python -m harness`: what a user types."""
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000)
    done = subprocess.run([sys.executable, "-m", "harness", "lab", "check", str(deep)],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-500:]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["results", "list", "--limit", "99999999999999999999"], "--limit: must be at most 1000000"),
        (
            ["run", "labs/local.toml", "--dry-run", "--lock-timeout", "inf"],
            "--lock-timeout: must be more than 0",
        ),
        (
            ["run", "labs/local.toml", "--dry-run", "--lock-timeout", "nan"],
            "--lock-timeout: must be more than 0",
        ),
        (["run", "labs/local.toml", "--dry-run", "--duration", "4000"], "--duration: must be from 1 to 3600"),
    ],
)
def test_number_options_are_bounded(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, _, err = run_cli(argv, capsys)
    assert_one_line(code, err)
    assert words in err


# -- a reader that goes away -------------------------------------------------------------


def test_a_closed_output_pipe_ends_quietly() -> None:
    """`wgharness ... | head -1`: the reader has gone before the output is written."""
    argv = ["lab", "check", str(ROOT / "labs" / "local.toml")]
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(write)
    err = done.stderr.decode()
    assert done.returncode == 141, err  # 128 + SIGPIPE, as a shell tool killed by it
    assert "Traceback" not in err and "Exception ignored" not in err, err
