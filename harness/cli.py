"""The `wgharness` command. Subcommands are built in `build_parser` and each is
one small function; every deliberate error ends as one line on stderr with
the exit status of its kind (2 for usage, 3 for infrastructure)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from harness import __version__
from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, EXIT_USAGE, HarnessError, UsageError

EXIT_INTERRUPTED = 130
EXIT_BY_STATUS = {
    "passed": EXIT_OK,
    "failed": EXIT_FAILED,
    "error": EXIT_INFRA,
    "interrupted": EXIT_INTERRUPTED,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _suites_dir() -> Path:
    import suites

    return Path(suites.__file__).parent


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    from harness.lab import load_lab
    from harness.pytest_plugin import RUN_KEY
    from harness.session import RunSession
    from harness.store import Store

    lab = load_lab(args.lab).with_overrides(duration=args.duration, repeat=args.repeat, suites=args.suite)
    if os.geteuid() != 0:
        raise UsageError("wgharness run: the local lab needs root (it creates network namespaces)")
    Store.open(args.store).close()  # a bad --store is a usage error before anything starts
    files = []
    for suite in lab.suites:
        path = _suites_dir() / f"test_{suite.name}.py"
        if not path.is_file():
            raise UsageError(f"{args.lab}: suites.{suite.name}: no suite module {path}")
        files.append(str(path))

    class Catch:
        run: RunSession | None = None

        @pytest.hookimpl(trylast=True)
        def pytest_configure(self, config: pytest.Config) -> None:
            self.run = config.stash.get(RUN_KEY, None)

    catch = Catch()
    argv = [*files, "--lab", args.lab, "-p", "no:cacheprovider", "--rootdir", str(_suites_dir())]
    for flag, value in (
        ("--lab-store", args.store),
        ("--lab-build", args.build),
        ("--lab-duration", args.duration),
        ("--lab-repeat", args.repeat),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for name in args.suite or []:
        argv += ["--lab-suite", name]
    argv += ["-v"] if args.verbose else ["-q"]
    code = pytest.main(argv, plugins=[catch])
    if catch.run is None or catch.run.status is None:
        print(
            f"wgharness run: pytest ended with status {int(code)} before the run was stored",
            file=sys.stderr,
        )
        return EXIT_INFRA
    return EXIT_BY_STATUS.get(catch.run.status, EXIT_INFRA)


def cmd_results_list(args: argparse.Namespace) -> int:
    from harness.store import Store
    from harness.summary import runs_table

    store = Store.open(args.store)
    try:
        runs = store.list_runs(limit=args.limit)
        print(runs_table(runs) if runs else f"no runs stored in {store.url}")
    finally:
        store.close()
    return EXIT_OK


def cmd_results_show(args: argparse.Namespace) -> int:
    from harness.store import Store
    from harness.summary import run_summary

    store = Store.open(args.store)
    try:
        if args.artifact:
            sys.stdout.buffer.write(store.get_artifact(args.run, args.artifact))
            return EXIT_OK
        details = store.get_run(args.run)
        print(run_summary(details))
        print()
        for host in details.hosts:
            f = host.facts
            print(
                f"host {host.host}: {host.impl or '-'} {host.impl_version or ''} build {host.build or '-'}; "
                f"{f.get('os', '?')}, kernel {f.get('kernel', '?')}, {f.get('cpu_model', '?')} x{f.get('cores', '?')}"
            )
        if details.artifacts:
            print(f"artifacts ({len(details.artifacts)}): {', '.join(details.artifacts)}")
            print(f"  read one with: wgharness results show {details.run.id} --artifact NAME")
    finally:
        store.close()
    return EXIT_OK


def cmd_lab_check(args: argparse.Namespace) -> int:
    from harness.lab import load_lab

    lab = load_lab(args.lab)
    ends = ", ".join(f"{e.host}={e.impl} {e.address}" for e in lab.tunnel.ends)
    suites = ", ".join(s.name for s in lab.suites)
    print(
        f"{args.lab}: lab {lab.name} is valid: {len(lab.hosts)} hosts, {len(lab.links)} links; tunnel {ends}; suites {suites}"
    )
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare import DEFAULT_METRICS, Settings, compare, load_thresholds, parse_selector
    from harness.compare_report import RENDERERS
    from harness.store import Store

    baseline, candidate = parse_selector(args.baseline), parse_selector(args.candidate)
    default, per_metric = load_thresholds(args.thresholds) if args.thresholds else (0.05, {})
    if args.min_effect is not None:
        default = args.min_effect
    settings = Settings(
        alpha=args.alpha,
        default_min_effect=default,
        min_effect=per_metric,
        metrics=tuple(args.metric) if args.metric else DEFAULT_METRICS,
        suite=args.suite,
        impl=args.impl,
        host=args.host,
        allow_mismatch=args.allow_mismatch,
    )
    store = Store.open(args.store)
    try:
        result = compare(store, baseline, candidate, settings)
    finally:
        store.close()
    print(RENDERERS[args.format](result))
    return result.exit_status()


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.05, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (exclusive), got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wgharness", description="Performance and regression harness for WireGuard.")
    parser.add_argument("--version", action="version", version=f"wgharness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    store_help = "result store URL (default: sqlite:///results/wgharness.db)"
    p = sub.add_parser("run", help="bring a lab up, run its suites, store the run, tear it down")
    p.add_argument("lab", help="lab file (TOML)")
    p.add_argument("--suite", action="append", metavar="NAME", help="run only this suite (repeatable)")
    p.add_argument("--duration", type=_positive_int, metavar="S", help="seconds measured per flow")
    p.add_argument("--repeat", type=_positive_int, metavar="N", help="repetitions of every flow")
    p.add_argument("--build", metavar="LABEL", help="build label stored with the run")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output")
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

    p = sub.add_parser(
        "compare",
        help="compare stored runs: verdict per metric, exit 1 on a regression",
        description="SELECTOR: latest | build:LABEL | range:START..END (ISO times) | run ids or prefixes, comma-separated",
    )
    p.add_argument("baseline", metavar="BASELINE")
    p.add_argument("candidate", metavar="CANDIDATE")
    p.add_argument("--metric", action="append", help="metric to compare (repeatable; default receiver_bps)")
    p.add_argument("--suite", help="only this suite")
    p.add_argument("--impl", help="only runs where this implementation ran (on --host if given)")
    p.add_argument("--host", help="with --impl: the host it ran on")
    p.add_argument("--alpha", type=_fraction, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--min-effect", type=_fraction, help="minimum change that counts (default 0.05 = 5%%)")
    p.add_argument("--thresholds", metavar="FILE", help="TOML: default = 0.05 and [metrics] NAME = fraction")
    p.add_argument(
        "--allow-mismatch", action="store_true", help="compare runs whose CPU, kernel or lab differ"
    )
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--store", metavar="URL", help=store_help)
    p.set_defaults(func=cmd_compare)

    lab = sub.add_parser("lab", help="lab files").add_subparsers(
        dest="lab_command", required=True, parser_class=_Parser
    )
    p = lab.add_parser("check", help="validate a lab file")
    p.add_argument("lab")
    p.set_defaults(func=cmd_lab_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except HarnessError as exc:
        print(f"wgharness: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("wgharness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
