"""Run a lab's suites through pytest in this process: what `wgharness run` and
`wgharness nightly` share. Validation comes first, so a bad lab, suite or
store is a usage error before anything is created."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.results.records import RunStatus
from harness.run.hostlock import LockPolicy

if TYPE_CHECKING:
    from harness.lab.spec import VariantSpec
    from harness.run.pytest_plugin import LabRun


@dataclass(frozen=True)
class RunOptions:
    lab: str
    suites: Sequence[str] | None = None
    duration: int | None = None
    repeat: int | None = None
    build: str | None = None
    store: str | None = None
    verbose: bool = False
    lock: LockPolicy = LockPolicy()
    """This machine's benchmark lock for the measured phase (``--no-lock``, ``--lock-timeout``)."""
    runner: str | None = None
    """The runner's name stored with the run (None: this machine's host name)."""
    variants: tuple[VariantSpec, ...] | None = None
    """Instead of the lab file's ``[[variants]]`` (adaptive rounds name their two builds)."""
    clean_stale: bool = False
    """Remove the labs a killed harness left on this machine before the run (``--clean-stale``)."""
    job: str | None = None
    """The fleet job this run is (`harness.fleet`), stored with it."""


@dataclass(frozen=True)
class RunOutcome:
    run_id: str | None
    """None when pytest stopped before the run was stored."""
    status: RunStatus
    """passed, failed, error or interrupted."""
    pytest_status: int


def suites_dir() -> Path:
    import suites

    return Path(suites.__file__).parent


def prepare(options: RunOptions) -> tuple[LabRun, list[str]]:
    """Validate everything: the run for the plugin, and the suite modules to run."""
    from harness.lab.spec import load_lab
    from harness.progress import Progress
    from harness.results.store import Store
    from harness.run.pytest_plugin import LabRun, root_problem
    from harness.run.stale import before_run

    lab = load_lab(options.lab).with_overrides(
        duration=options.duration, repeat=options.repeat, suites=options.suites
    )
    if options.variants is not None:
        lab = replace(lab, variants=options.variants)
    problem = root_problem()
    if problem is not None:
        raise UsageError(problem)
    Store.open(options.store).close()
    before_run(Progress(), options.clean_stale)
    files = []
    for suite in lab.suites:
        path = suites_dir() / f"test_{suite.name}.py"
        if not path.is_file():
            raise UsageError(f"{options.lab}: suites.{suite.name}: no suite module {path}")
        files.append(str(path))
    return LabRun(lab, options.store, options.build, options.lock, options.runner, options.job), files


def run_lab(options: RunOptions, plugins: Sequence[object] = ()) -> RunOutcome:
    """``plugins``: more plugin objects for pytest (adaptive rounds run the tests their own way)."""
    import pytest

    from harness.run.pytest_plugin import RUN_KEY
    from harness.run.session import RunSession

    lab_run, files = prepare(options)

    class Catch:
        run: RunSession | None = None

        @pytest.hookimpl(trylast=True)
        def pytest_configure(self, config: pytest.Config) -> None:
            self.run = config.stash.get(RUN_KEY, None)

    catch = Catch()
    argv = [*files, "-p", "no:cacheprovider", "--rootdir", str(suites_dir())]
    argv += ["-v"] if options.verbose else ["-q"]
    code = int(pytest.main(argv, plugins=[lab_run, catch, *plugins]))
    run = catch.run
    if run is None or run.status is None:
        return RunOutcome(None, RunStatus.ERROR, code)
    return RunOutcome(run.run_id, run.status, code)
