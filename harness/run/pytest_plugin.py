"""The pytest plugin behind `wgharness run` and `pytest suites --lab LAB`.

Inert unless `--lab` is given or `wgharness run` hands it a `LabRun` (a plugin
object of ``pytest.main``: the lab already validated, not read again). Then it
opens the store, starts a run record,
hands suites the lab through session fixtures (brought up on first use, torn
down at the end of the session, also after a failure or Ctrl-C), records every
measurement as it is taken, and finishes the run with its status.

Fixtures for suites:
  ``lab_instance``  the running `LabInstance` (hosts, tunnel ends)
  ``lab_spec``      the validated `Lab`
  ``suite_params``  the lab's parameters of the module's suite (its ``SUITE``, of type ``PARAMS``)
  ``record``        record(list[Measurement]) stores measurements of the current test
  ``artifact``      artifact(name, bytes) keeps a raw output with the run
  ``active_lab``    the same, with the tunnel of this test's variant
  ``flow``, ``repetition``, ``variant``  parametrized from the lab's suite parameters
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest

from harness.errors import HarnessError, UsageError
from harness.results.records import RunStatus
from harness.run.cleanup import interrupt_on_signals
from harness.run.hostlock import LockPolicy, LockTimeout

# The plugin loads in every pytest session of this environment: the heavy
# modules (store, pandas, SQLAlchemy) are imported only when --lab is given.
if TYPE_CHECKING:
    from harness.lab.spec import Lab, SuiteParams
    from harness.progress import Progress
    from harness.results.records import Measurement
    from harness.run.orchestrator import LabInstance
    from harness.run.session import RunSession

RUN_KEY = pytest.StashKey["RunSession"]()

STATUS_BY_EXIT = {
    pytest.ExitCode.OK: RunStatus.PASSED,
    pytest.ExitCode.TESTS_FAILED: RunStatus.FAILED,
    pytest.ExitCode.INTERRUPTED: RunStatus.INTERRUPTED,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wgharness", "wgharness lab runs")
    group.addoption("--lab", metavar="LAB", help="lab file to bring up and run suites against")
    group.addoption("--lab-store", metavar="URL", help="result store URL (default: SQLite under results/)")
    group.addoption("--lab-build", metavar="LABEL", help="build label stored with the run")
    group.addoption(
        "--lab-runner", metavar="NAME", help="runner name stored with the run (default: host name)"
    )
    group.addoption("--lab-duration", type=int, metavar="S", help="override the throughput duration")
    group.addoption("--lab-repeat", type=int, metavar="N", help="override the repetitions")
    group.addoption("--lab-suite", action="append", metavar="NAME", help="run only this suite")
    group.addoption(
        "--lab-no-lock", action="store_true", help="measure without taking this machine's benchmark lock"
    )
    group.addoption(
        "--lab-lock-timeout", type=float, metavar="S", help="give up waiting for the lock after S seconds"
    )


@dataclass(frozen=True, eq=False)
class LabRun:
    """A lab run handed to the plugin as an object (``pytest.main(args, plugins=[LabRun(...)])``):
    what `wgharness run` validated, used as it is."""

    lab: Lab
    """With the command line's overrides applied."""
    store: str | None = None
    """The result store's URL (None: the default SQLite store)."""
    build: str | None = None
    """The build label stored with the run."""
    lock: LockPolicy = LockPolicy()
    """Whether (and how long) the measured phase waits for this machine's lock."""
    runner: str | None = None
    """The runner's name stored with the run (None: this machine's host name)."""
    job: str | None = None
    """The fleet job this run is (`harness.fleet`), stored with it."""


ROOT_NEEDED = "the local lab needs root (it creates network namespaces)"


def root_problem() -> str | None:
    """Why this process cannot run a lab, or None if it can."""
    return None if os.geteuid() == 0 else ROOT_NEEDED


def _handed(config: pytest.Config) -> LabRun | None:
    return next((p for p in config.pluginmanager.get_plugins() if isinstance(p, LabRun)), None)


def _from_options(config: pytest.Config, path: str) -> LabRun:
    """`pytest suites --lab LAB`: the lab loaded and checked here (UsageError, or exit
    status 2 with one line if this process is not root)."""
    from harness.lab.spec import load_lab

    try:
        lab = load_lab(path).with_overrides(
            duration=config.getoption("--lab-duration"),
            repeat=config.getoption("--lab-repeat"),
            suites=config.getoption("--lab-suite"),
        )
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    problem = root_problem()
    if problem is not None:
        pytest.exit(problem, returncode=2)
    lock = LockPolicy(not config.getoption("--lab-no-lock"), config.getoption("--lab-lock-timeout"))
    return LabRun(
        lab,
        config.getoption("--lab-store"),
        config.getoption("--lab-build"),
        lock,
        config.getoption("--lab-runner"),
    )


SLOW_MARKER = "slow: needs minutes of real protocol time (rekeys at 120 s and 165 s)"
"""Also in pyproject.toml; registered here too, for suites run with a lab file (and so an
ini file) found outside this repository."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", SLOW_MARKER)
    handed = _handed(config)
    path = config.getoption("--lab")
    if handed is None and not path:
        return
    from harness.progress import Progress
    from harness.results.store import Store
    from harness.run.session import RunSession

    lab_run = handed or _from_options(config, path)
    try:
        store = Store.open(lab_run.store)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    signals = contextlib.ExitStack()  # SIGTERM and SIGHUP end the run as Ctrl-C does
    signals.enter_context(interrupt_on_signals())
    config.add_cleanup(signals.close)
    quiet = config.getoption("verbose") < -1
    capture = config.pluginmanager.getplugin("capturemanager")
    uncaptured = capture.global_and_fixture_disabled if capture else None
    progress = Progress(quiet=quiet, uncaptured=uncaptured)
    config.stash[RUN_KEY] = RunSession(
        lab_run.lab,
        store,
        build=lab_run.build,
        progress=progress,
        lock=lab_run.lock,
        runner=lab_run.runner,
        job=lab_run.job,
    )


def _run(config: pytest.Config) -> RunSession | None:
    return config.stash.get(RUN_KEY, None)


def pytest_report_header(config: pytest.Config) -> str | None:
    run = _run(config)
    return f"wgharness run {run.run_id}: lab {run.lab.path}" if run else None


PARAMETRIZED = ("flow", "repetition", "variant")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a suite's tests from the lab: ``flow`` (throughput), ``repetition``
    and ``variant``, whichever of them the test asks for."""
    names = [n for n in PARAMETRIZED if n in metafunc.fixturenames]
    if not names or (names == ["variant"] and not hasattr(metafunc.module, "SUITE")):
        return
    run = _run(metafunc.config)
    suite_name = getattr(metafunc.module, "SUITE", None)
    spec = run.lab.suite(suite_name) if run and suite_name else None
    if run is None or spec is None:
        reason = "needs --lab LAB" if run is None else f"suite {suite_name} is not in {run.lab.path}"
        skipped = tuple({"flow": None, "repetition": 0, "variant": None}[n] for n in names)
        metafunc.parametrize(",".join(names), [pytest.param(*skipped, marks=pytest.mark.skip(reason=reason))])
        return
    params = spec.params
    flows: tuple[Any, ...] = getattr(params, "flows", ()) if "flow" in names else (None,)
    # Repetitions outermost: every case once, then again, so drift spreads over all
    # of them. With variants, each repetition runs every variant, in ABBA order
    # (A B, then B A, ...), so drift does not favour the one that always runs first.
    variants: list[str | None] = [v.name for v in run.lab.variants] or [None]
    repeats = params.repeat if "repetition" in names else 1
    cases = []
    for rep in range(1, repeats + 1):
        order = variants if rep % 2 else variants[::-1]
        for variant in order:
            for flow in flows:
                parts = [flow.name] if flow is not None else []
                parts += [f"r{rep}"] if "repetition" in names else []
                parts += [variant] if variant else []
                values = {"flow": flow, "repetition": rep, "variant": variant}
                cases.append(pytest.param(*(values[n] for n in names), id="-".join(parts) or "lab"))
    metafunc.parametrize(",".join(names), cases)


@pytest.fixture
def variant() -> str | None:
    """The lab variant a test measures (parametrized when the lab has variants)."""
    return None


@pytest.fixture(scope="session")
def wgh_run(request: pytest.FixtureRequest) -> RunSession:
    run = _run(request.config)
    if run is None:
        pytest.skip("needs --lab LAB")
    return run


@pytest.fixture(scope="session")
def lab_spec(wgh_run: RunSession) -> Lab:
    return wgh_run.lab


@pytest.fixture
def suite_params(request: pytest.FixtureRequest, lab_spec: Lab) -> SuiteParams:
    """The lab's parameters of the requesting module's suite: the module names it
    (``SUITE = "handshake"``) and may name their type (``PARAMS = HandshakeParams``).
    Skips the test if the lab has no such suite."""
    name = getattr(request.module, "SUITE", None)
    spec = lab_spec.suite(name)
    if spec is None:
        pytest.skip(f"suite {name} is not in {lab_spec.path}")
    expected = getattr(request.module, "PARAMS", None)
    if expected is not None and not isinstance(spec.params, expected):
        pytest.fail(
            f"suite {name}: parameters {type(spec.params).__name__}, not {expected.__name__}", pytrace=False
        )
    return spec.params


@pytest.fixture(scope="session")
def lab_instance(wgh_run: RunSession) -> Iterator[LabInstance]:
    try:
        instance = wgh_run.lab_up()
    except HarnessError as exc:
        what = "measuring could not begin" if isinstance(exc, LockTimeout) else "lab could not be brought up"
        pytest.fail(f"{what}: {exc}", pytrace=False)
    try:
        yield instance
    finally:
        wgh_run.lab_down()


@pytest.fixture
def active_lab(lab_instance: LabInstance, variant: str | None) -> LabInstance:
    """The running lab, its tunnel switched to this test's variant (if any)."""
    if variant is not None:
        try:
            lab_instance.switch_variant(variant)
        except HarnessError as exc:
            pytest.fail(f"variant {variant} could not be brought up: {exc}", pytrace=False)
    return lab_instance


@pytest.fixture
def record(
    wgh_run: RunSession, request: pytest.FixtureRequest, variant: str | None, active_lab: LabInstance
) -> Callable[[list[Measurement]], None]:
    test_id = request.node.nodeid
    build = wgh_run.lab.variant(variant).build if variant else None
    # A variant swaps implementations, so the run's host records name only the first
    # variant's: each measurement then carries what ran on each end (params impl_HOST).
    impls = (
        {
            f"impl_{e.spec.host}": f"{e.spec.impl} {e.info.version if e.info else ''}".strip()
            for e in active_lab.ends
        }
        if variant
        else {}
    )

    def _record(measurements: list[Measurement]) -> None:
        wgh_run.record(
            [
                replace(m, test_id=m.test_id or test_id, build=m.build or build, params={**m.params, **impls})
                for m in measurements
            ]
        )

    return _record


@pytest.fixture
def progress(wgh_run: RunSession) -> Progress:
    return wgh_run.progress


@pytest.fixture
def artifact(wgh_run: RunSession) -> Callable[..., None]:
    return wgh_run.artifact


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    run = _run(item.config)
    if run is None:
        return report
    if report.when == "call" or (report.when == "setup" and not report.passed):
        lines = report.longreprtext.strip().splitlines() if report.failed else []
        message = lines[-1] if lines else ""
        run.outcome(item.nodeid, report.outcome, report.duration, message)
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = _run(session.config)
    if run is None:
        return
    run.lab_down()  # normally done by the fixture's teardown; here in case it was not
    status = STATUS_BY_EXIT.get(exitstatus, RunStatus.ERROR)  # type: ignore[call-overload]
    error = None
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        error = "no test ran"
    elif status == RunStatus.ERROR:
        error = f"pytest exit status {exitstatus}"
    run.finish(status, error)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = _run(config)
    if run is None:
        return
    from harness.results.render.summary import summary_table

    terminalreporter.write_sep("=", f"wgharness run {run.run_id}")
    terminalreporter.write_line(summary_table(run.store.get_run(run.run_id)))
