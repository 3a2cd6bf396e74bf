"""Run a lab's suites through pytest in this process: what `wgharness run` and
`wgharness nightly` share. Validation comes first, so a bad lab, suite or
store is a usage error before anything is created."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.results.records import RunStatus


@dataclass(frozen=True)
class RunOptions:
    lab: str
    suites: Sequence[str] | None = None
    duration: int | None = None
    repeat: int | None = None
    build: str | None = None
    store: str | None = None
    verbose: bool = False


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


def prepare(options: RunOptions) -> list[str]:
    """Validate everything and return the suite modules to run."""
    from harness.lab import load_lab
    from harness.results.store import Store

    lab = load_lab(options.lab).with_overrides(
        duration=options.duration, repeat=options.repeat, suites=options.suites
    )
    if os.geteuid() != 0:
        raise UsageError("the local lab needs root (it creates network namespaces)")
    Store.open(options.store).close()
    files = []
    for suite in lab.suites:
        path = suites_dir() / f"test_{suite.name}.py"
        if not path.is_file():
            raise UsageError(f"{options.lab}: suites.{suite.name}: no suite module {path}")
        files.append(str(path))
    return files


def run_lab(options: RunOptions) -> RunOutcome:
    import pytest

    from harness.pytest_plugin import RUN_KEY
    from harness.session import RunSession

    files = prepare(options)

    class Catch:
        run: RunSession | None = None

        @pytest.hookimpl(trylast=True)
        def pytest_configure(self, config: pytest.Config) -> None:
            self.run = config.stash.get(RUN_KEY, None)

    catch = Catch()
    argv = [*files, "--lab", options.lab, "-p", "no:cacheprovider", "--rootdir", str(suites_dir())]
    for flag, value in (
        ("--lab-store", options.store),
        ("--lab-build", options.build),
        ("--lab-duration", options.duration),
        ("--lab-repeat", options.repeat),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for name in options.suites or []:
        argv += ["--lab-suite", name]
    argv += ["-v"] if options.verbose else ["-q"]
    code = int(pytest.main(argv, plugins=[catch]))
    run = catch.run
    if run is None or run.status is None:
        return RunOutcome(None, RunStatus.ERROR, code)
    return RunOutcome(run.run_id, run.status, code)
