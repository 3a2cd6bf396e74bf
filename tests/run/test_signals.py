"""How signals end a run (harness/run/cleanup.py), each in a Python of its own so
this test process's handlers stay as they are: SIGINT, SIGTERM and SIGHUP alike;
only the first interrupts; a teardown step holds them; what was inherited ignored."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from tests.support.paths import ROOT

PRELUDE = """
import os, signal, sys, time
from harness.run.cleanup import (CleanupStack, Interrupted, exit_status, first_signal,
                                 interrupt_on_signals, signals_deferred)
def send(sig):
    os.kill(os.getpid(), sig)
    time.sleep(0.2)  # the handler runs at the next bytecode; never reached if it raises
"""


def _python(code: str, preexec: object = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, preexec_fn=preexec,  # type: ignore[arg-type]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_each_signal_interrupts_as_ctrl_c_with_its_exit_status(sig: signal.Signals) -> None:
    out = _python(f"""
        with interrupt_on_signals():
            try:
                send({int(sig)})
                print("not-interrupted")
            except KeyboardInterrupt as exc:
                print(type(exc).__name__, exc.signum, exit_status(130))
        """)
    assert out == ["Interrupted", str(int(sig)), str(128 + sig)]


def test_only_the_first_signal_interrupts_the_teardown_after_it_goes_on() -> None:
    out = _python("""
        with interrupt_on_signals():
            try:
                send(signal.SIGTERM)
            except Interrupted:
                send(signal.SIGTERM)  # during the teardown: noted, not raised
                send(signal.SIGINT)
                print("teardown-finished", first_signal())
        """)
    assert out == ["teardown-finished", str(int(signal.SIGTERM))]


def test_a_teardown_step_holds_the_first_signal_until_it_ends() -> None:
    out = _python("""
        stack = CleanupStack()
        stack.push("one", lambda: print("one"))
        stack.push("two", lambda: (send(signal.SIGHUP), print("two")))
        with interrupt_on_signals():
            try:
                stack.unwind()
            except Interrupted as exc:
                print("then-interrupted", exc.signum)
            with signals_deferred(reraise=False) as caught:
                send(signal.SIGTERM)
            print("held", caught)
        """)
    assert out == [
        "two",
        "one",
        "then-interrupted",
        str(int(signal.SIGHUP)),
        "held",
        f"[{int(signal.SIGTERM)}]",
    ]


def _as_background_job_under_nohup() -> None:
    """As ``nohup cmd &`` in a shell without job control leaves it: SIGINT and SIGHUP
    ignored; and SIGTERM ignored and blocked besides, as a careless parent might."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def test_inherited_ignored_sigint_and_sighup_stay_ignored_and_sigterm_always_works() -> None:
    out = _python(
        """
        with interrupt_on_signals():
            send(signal.SIGINT)
            send(signal.SIGHUP)
            print("still-running")
            try:
                send(signal.SIGTERM)
            except Interrupted as exc:
                print("interrupted", exc.signum)
        print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)  # put back as it was
        """,
        preexec=_as_background_job_under_nohup,
    )
    assert out == ["still-running", "interrupted", str(int(signal.SIGTERM)), "True"]


def test_a_teardown_inside_a_teardown_leaves_the_decision_to_the_outer_one() -> None:
    """The lab's teardown (an unwind, with the tunnel's own inside it) runs in the run's
    teardown block: a first signal there is the outer block's to report, not an
    exception out of the middle of it."""
    out = _python("""
        inner = CleanupStack()
        inner.push("tunnel", lambda: (send(signal.SIGTERM), print("tunnel")))
        outer = CleanupStack()
        outer.push("host", lambda: print("host"))
        outer.push("tunnel", inner.unwind)
        with interrupt_on_signals():
            with signals_deferred(reraise=False) as caught:
                outer.unwind()
                print("after-unwind")
            print("held", caught)
        """)
    assert out == ["tunnel", "host", "after-unwind", "held", f"[{int(signal.SIGTERM)}]"]
