"""The `wgharness` command. Subcommands are built in `build_parser` and each is
one small function; every deliberate error ends as one line on stderr with
the exit status of its kind (2 for usage, 3 for infrastructure)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from harness import __version__
from harness.errors import (
    EXIT_FAILED,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    HarnessError,
    UsageError,
)
from harness.results.records import RunStatus
from harness.run.hostlock import LockPolicy
from harness.run.runner import RunOptions, run_lab

if TYPE_CHECKING:
    from harness.results.compare import Selector, Settings
    from harness.results.rounds import RoundsSettings
    from harness.run.rounds import RoundsRequest

EXIT_BY_STATUS = {
    RunStatus.PASSED: EXIT_OK,
    RunStatus.FAILED: EXIT_FAILED,
    RunStatus.ERROR: EXIT_INFRA,
    RunStatus.INTERRUPTED: EXIT_INTERRUPTED,
}
"""The exit status of a finished run; any other (running, aborted) is an infrastructure failure."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        lab=args.lab,
        suites=args.suite,
        duration=args.duration,
        repeat=args.repeat,
        build=args.build,
        store=args.store,
        verbose=args.verbose,
        lock=_lock_policy(args),
        runner=args.runner,
        clean_stale=args.clean_stale,
        job=args.fleet_job,
    )


def _lock_policy(args: argparse.Namespace) -> LockPolicy:
    return LockPolicy(enabled=not args.no_lock, timeout=args.lock_timeout)


def cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from harness.lab.spec import load_lab
        from harness.run.dryrun import plan

        lab = load_lab(args.lab).with_overrides(duration=args.duration, repeat=args.repeat, suites=args.suite)
        print(plan(lab))
        return EXIT_OK

    outcome = run_lab(_run_options(args))
    if outcome.run_id is None:
        print(
            f"wgharness run: pytest ended with status {outcome.pytest_status} before the run was stored",
            file=sys.stderr,
        )
    return EXIT_BY_STATUS.get(outcome.status, EXIT_INFRA)


def cmd_results_list(args: argparse.Namespace) -> int:
    from harness.results.render.summary import runs_table
    from harness.results.store import Store

    with Store.open(args.store, create=False) as store:
        runs = store.list_runs(limit=args.limit)
        print(runs_table(runs) if runs else f"no runs stored in {store.url}")
    return EXIT_OK


def cmd_results_show(args: argparse.Namespace) -> int:
    import functools

    from harness.results.bisect import PLAN_ARTIFACT
    from harness.results.fingerprint import fingerprint
    from harness.results.render.summary import run_summary
    from harness.results.rounds import ROUNDS_ARTIFACT
    from harness.results.store import Store

    with Store.open(args.store, create=False) as store:
        if args.artifact:
            sys.stdout.buffer.write(store.get_artifact(args.run, args.artifact))
            return EXIT_OK
        details = store.get_run(args.run)
        print(run_summary(details))
        print()
        for host in details.hosts:  # what each ran on (virtualization, CPU) is in the summary's table
            f = host.facts
            print(
                f"host {host.host}: {host.impl or '-'} {host.impl_version or ''} build {host.build or '-'}; "
                f"{f.get('os', '?')}, kernel {f.get('kernel', '?')}"
            )
        print_ = fingerprint(details)
        print(f"fingerprint {print_.label}:")
        print("\n".join(f"  {name}: {value}" for name, value in print_.fields))
        if "timeline.json" in details.artifacts:
            from harness.results.render.summary import timeline_text

            print()
            print(timeline_text(store.get_artifact(details.run.id, "timeline.json"),
                                store.get_artifact(details.run.id, "verdicts.json")
                                if "verdicts.json" in details.artifacts else None))  # fmt: skip
        if ROUNDS_ARTIFACT in details.artifacts:
            from harness.codec import from_json
            from harness.results.render.rounds import rounds_text, verdict_line
            from harness.results.rounds import RoundsReport

            rounds = from_json(store.get_artifact(details.run.id, ROUNDS_ARTIFACT), RoundsReport)
            print(f"\n{rounds_text(rounds)}\n\n{verdict_line(rounds, details.summary.status)}")
        if PLAN_ARTIFACT in details.artifacts:
            from harness.results.bisect import stored_report
            from harness.results.render.bisect import render_text

            bisect = stored_report(details.artifacts, functools.partial(store.get_artifact, details.run.id))
            print(f"\n{render_text(bisect)}")
        if details.artifacts:
            print(f"artifacts ({len(details.artifacts)}): {', '.join(details.artifacts)}")
            print(f"  read one with: wgharness results show {details.run.id} --artifact NAME")
    return EXIT_OK


def cmd_lab_check(args: argparse.Namespace) -> int:
    from harness.lab.spec import load_lab

    lab = load_lab(args.lab)
    if args.hosts:
        from harness.lab.hostcheck.core import exit_status, render_table
        from harness.lab.hostcheck.probe import check_lab

        rows = check_lab(lab)
        print(render_table(rows))
        return exit_status(rows)
    ends = ", ".join(f"{e.host}={e.impl} {e.address}" for e in lab.tunnel.ends)
    suites = ", ".join(s.name for s in lab.suites)
    print(
        f"{args.lab}: lab {lab.name} is valid: {len(lab.hosts)} hosts, {len(lab.links)} links; tunnel {ends}; suites {suites}"
    )
    return EXIT_OK


def _compare_settings(args: argparse.Namespace) -> Settings:
    from harness.results.compare import DEFAULT_METRICS, Settings, load_thresholds

    default, per_metric = load_thresholds(args.thresholds) if args.thresholds else (0.05, {})
    if args.min_effect is not None:
        default = args.min_effect
    return Settings(
        alpha=args.alpha if args.alpha is not None else Settings.alpha,
        default_min_effect=default,
        min_effect=per_metric,
        metrics=tuple(args.metric) if args.metric else DEFAULT_METRICS,
        suite=suite if isinstance(suite := getattr(args, "suite", None), str) else None,
        impl=getattr(args, "impl", None),
        host=getattr(args, "host", None),
        allow_mismatch=getattr(args, "allow_mismatch", False),
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.results.compare import compare, parse_selector
    from harness.results.render.comparison import RENDERERS
    from harness.results.store import Store

    baseline, candidate = parse_selector(args.baseline), parse_selector(args.candidate)
    if args.rerun:
        return _compare_rerun(args, baseline, candidate)
    _only_with(args, "--rerun LAB", (*ROUNDS_OPTIONS, "duration", "no_lock", "lock_timeout", "runner",
                                     "clean_stale"))  # fmt: skip
    settings = _compare_settings(args)
    with Store.open(args.store, create=False) as store:
        result = compare(store, baseline, candidate, settings)
    print(RENDERERS[args.format](result))
    return result.exit_status()


ROUNDS_OPTIONS = ("max_rounds", "baseline_program", "candidate_program")
"""Options of adaptive rounds only (``compare --rerun``, ``nightly --rounds adaptive``)."""


def _only_with(args: argparse.Namespace, needs: str, options: Sequence[str]) -> None:
    for option in options:
        if getattr(args, option, None) not in (None, False):
            raise UsageError(f"--{option.replace('_', '-')}: only with {needs}")


def _build_label(selector: Selector, what: str) -> str:
    if selector.kind != "build":
        raise UsageError(f"{what} {selector.text!r}: adaptive rounds run a build again: name it build:LABEL")
    return selector.values[0]


def _rounds_request(
    args: argparse.Namespace, lab: str, baseline: str, candidate: str, suites: list[str] | None
) -> RoundsRequest:
    from harness.run.rounds import RoundsRequest

    settings = _rounds_settings(args)
    options = RunOptions(lab=lab, suites=suites, duration=args.duration, repeat=getattr(args, "repeat", None),
                         build=candidate, store=args.store, verbose=getattr(args, "verbose", False),
                         lock=_lock_policy(args), runner=args.runner,
                         clean_stale=args.clean_stale)  # fmt: skip
    return RoundsRequest(options, baseline, settings, args.baseline_program, args.candidate_program)


def _rounds_settings(args: argparse.Namespace) -> RoundsSettings:
    from harness.results.rounds import RoundsSettings
    from harness.results.sequential import DEFAULT_ALPHA, DEFAULT_MAX_ROUNDS

    c = _compare_settings(args)
    return RoundsSettings(
        max_rounds=args.max_rounds or DEFAULT_MAX_ROUNDS,
        alpha=args.alpha if args.alpha is not None else DEFAULT_ALPHA,
        min_effect=c.default_min_effect,
        min_effects=c.min_effect,
        metrics=c.metrics,
    )


def _compare_rerun(args: argparse.Namespace, baseline: Selector, candidate: Selector) -> int:
    from harness.codec import to_json
    from harness.results.render.rounds import render_markdown, rounds_text, verdict_line
    from harness.results.rounds import exit_status
    from harness.run.rounds import run_adaptive

    for option in ("impl", "host"):
        if getattr(args, option):
            raise UsageError(f"--{option}: not with --rerun (the rerun measures the lab's tunnel ends)")
    base, cand = _build_label(baseline, "BASELINE"), _build_label(candidate, "CANDIDATE")
    request = _rounds_request(args, args.rerun, base, cand, [args.suite] if args.suite else None)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the comparison's alone
        done = run_adaptive(request)
    report = done.report
    if args.format == "json":
        print(to_json(report, indent=1) if report else "null")
    elif args.format == "markdown":
        print(render_markdown(report, done.status))
    else:
        print(rounds_text(report) if report else "(no round ran)")
        print(verdict_line(report, done.status))
    return exit_status(report, done.status)


def _nightly_rounds(args: argparse.Namespace) -> int:
    from harness.results.compare import parse_selector
    from harness.results.nightly import conclude_rounds
    from harness.results.render.rounds import rounds_text
    from harness.run.rounds import run_adaptive

    if args.require_baseline:
        raise UsageError("--require-baseline: not with --rounds adaptive (the baseline is run again)")
    base = _build_label(parse_selector(args.baseline), "--baseline")
    done = run_adaptive(_rounds_request(args, args.lab, base, args.build, args.suite))
    result = conclude_rounds(args.store, done.run_id, done.status, done.report, Path(args.out))
    if done.report is not None:
        print(rounds_text(done.report))
        print()
    print(result.verdict)
    print(f"reports: {args.out}/summary.md, {args.out}/report.html, {args.out}/junit.xml")
    return result.exit_status


def cmd_nightly(args: argparse.Namespace) -> int:
    from harness.results.compare import parse_selector
    from harness.results.nightly import conclude

    _check_out(args.out, folder=True)
    if args.rounds == "adaptive":
        return _nightly_rounds(args)
    _only_with(args, "--rounds adaptive", ROUNDS_OPTIONS)
    parse_selector(args.baseline)  # a bad selector is a usage error before the lab runs
    options = _run_options(args)
    outcome = run_lab(options)
    result = conclude(
        options.store,
        outcome.run_id,
        outcome.status,
        args.baseline,
        Path(args.out),
        _compare_settings(args),
        require_baseline=args.require_baseline,
    )
    print(result.verdict)
    print(f"reports: {args.out}/summary.md, {args.out}/report.html, {args.out}/junit.xml")
    return result.exit_status


def cmd_bisect(args: argparse.Namespace) -> int:
    from harness.results.bisect import exit_status
    from harness.results.render.bisect import html_page, render_markdown, render_text
    from harness.run.bisect import BisectRequest, StepRequest, run_bisect
    from harness.run.builds import DEFAULT_CACHE, GitRange, choose_range, git_builds, read_builds

    if args.step_json is not None:
        return _bisect_step(args)
    _check_out(args.out, folder=True)
    if not args.fleet:
        _only_with(args, "--fleet", ("label",))
    else:
        fleet_store = _fleet_store(args)
        from harness.fleet.jobs import parse_labels

        labels = parse_labels(args.label)
    if args.repo is not None:
        missing = [o for o in ("good", "bad", "build_cmd") if not getattr(args, o)]
        if missing:
            raise UsageError(f"--repo needs {', '.join('--' + o.replace('_', '-') for o in missing)}")
        git = GitRange(args.repo, args.good, args.bad, args.build_cmd, args.cache or DEFAULT_CACHE)
        builds = git_builds(git)
        source = f"git {args.repo} {args.good}..{args.bad}"
    else:
        _only_with(args, "--repo DIR", ("build_cmd", "cache"))
        git = None
        builds = choose_range(read_builds(args.builds), args.good, args.bad, args.builds)
        source = f"builds {args.builds}"
    ends = tuple(h.strip() for h in args.end.split(",") if h.strip()) if args.end else ()
    step = StepRequest(
        lab=args.lab, ends=ends, baseline=builds[0], candidate=builds[-1], settings=_rounds_settings(args),
        store=args.store, duration=args.duration, suites=tuple(args.suite) if args.suite else None,
        runner=args.runner, no_lock=args.no_lock, lock_timeout=args.lock_timeout, clean_stale=args.clean_stale,
        verbose=args.verbose,
    )  # fmt: skip

    def say(line: str) -> None:
        print(f"bisect: {line}", file=sys.stderr, flush=True)

    measure = None
    if args.fleet:
        from harness.fleet.bisect import FleetSteps

        measure = FleetSteps(fleet_store, labels, say)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the bisect's summary alone
        done = run_bisect(BisectRequest(step, builds, source, git, args.resume), say, measure)
    print(render_text(done.report))
    print(f"bisect {done.bisect_id} {done.status}: wgharness results show {done.bisect_id}")
    if args.out:
        out = Path(args.out)
        with _writing(args.out):
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.md").write_text(render_markdown(done.report))
            (out / "report.html").write_text(html_page(done.report))
        print(f"reports: {args.out}/summary.md, {args.out}/report.html")
    if done.status == RunStatus.INTERRUPTED:
        return EXIT_INTERRUPTED
    return EXIT_INFRA if done.status == RunStatus.ERROR else exit_status(done.report)


def _bisect_step(args: argparse.Namespace) -> int:
    """A fleet worker's job: one step of a bisect (``--step-json``), stored with the job's id."""
    from dataclasses import replace

    from harness.codec import from_json
    from harness.run.bisect import StepRequest, run_step

    _only_with(args, "--builds or --repo", ("fleet", "label", "resume", "out", "good", "bad", "end"))
    try:
        step = from_json(args.step_json, StepRequest)
    except ValueError as exc:
        raise UsageError(f"--step-json: not a bisect step: {exc}") from None
    step = replace(step, lab=args.lab, store=args.store, runner=args.runner, no_lock=args.no_lock,
                   lock_timeout=args.lock_timeout, clean_stale=args.clean_stale, job=args.fleet_job)  # fmt: skip
    result = run_step(step)
    print(
        f"step {step.candidate.label} against {step.baseline.label}: {result.label} "
        f"after {result.rounds} round(s), run {result.run_id} {result.status}"
    )
    return EXIT_BY_STATUS.get(result.status, EXIT_INFRA)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.results.history import lab_history
    from harness.results.render.history import render_markdown, write_report
    from harness.results.store import Store

    settings = _compare_settings(args)
    metrics = settings.metrics
    with Store.open(args.store, create=False) as store:
        if args.out:
            with _writing(args.out):
                md = write_report(store, args.lab, metrics, Path(args.out), settings)
            print(md)
            print(
                f"written: {args.out}/history.md, {args.out}/history.json, {args.out}/history.html, "
                f"{args.out}/runs/ (a page per run)"
            )
        else:
            h = lab_history(store, args.lab, metrics, settings)
            print(render_markdown(args.lab, h.steps, h.changes))
    return EXIT_OK


def cmd_changes(args: argparse.Namespace) -> int:
    from harness.results.compare import DEFAULT_METRICS
    from harness.results.history import changes_of, series_of_lab
    from harness.results.render.changes import render_json, render_markdown, render_text
    from harness.results.store import Store

    with Store.open(args.store, create=False) as store:
        series = series_of_lab(store, args.lab, tuple(args.metric or DEFAULT_METRICS))
        if not series:
            raise UsageError(f"no runs of lab {args.lab!r} with these metrics to trust in {store.url}")
    changes = changes_of(series)
    print(render_json(args.lab, series, changes) if args.json else render_text(args.lab, series, changes))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "changes.md").write_text(render_markdown(args.lab, series, changes))
        (out / "changes.json").write_text(render_json(args.lab, series, changes))
        print(f"written: {args.out}/changes.md, {args.out}/changes.json", file=sys.stderr)
    return EXIT_FAILED if any(cp.alarm for cp in changes) else EXIT_OK


def cmd_noise(args: argparse.Namespace) -> int:
    from harness.results.noise import spreads
    from harness.results.render.noise import RENDERERS
    from harness.results.store import Store

    with Store.open(args.store, create=False) as store:
        if not store.list_runs(limit=1):
            print(f"no runs stored in {store.url}")
            return EXIT_OK
        found = spreads(store, lab=args.lab, runner=args.runner, metrics=tuple(args.metric or ()))
    if not found:
        print("no A/A data: no build has two trusted runs on one runner and lab (with these filters)")
        return EXIT_OK
    print(RENDERERS[args.format](found))
    return EXIT_OK


def cmd_results_export(args: argparse.Namespace) -> int:
    from harness.results.store import Store

    with Store.open(args.store, create=False) as store:
        frame = store.measurements_frame([store.resolve(r) for r in args.run] if args.run else None)
    fmt = args.format or ("parquet" if args.out.endswith(".parquet") else "csv")
    with _writing(args.out):
        if fmt == "parquet":
            frame.to_parquet(args.out, index=False)
        else:
            frame.to_csv(args.out, index=False)
    print(f"{len(frame)} measurements written to {args.out} ({fmt})")
    return EXIT_OK


def _check_out(out: str | None, *, folder: bool) -> None:
    """Before a run: what ``--out`` names can be written (a folder, or a file), so a run is
    never measured only to fail at its reports. A usage error otherwise."""
    if not out:
        return
    path = Path(out)
    if path.exists():
        if path.is_dir() != folder:
            raise UsageError(f"--out {out}: {'not a folder' if folder else 'is a folder'}")
        where = path if folder else path.parent
    else:
        where = path.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise UsageError(f"--out {out}: cannot write: {where} is not a folder")
    if not os.access(where, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot write in {where}")


@contextlib.contextmanager
def _writing(out: str) -> Iterator[None]:
    """Writing what ``--out`` names: an error of the file system is a usage error."""
    try:
        yield
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename and str(exc.filename) != out else ""
        raise UsageError(f"--out {out}: cannot write{where}: {exc.strerror or exc}") from None


def cmd_results_import(args: argparse.Namespace) -> int:
    from harness.results.benchimport import import_pytest_benchmark
    from harness.results.store import Store

    with Store.open(args.store) as store:
        run_id = import_pytest_benchmark(store, args.file, build=args.build)
    print(f"imported {args.file} as run {run_id}")
    return EXIT_OK


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.05, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (exclusive), got {value}")
    return value


def _runner(text: str) -> str:
    name = text.strip()
    if not name or len(name) > 255 or any(c.isspace() for c in name):
        raise argparse.ArgumentTypeError(
            f"a runner is a name without spaces, up to 255 characters, got {text!r}"
        )
    return name


def _add_runner_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runner",
        type=_runner,
        metavar="NAME",
        help="the runner's name stored with the run, part of its fingerprint (default: this host's name)",
    )


MAX_OPTION = 1_000_000
"""The bound of every number option (a count, seconds): finite, and sane."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > MAX_OPTION:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_OPTION}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds such as 600, got {text!r}") from None
    if not 0 < value <= MAX_OPTION:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_OPTION}, got {text}")
    return value


def _add_lock_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-lock",
        action="store_true",
        help="measure without waiting for this machine's benchmark lock (the run records whether "
        "another measured beside it)",
    )
    p.add_argument(
        "--lock-timeout",
        type=_seconds,
        metavar="S",
        help="give up (exit 3) after waiting S seconds for the lock (default: wait as long as it takes)",
    )


def _add_fleet_job_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet-job", metavar="ID", help=argparse.SUPPRESS)  # a worker's: stored as runs.job


def _add_measure_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", action="append", metavar="NAME", help="run only this suite (repeatable)")
    p.add_argument("--duration", type=_positive_int, metavar="S", help="seconds measured per flow")
    p.add_argument("--repeat", type=_positive_int, metavar="N", help="repetitions of every flow")


def _add_fleet_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    store_help = "the shared store, PostgreSQL (postgresql://USER:PASSWORD@HOST/DB); the queue is beside it"
    submit = sub.add_parser("submit", help="queue a job for the fleet's workers (docs/fleet.md)")
    kinds = submit.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    for kind, what in (("run", "a lab run, as `wgharness run`"),
                       ("nightly", "a nightly, as `wgharness nightly` (its reports on the worker)")):  # fmt: skip
        p = kinds.add_parser(kind, help=what)
        p.add_argument("lab", help="lab file (TOML); its text is queued with its path")
        p.add_argument("--label", action="append", metavar="L",
                       help="a label the runner must have (repeatable, or L1,L2)")  # fmt: skip
        _add_measure_options(p)
        p.add_argument(
            "--build", required=kind == "nightly", metavar="LABEL", help="build label stored with the run"
        )
        if kind == "nightly":
            p.add_argument("--baseline", required=True, metavar="SELECTOR", help="e.g. build:v1.2 or latest")
            p.add_argument("--out", required=True, metavar="DIR", help="reports' folder, on the worker")
        p.add_argument("--store", metavar="URL", required=True, help=store_help)
        p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "worker",
        help="run the fleet's queued jobs on this machine, one at a time (docs/fleet.md)",
        description="Exit status: 0 (stopped by --once or --max-jobs), 128 + the signal that stopped it "
        "(a running job is interrupted and queued again), 2 usage.",
    )
    p.add_argument("--store", metavar="URL", required=True, help=store_help)
    _add_runner_option(p)
    p.add_argument("--labels", metavar="L1,L2", help="what this runner has: it takes jobs needing only these")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--once", action="store_true", help="stop when no job is waiting")
    stop.add_argument("--max-jobs", type=_positive_int, metavar="N", help="stop after N jobs")
    p.add_argument("--lease", type=_seconds, default=60.0, metavar="S",
                   help="a worker silent this long has lost its job to another (default 60)")  # fmt: skip
    _add_lock_options(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("jobs", help="the fleet's jobs: queued, running, done, failed, with their runs")
    p.add_argument("--store", metavar="URL", required=True, help=store_help)
    p.set_defaults(func=cmd_jobs)


def _add_clean_stale_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clean-stale",
        action="store_true",
        help="first remove the labs a killed harness left on this machine (as `wgharness clean`; "
        "WGH_CLEAN_STALE=1 does the same for every run)",
    )


def _add_threshold_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--alpha", type=_fraction, help="significance level (default 0.05; with adaptive rounds 0.008)"
    )
    p.add_argument("--min-effect", type=_fraction, help="minimum change that counts (default 0.05 = 5%%)")
    p.add_argument("--thresholds", metavar="FILE", help="TOML: default = 0.05 and [metrics] NAME = fraction")


def _add_compare_options(p: argparse.ArgumentParser, store_help: str) -> None:
    p.add_argument("--metric", action="append", help="metric to compare (repeatable; default receiver_bps)")
    _add_threshold_options(p)
    p.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare runs whose fingerprints differ (runner, lab file, host CPU, kernel, TCP settings...)",
    )
    p.add_argument("--store", metavar="URL", help=store_help)


def _add_rounds_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-rounds", type=_positive_int, metavar="N", help="adaptive rounds: at most N rounds (default 60)"
    )
    p.add_argument("--baseline-program", metavar="PATH", help="adaptive rounds: the baseline's wireguard-go")
    p.add_argument(
        "--candidate-program", metavar="PATH", help="adaptive rounds: the candidate's wireguard-go"
    )


def cmd_repro(args: argparse.Namespace) -> int:
    import json

    from harness.codec import decode
    from harness.errors import UsageError
    from harness.repro.expect import ExpectationResult
    from harness.repro.run import compare, load, run_scenario, verdict_lines

    scenario, manifest, files = load(args.target)
    _check_out(args.out, folder=False)
    if args.check:
        print(
            f"{args.target}: scenario {scenario.name} is valid: subject {scenario.subject}, "
            f"{len(scenario.steps)} steps, {len(scenario.expectations)} expectations"
        )
        return EXIT_OK
    if os.geteuid() != 0:
        raise UsageError("repro needs root (the lab creates network namespaces)")
    original: list[ExpectationResult] = []
    if manifest is not None:  # the bundle's own verdicts, read before the run
        try:
            doc = json.loads(files.get("verdicts.json", b"{}"))
            original = [decode(v, ExpectationResult) for v in doc.get("verdicts", [])]
        except (ValueError, AttributeError, RecursionError) as exc:
            raise UsageError(f"{args.target}: verdicts.json: {exc}") from None
    impl = args.impl if args.impl is not None else (manifest.impl if manifest else None)
    result = run_scenario(
        scenario,
        impl=impl,
        out=args.out,
        store_url=args.store,
        build=args.build,
        lock=_lock_policy(args),
        runner=args.runner,
        clean_stale=args.clean_stale,
    )
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.status not in (RunStatus.PASSED, RunStatus.FAILED):
        print(f"wgharness repro: run {result.run_id} {result.status}: {result.error}", file=sys.stderr)
        return EXIT_BY_STATUS.get(result.status, EXIT_INFRA)
    if manifest is None:
        print("\n".join(verdict_lines(result.verdicts)))
        print(f"run {result.run_id}: {result.status}; bundle {result.bundle}")
        return EXIT_BY_STATUS[result.status]
    text, same = compare(original, result.verdicts)
    print(text)
    print(
        f"run {result.run_id} (bundle run {manifest.run_id}): "
        + ("same verdicts" if same else "a verdict changed")
        + f"; bundle {result.bundle}"
    )
    return EXIT_OK if same else EXIT_FAILED


def cmd_clean(args: argparse.Namespace) -> int:
    from harness.run.stale import clean, report

    if os.geteuid() != 0 and not args.dry_run:
        raise UsageError("clean needs root (it deletes network namespaces and stops the labs' processes)")
    cleaned, labs = clean(args.lab_id, dry_run=args.dry_run)
    print("\n".join(report(cleaned, labs, dry_run=args.dry_run)))
    return EXIT_INFRA if any(c.failed for c in cleaned) else EXIT_OK


def _fleet_store(args: argparse.Namespace) -> str:
    """The store of a fleet command: PostgreSQL, and procrastinate installed."""
    from harness.fleet.postgres import queue_place
    from harness.fleet.queue import need_procrastinate

    queue_place(args.store)
    need_procrastinate()
    return str(args.store)


def cmd_submit(args: argparse.Namespace) -> int:
    from harness.fleet.jobs import NightlyArgs, RunArgs, parse_labels
    from harness.fleet.queue import lab_file_of, submit

    store = _fleet_store(args)
    labels = parse_labels(args.label)
    lab = lab_file_of(args.lab)
    common = dict(lab=lab, suites=tuple(args.suite or ()), duration=args.duration, repeat=args.repeat)
    if args.kind == "nightly":
        from harness.results.compare import parse_selector

        parse_selector(args.baseline)
        job: object = NightlyArgs(build=args.build, baseline=args.baseline, out=args.out, **common)
    else:
        job = RunArgs(build=args.build, **common)
    job_id = submit(store, args.kind, job, labels)
    print(f"job {job_id}: {args.kind} {args.lab}" + (f" (labels {','.join(labels)})" if labels else ""))
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    import socket

    from harness.fleet.jobs import parse_labels
    from harness.fleet.queue import WorkerOptions, run_worker
    from harness.run.pytest_plugin import root_problem

    store = _fleet_store(args)
    labels = parse_labels(args.labels)
    problem = root_problem()
    if problem is not None:
        raise UsageError(f"worker: {problem}")
    run_options: tuple[str, ...] = ("--no-lock",) if args.no_lock else ()
    if args.lock_timeout is not None:
        run_options += ("--lock-timeout", str(args.lock_timeout))
    options = WorkerOptions(store=store, runner=args.runner or socket.gethostname(), labels=labels,
                            wait=not args.once, max_jobs=args.max_jobs, lease=args.lease,
                            run_options=run_options)  # fmt: skip
    return run_worker(options)


def cmd_jobs(args: argparse.Namespace) -> int:
    from harness.fleet.queue import list_jobs
    from harness.results.store import Store

    store_url = _fleet_store(args)
    try:
        store: Store | None = Store.open(store_url, create=False)
    except HarnessError:
        store = None  # no run stored yet
    try:
        rows = list_jobs(store_url, store)
    finally:
        if store is not None:
            store.close()
    if not rows:
        print("no jobs queued")
        return EXIT_OK
    print(f"{'job':>6}  {'status':<9} {'tries':>5}  {'labels':<14} {'runs (runner)':<40} what")
    for r in rows:
        runs = ", ".join(f"{run_id[:12]} {status} ({runner})" for run_id, status, runner in r.runs) or "-"
        print(
            f"{r.id:>6}  {r.status:<9} {r.attempts:>5}  {','.join(r.labels) or '-':<14} {runs:<40} {r.what}"
        )
    return EXIT_OK


def cmd_pyref(args: argparse.Namespace) -> int:
    from harness.pyref.io.daemon import main as pyref_main

    return pyref_main(args.ifname, args.foreground)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wgharness", description="Performance and regression harness for WireGuard.")
    parser.add_argument("--version", action="version", version=f"wgharness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    store_help = "result store URL (default: sqlite:///results/wgharness.db)"
    p = sub.add_parser("run", help="bring a lab up, run its suites, store the run, tear it down")
    p.add_argument("lab", help="lab file (TOML)")
    _add_measure_options(p)
    p.add_argument("--build", metavar="LABEL", help="build label stored with the run")
    _add_runner_option(p)
    _add_fleet_job_option(p)
    p.add_argument("--store", metavar="URL", help=store_help)
    p.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output")
    _add_lock_options(p)
    _add_clean_stale_option(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="execute nothing, connect nowhere: print every command, host by host",
    )
    p.set_defaults(func=cmd_run)

    results = sub.add_parser("results", help="stored runs").add_subparsers(
        dest="results_command", required=True, parser_class=_Parser
    )
    p = results.add_parser("list", help="stored runs, newest first")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.add_argument("--limit", type=_positive_int, default=50)
    p.set_defaults(func=cmd_results_list)
    p = results.add_parser("show", help="one run's figures and metadata")
    p.add_argument("run", help="run id, a unique prefix of one, or 'latest'")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.add_argument("--artifact", metavar="NAME", help="print this stored raw output instead")
    p.set_defaults(func=cmd_results_show)
    p = results.add_parser("export", help="measurements with their metadata as CSV or Parquet")
    p.add_argument("run", nargs="*", help="run ids or prefixes (default: all)")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--format", choices=("csv", "parquet"), help="default: from the file's ending")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.set_defaults(func=cmd_results_export)
    p = results.add_parser("import-benchmark", help="store a pytest-benchmark JSON file as a run")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--build", metavar="LABEL")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.set_defaults(func=cmd_results_import)

    p = sub.add_parser("nightly", help="run a lab for a build, compare with a baseline, write reports")
    p.add_argument("lab", help="lab file (TOML)")
    p.add_argument("--build", required=True, metavar="LABEL", help="build label of this run")
    p.add_argument("--baseline", required=True, metavar="SELECTOR", help="e.g. build:v1.2 or latest")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder for summary.md, report.html, junit.xml"
    )
    p.add_argument("--require-baseline", action="store_true", help="exit 3 when no baseline run matches")
    p.add_argument("--suite", action="append", metavar="NAME")
    p.add_argument("--duration", type=_positive_int, metavar="S")
    p.add_argument("--repeat", type=_positive_int, metavar="N")
    p.add_argument("-v", "--verbose", action="store_true")
    _add_lock_options(p)
    _add_clean_stale_option(p)
    _add_runner_option(p)
    _add_compare_options(p, store_help)
    p.add_argument(
        "--rounds",
        choices=("adaptive",),
        help="run the baseline build again beside this one, round after round, until every metric is "
        "decided or --max-rounds (docs/comparing.md); --baseline is then build:LABEL",
    )
    _add_rounds_options(p)
    _add_fleet_job_option(p)
    p.set_defaults(func=cmd_nightly)

    p = sub.add_parser(
        "compare",
        help="compare stored runs: verdict per metric, exit 1 on a regression",
        description="SELECTOR: latest | build:LABEL | range:START..END (ISO times) | run ids or prefixes, comma-separated",
    )
    p.add_argument("baseline", metavar="BASELINE")
    p.add_argument("candidate", metavar="CANDIDATE")
    p.add_argument("--suite", help="only this suite")
    p.add_argument("--impl", help="only runs where this implementation ran (on --host if given)")
    p.add_argument("--host", help="with --impl: the host it ran on")
    _add_compare_options(p, store_help)
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument(
        "--rerun",
        metavar="LAB",
        help="instead of stored runs, run both builds (build:LABEL each) in adaptive rounds on this lab",
    )
    p.add_argument(
        "--duration", type=_positive_int, metavar="S", help="with --rerun: seconds measured per flow"
    )
    _add_rounds_options(p)
    _add_lock_options(p)
    _add_clean_stale_option(p)
    _add_runner_option(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "bisect",
        help="find the first bad build of a range: each step adaptive rounds of a build against an end",
        description="Builds: --builds FILE (a line per build: LABEL PROGRAM, good first, bad last) or FOLDER "
        "(its executable files by name), or --repo DIR --good C1 --bad C2 --build-cmd 'CMD {out} {commit}'. "
        "Stored as a run of lab bisect:LAB; an unfinished bisect of the same inputs is resumed. "
        "Exit status: 0 no regression in range, 1 a first bad build found, 2 usage, 3 infrastructure, "
        "4 ambiguous, 130/143/129 interrupted (docs/bisect.md).",
    )
    p.add_argument("lab", help="lab file (TOML)")
    p.add_argument(
        "--end",
        metavar="HOST[,HOST]",
        help="the tunnel end(s) that run the builds (default: the lab's one end with a program of its own)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--builds", metavar="FILE|DIR", help="the builds in order (see above)")
    source.add_argument(
        "--repo", metavar="DIR", help="a git repository: bisect its commits from --good to --bad"
    )
    source.add_argument("--step-json", metavar="JSON", help=argparse.SUPPRESS)  # a fleet worker's job
    p.add_argument("--good", metavar="REF", help="the good commit (with --builds: the good build's label)")
    p.add_argument("--bad", metavar="REF", help="the bad commit (with --builds: the bad build's label)")
    p.add_argument(
        "--build-cmd", metavar="CMD", help="with --repo: builds {out} from the worktree of {commit}"
    )
    p.add_argument(
        "--cache", metavar="DIR", help="with --repo: built commits (default: results/bisect-cache)"
    )
    p.add_argument("--resume", metavar="BISECT_ID", help="take over the measured steps of this bisect")
    p.add_argument("--out", metavar="DIR", help="also write summary.md and report.html here")
    p.add_argument("--suite", action="append", metavar="NAME")
    p.add_argument("--duration", type=_positive_int, metavar="S", help="seconds measured per flow")
    p.add_argument(
        "--max-rounds",
        type=_positive_int,
        metavar="N",
        help="adaptive rounds per step: at most N (default 60)",
    )
    p.add_argument("--metric", action="append", help="metric decided (repeatable; default receiver_bps)")
    _add_threshold_options(p)
    p.add_argument("-v", "--verbose", action="store_true")
    _add_lock_options(p)
    _add_clean_stale_option(p)
    _add_runner_option(p)
    p.add_argument("--store", metavar="URL", help=store_help)
    p.add_argument(
        "--fleet",
        action="store_true",
        help="have each step measured by a fleet worker (a PostgreSQL --store; the builds' programs at "
        "paths every worker sees: docs/fleet.md)",
    )
    p.add_argument(
        "--label",
        action="append",
        metavar="L[,L]",
        help="with --fleet: only workers with these labels measure the steps",
    )
    _add_fleet_job_option(p)
    p.set_defaults(func=cmd_bisect)

    p = sub.add_parser("report", help="each metric's history across builds, with change points")
    p.add_argument("lab", metavar="LAB_NAME", help="the lab's name (as stored, e.g. local)")
    p.add_argument("--metric", action="append", help="metric (repeatable; default receiver_bps)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="also write history.md, history.json, history.html and a page per run (runs/) here",
    )
    _add_threshold_options(p)
    p.add_argument("--store", metavar="URL", help=store_help)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "changes",
        help="change points of each metric's history, per series; exit 1 on a new regression",
        description="Reads the store only: a store that does not exist is an error (exit 2), never created. "
        "Exit status: 0 no new change point regressed, 1 one did, 2 usage (no such lab in the store).",
    )
    p.add_argument("lab", metavar="LAB_NAME", help="the lab's name (as stored, e.g. local)")
    p.add_argument("--metric", action="append", metavar="M", help="metric (repeatable; default receiver_bps)")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")
    p.add_argument("--out", metavar="DIR", help="also write changes.md and changes.json here")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.set_defaults(func=cmd_changes)

    p = sub.add_parser(
        "noise",
        help="each metric's run-to-run spread per runner and lab (A/A), and the rounds to start with",
        description="Reads the store only: a store that does not exist is an error (exit 2), never created.",
    )
    p.add_argument("--lab", metavar="NAME", help="only this lab (its stored name)")
    p.add_argument("--runner", metavar="NAME", help="only runs of this runner")
    p.add_argument("--metric", action="append", metavar="M", help="only this metric (repeatable)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.set_defaults(func=cmd_noise)

    p = sub.add_parser(
        "repro",
        help="run a bug-reproduction scenario (or rerun a bundle): verdicts, a stored run, a bundle",
        description="Exit status: 0 every expectation held (a bundle: the same verdicts as the bundle's), "
        "1 one did not (a bundle: a verdict changed), 2 usage, 3 infrastructure.",
    )
    p.add_argument("target", metavar="SCENARIO|BUNDLE", help="a scenario file (TOML) or a bundle (.tar.gz)")
    p.add_argument(
        "--impl", metavar="NAME", help="implementation of the scenario's subject end (kernel: a vm)"
    )
    p.add_argument(
        "--out", metavar="BUNDLE", help="write the bundle here (default: results/repro-NAME-RUN.tar.gz)"
    )
    p.add_argument("--build", metavar="LABEL", help="build label stored with the run")
    _add_runner_option(p)
    p.add_argument("--store", metavar="URL", help=store_help)
    p.add_argument("--check", action="store_true", help="only validate the scenario")
    _add_lock_options(p)
    _add_clean_stale_option(p)
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser(
        "pyref",
        help="start a pyref WireGuard interface, as `wireguard-go IFNAME` starts one",
        description="Creates the TUN interface IFNAME and its UAPI socket /var/run/wireguard/IFNAME.sock "
        "(configure it with `wg`), then runs in the background unless -f or WG_PROCESS_FOREGROUND=1. "
        "LOG_LEVEL=verbose|error|silent.",
    )
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    p.add_argument("ifname", metavar="IFNAME")
    p.set_defaults(func=cmd_pyref)

    p = sub.add_parser(
        "clean",
        help="find and remove what labs of a killed harness left behind (namespaces, processes, QEMU...)",
        description="A lab is stale when the harness that made it has ended (or its PID now belongs to "
        "another program). Only what a stale lab's record under /run/wgharness/labs names is removed, "
        "on this machine and on the SSH and Windows hosts it names; labs in use are left alone. "
        "Exit status 0, or 3 if something could not be removed.",
    )
    p.add_argument(
        "lab_id", nargs="*", metavar="LAB_ID", help="only the labs whose id begins so (default: all)"
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=cmd_clean)

    _add_fleet_parsers(sub)

    lab = sub.add_parser("lab", help="lab files").add_subparsers(
        dest="lab_command", required=True, parser_class=_Parser
    )
    p = lab.add_parser("check", help="validate a lab file")
    p.add_argument("lab")
    p.add_argument(
        "--hosts",
        action="store_true",
        help="also check, read-only, what each host has and lacks: one table; exit 0 all there, "
        "1 something missing, 3 a host unreachable",
    )
    p.set_defaults(func=cmd_lab_check)
    return parser


LAB_COMMANDS = frozenset({cmd_run, cmd_nightly, cmd_compare, cmd_repro, cmd_clean, cmd_bisect})
"""The commands that may bring a lab up (or take one down): SIGTERM and SIGHUP end them as
Ctrl-C does, with exit status 128 + the signal (`harness.run.cleanup`)."""


def main(argv: Sequence[str] | None = None) -> int:
    from harness.run.cleanup import exit_status, interrupt_on_signals

    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        signals = interrupt_on_signals() if func in LAB_COMMANDS else contextlib.nullcontext()
        with signals:
            status = func(args)
    except BrokenPipeError:
        # Whoever read the output stopped reading (`| head`): end quietly, as a shell tool
        # killed by SIGPIPE would, and let nothing flush to the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except HarnessError as exc:
        print(f"wgharness: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("wgharness: interrupted", file=sys.stderr)
        return exit_status(EXIT_INTERRUPTED)
    return exit_status(status) if status == EXIT_INTERRUPTED else status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
