"""The one way to wait (`harness.targets.base`): `Process.wait_ready` for a started
process, `wait_until` for anything else. Real short-lived processes on this machine
(``sh -c``); no root. Times are only bounds that cannot be missed, never speeds."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.errors import InfraError, NotReady, output_tail
from harness.targets.base import Process, wait_until
from harness.targets.local import LocalTarget


@contextmanager
def started(script: str) -> Iterator[Process]:
    process = LocalTarget("here").start(["sh", "-c", script])
    try:
        yield process
    finally:
        process.kill()


def test_ready_at_once_returns_what_the_check_found() -> None:
    with started("sleep 30") as process:
        asked = []
        got = process.wait_ready(lambda: asked.append(1) or "yes", 5, "nothing")
        assert got == "yes" and asked == [1]
        assert process.poll() is None  # left running: stopping it is the caller's part


def test_ready_after_a_few_polls() -> None:
    with started("sleep 0.3; echo up; sleep 30") as process:
        asked = []

        def says_up() -> bool:
            asked.append(1)
            return b"up" in process.output()[0]

        assert process.wait_ready(says_up, 20, "the script to say up") is True
        assert len(asked) > 1


def test_a_process_that_exits_first_names_its_status_and_the_end_of_its_stderr() -> None:
    script = "for i in 1 2 3 4 5; do echo line $i >&2; done; exit 3"
    with started(script) as process, pytest.raises(NotReady) as caught:
        process.wait_ready(lambda: False, 20, "the script to say up")
    err = caught.value
    assert isinstance(err, InfraError) and err.status == 3 and err.host == "here"
    text = str(err)
    assert text.startswith(
        f"here: waiting for the script to say up: `sh -c {shlex.quote(script)}` (pid {process.pid}) "
    )
    assert "exited with 3 after " in text and text.endswith(" (of 20s); stderr: line 3 | line 4 | line 5")
    assert "\n" not in text


def test_a_timeout_says_the_process_still_runs() -> None:
    with started("echo starting >&2; sleep 30") as process:
        process.wait_ready(lambda: b"starting" in process.output()[1], 20, "the script to start")
        with pytest.raises(NotReady) as caught:
            process.wait_ready(lambda: False, 0.3, "the script to say up")
        assert process.poll() is None
    assert caught.value.status is None
    assert str(caught.value) == (
        "here: waiting for the script to say up: not ready within 0.3s, "
        f"`sh -c 'echo starting >&2; sleep 30'` (pid {process.pid}) still running; stderr: starting"
    )


def test_the_output_tail_falls_back_to_stdout_and_cuts_long_lines() -> None:
    assert output_tail("", "a\nb\n") == "stdout: a | b"
    assert output_tail("  \n", "") == "no output"
    assert output_tail("x" * 300 + "\n") == "stderr: " + "x" * 200
    assert output_tail("1\n2\n3\n4\n", lines=2) == "stderr: 3 | 4"


def test_a_long_command_is_cut_in_the_error() -> None:
    script = "exit 1; " + "x" * 200
    with started(script) as process, pytest.raises(NotReady) as caught:
        process.wait_ready(lambda: False, 20, "nothing")
    command = str(caught.value).split("`")[1]
    assert len(command) == 100 and command.endswith("…")


def test_wait_until_returns_the_first_true_answer_or_none() -> None:
    answers = iter([0, "", None, 7, 8])
    assert wait_until(lambda: next(answers), 20, interval=0.01) == 7
    asked = []
    assert wait_until(lambda: asked.append(1), 0.1, interval=0.01) is None
    assert len(asked) >= 2  # asked at the start and once more at the end
