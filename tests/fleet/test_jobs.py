"""Fleet jobs without a queue: the arguments' codec, labels and queues, the store URL
turned into the queue's place, and the command line's one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.fleet.jobs import (
    KINDS,
    LabFile,
    NightlyArgs,
    RunArgs,
    can_run,
    decode_args,
    describe,
    encode_args,
    labels_of,
    parse_labels,
    queue_of,
    queues_for,
)
from harness.fleet.postgres import queue_place
from tests.support.paths import ROOT
from tests.test_cli import one_line_error

LAB = LabFile("benchmarks/overhead.toml", "[lab]\nname = 'x'\n")


def test_job_arguments_go_through_json_and_back() -> None:
    import json

    for kind, args in (
        ("run", RunArgs(LAB, suites=("throughput",), duration=1, repeat=2, build="b41")),
        ("nightly", NightlyArgs(LAB, build="b42", baseline="build:b41", out="reports", duration=3)),
    ):
        payload = json.loads(json.dumps(encode_args(kind, args)))
        assert decode_args(payload) == (kind, args)


def test_a_job_is_a_wgharness_command_line() -> None:
    args = RunArgs(LAB, suites=("throughput",), duration=1, repeat=2, build="b41")
    assert KINDS["run"].command(args, "/tmp/copy.toml") == [
        "run", "/tmp/copy.toml", "--suite", "throughput", "--duration", "1", "--repeat", "2", "--build", "b41",
    ]  # fmt: skip
    nightly = NightlyArgs(LAB, build="b42", baseline="latest", out="r")
    assert describe("nightly", nightly) == (
        "nightly benchmarks/overhead.toml --build b42 --baseline latest --out r"
    )


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"kind": "bisect", "args": {}}, "unknown job kind 'bisect'"),
        ({"kind": "run"}, "{kind, args}"),
        ({"kind": "run", "args": {"lab": {"path": "l.toml"}}}, "text"),
        ({"kind": "run", "args": {"lab": {"path": "l", "text": ""}, "duration": "ten"}}, "duration"),
        ("run", "{kind, args}"),
    ],
)
def test_a_payload_this_version_cannot_run_is_refused(payload: object, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("{", r"\{").replace("}", r"\}")):
        decode_args(payload)


def test_the_wrong_arguments_for_a_kind_are_refused() -> None:
    with pytest.raises(ValueError, match="no job kind 'nightly' takes RunArgs"):
        encode_args("nightly", RunArgs(LAB))


def test_labels_and_their_queues() -> None:
    assert parse_labels("windows, kvm,kvm") == ("kvm", "windows")
    assert parse_labels(["kvm", "bare-metal"]) == ("bare-metal", "kvm")
    assert parse_labels(None) == ()
    assert queue_of(("windows", "kvm")) == "wgh:kvm:windows"
    assert queue_of(()) == "wgh"
    assert labels_of("wgh:kvm:windows") == ("kvm", "windows")
    assert queues_for(("windows", "kvm")) == ["wgh", "wgh:kvm", "wgh:windows", "wgh:kvm:windows"]
    assert can_run(("kvm", "windows"), ("kvm",)) and can_run(("kvm",), ())
    assert not can_run(("kvm",), ("kvm", "windows"))
    # a worker's queues are exactly those of the jobs it can run
    for job in ((), ("kvm",), ("windows",), ("kvm", "windows"), ("arm",)):
        assert (queue_of(job) in queues_for(("kvm", "windows"))) == can_run(("kvm", "windows"), job)


@pytest.mark.parametrize(
    ("text", "words"), [("KVM", "lower-case"), ("a b", "lower-case"), ("a,b,c,d,e,f,g", "at most 6")]
)
def test_a_bad_label_is_a_usage_error(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_labels(text)


def test_the_queue_lives_beside_the_store_in_a_schema_of_its_own() -> None:
    place = queue_place("postgresql://team:s3'cret@db.example:5433/bench?sslmode=require")
    assert place.schema == "wgharness_queue"
    assert place.conninfo == (
        "host='db.example' port='5433' user='team' password='s3\\'cret' dbname='bench' "
        "sslmode='require' options='-csearch_path=wgharness_queue'"
    )
    own = queue_place("postgresql+psycopg://u@h/db?options=-csearch_path%3Dwgh_1234")
    assert own.schema == "wgh_1234_queue"
    assert "options='-csearch_path=wgh_1234_queue'" in own.conninfo


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite:///results/wgharness.db", "a fleet needs PostgreSQL"),
        ("not a url", "not a database URL"),
        ("postgresql://u@h/", "name the database"),
        (None, "a fleet needs PostgreSQL"),
    ],
)
def test_a_store_a_fleet_cannot_use_is_a_usage_error(url: str | None, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        queue_place(url)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["worker", "--store", "sqlite:///results/wgharness.db"], "a fleet needs PostgreSQL"),
        (["worker", "--store", "nonsense"], "not a database URL"),
        (["jobs", "--store", "sqlite:///x.db"], "a fleet needs PostgreSQL"),
        (["submit", "run", "benchmarks/overhead.toml", "--store", "sqlite:///x.db"], "a fleet needs PostgreSQL"),
        (["submit", "run", "benchmarks/overhead.toml"], "required: --store"),
        (["submit", "nightly", "benchmarks/overhead.toml", "--store", "postgresql://u@h/d"], "required"),
        (["submit", "run", "no-such.toml", "--store", "postgresql://u@h/d"], "no-such.toml"),
        (["submit", "run", "benchmarks/overhead.toml", "--label", "A B", "--store", "postgresql://u@h/d"],
         "lower-case"),
        (["worker", "--store", "postgresql://u@h/d", "--once", "--max-jobs", "2"], "not allowed with"),
        (["worker", "--store", "postgresql://u@h/d", "--lease", "0"], "more than 0"),
        (["jobs", "--store", "postgresql://u:pw@127.0.0.1:1/d"], "store postgresql://u:***@127.0.0.1:1/d: "),
    ],
)  # fmt: skip
def test_fleet_usage_errors_are_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert words in one_line_error(capsys, code)


def test_without_procrastinate_a_fleet_command_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "procrastinate", None)  # import fails as if not installed
    err = one_line_error(capsys, main(["jobs", "--store", "postgresql://u@127.0.0.1:1/d"]))
    assert "pip install 'wgharness[fleet]'" in err


def test_the_harness_runs_without_procrastinate(modules_loaded_by: Callable[[str], set[str]]) -> None:
    """Importing the command line (and building its parser) loads no queue."""
    loaded = modules_loaded_by("import harness.cli\nharness.cli.build_parser()\n")
    assert not {m for m in loaded if m.startswith(("procrastinate", "harness.fleet.queue"))}


def test_a_worker_runs_the_submitted_file_when_it_holds_the_same_text(tmp_path: Path) -> None:
    from harness.fleet.queue import lab_file_to_run

    lab = tmp_path / "lab.toml"
    lab.write_text("[lab]\nname = 'x'\n")
    folder = tmp_path / "job"
    folder.mkdir()
    assert lab_file_to_run(LabFile(str(lab), lab.read_text()), folder) == str(lab)
    changed = lab_file_to_run(LabFile(str(lab), "[lab]\nname = 'y'\n"), folder)
    assert changed == str(folder / "lab.toml") and Path(changed).read_text() == "[lab]\nname = 'y'\n"
    elsewhere = lab_file_to_run(LabFile("/no/such/lab.toml", "t"), folder)
    assert Path(elsewhere).read_text() == "t"
