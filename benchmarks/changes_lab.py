"""`wgharness changes` on a real history with a real step (as root; serialise with
the other lab users: ``flock /tmp/wgh-integration.lock``):

  python benchmarks/changes_lab.py [--builds 30] [--step-at 21] [--slower 0.12] [--duration 1]
                                   [--nice N] [--store URL] [--keep DIR]

``--builds`` runs of benchmarks/overhead.toml (one TCP flow through wireguard-go,
``--duration`` seconds measured after 1 s omitted), each a real `wgharness run`
labelled build-01, build-02, ... into a fresh SQLite store, runner
``changes-lab``. Every run uses the same lab file (its hash is part of the
fingerprint), whose wireguard-go is a wrapper: from build ``--step-at`` on, the
wrapper limits the tunnel interface with tbf, a stand-in for a slower build. The
limit is set from the builds before the step: their median throughput times
1 - ``--slower``, over a calibration factor measured on two extra runs (into a
scratch store) so the step comes out near ``--slower``.

Then `wgharness changes` on the store (its output as it prints it), the truth
(the median of the builds before the step and from it on), and the nightly
replay: `changes` asked after every build from the step on, as a nightly job
would, until it reports the step as a new regression.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.results.changes import change_points  # noqa: E402
from harness.results.history import series_of_lab  # noqa: E402
from harness.results.store import Store  # noqa: E402
from harness.targets.links import tbf_burst_bytes  # noqa: E402

RUNNER = "changes-lab"
LAB = "overhead"
WRAPPER = """#!/bin/sh
# wireguard-go whose tunnel interface sends at most the rate in {rate_file} (tbf);
# an empty file: no limit.
case "$1" in -*|"") exec {program} "$@" ;; esac
rate=$(cat {rate_file} 2>/dev/null)
if [ -n "$rate" ]; then
    ( i=0; while [ $i -lt 100 ]; do
        tc qdisc replace dev "$1" root tbf rate "${{rate}}bit" burst {burst} latency 50ms 2>/dev/null && exit 0
        i=$((i + 1)); sleep 0.05; done ) &
fi
exec {program} "$@"
"""


def run(lab: Path, build: str, duration: int, store: str, nice: int) -> None:
    """One `wgharness run` of ``lab`` labelled ``build`` into ``store`` at scheduling
    priority ``nice``; its output kept quiet."""
    argv = ["nice", "-n", str(nice), sys.executable, "-m", "harness", "run", str(lab), "--build", build, "--duration", str(duration),
            "--store", store, "--runner", RUNNER]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(
            f"changes_lab: {build}: wgharness run exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def throughput(store: str) -> list[tuple[str, float]]:
    """Each build's median receiver rate, oldest first."""
    with Store.open(store) as s:
        (series,) = series_of_lab(s, LAB, ("receiver_bps",))
    return [(p.label, p.value) for p in series.points]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--builds", type=int, default=30)
    parser.add_argument("--step-at", type=int, default=21, help="the first slower build (1-based)")
    parser.add_argument("--slower", type=float, default=0.12, help="the step to aim at (0.12: 12%% slower)")
    parser.add_argument("--duration", type=int, default=1)
    parser.add_argument(
        "--nice", type=int, default=0, help="run the labs at this niceness (-10: before other work)"
    )
    parser.add_argument("--store", help="SQLite URL to write (default: a fresh one in a temporary folder)")
    parser.add_argument("--keep", metavar="DIR", help="keep the lab file, wrapper and store here")
    args = parser.parse_args(argv)
    if not 2 <= args.step_at <= args.builds:
        parser.error("--step-at: from 2 to --builds")
    program = shutil.which("wireguard-go")
    if program is None:
        sys.exit("changes_lab: wireguard-go is not on PATH")

    work = Path(args.keep or tempfile.mkdtemp(prefix="wgh-changes-lab-"))
    work.mkdir(parents=True, exist_ok=True)
    store = args.store or f"sqlite:///{work / 'changes.db'}"
    rate_file = work / "rate"
    rate_file.write_text("")
    wrapper = work / "wireguard-go-tbf"
    lab = work / "overhead.toml"
    text = (ROOT / "benchmarks" / "overhead.toml").read_text()
    lab.write_text(text.replace('impl = "wireguard-go"', f'impl = "wireguard-go"\nprogram = "{wrapper}"'))
    began = time.monotonic()

    def limit(rate: int | None) -> None:
        rate_file.write_text(str(rate) if rate else "")
        wrapper.write_text(WRAPPER.format(rate_file=rate_file, program=program,
                                          burst=tbf_burst_bytes(rate or 1)))  # fmt: skip
        wrapper.chmod(0o755)

    limit(None)
    for i in range(1, args.step_at):
        run(lab, f"build-{i:02d}", args.duration, store, args.nice)
        print(f"[{time.monotonic() - began:5.0f}s] build-{i:02d}: no limit", file=sys.stderr)
    free = statistics.median(v for _, v in throughput(store))

    # Calibrate: how much of a tbf rate on the tunnel interface comes through as goodput.
    scratch = f"sqlite:///{work / 'calibration.db'}"
    probe = int(free * (1 - args.slower))
    limit(probe)
    for k in range(2):
        run(lab, f"calibration-{k}", args.duration, scratch, args.nice)
    got = statistics.median(v for _, v in throughput(scratch))
    rate = int(probe * probe / got)
    print(f"[{time.monotonic() - began:5.0f}s] free median {free / 1e6:.1f} Mbit/s; tbf {probe / 1e6:.0f} Mbit/s "
          f"gave {got / 1e6:.1f}; the step's limit: {rate / 1e6:.0f} Mbit/s", file=sys.stderr)  # fmt: skip

    limit(rate)
    for i in range(args.step_at, args.builds + 1):
        run(lab, f"build-{i:02d}", args.duration, store, args.nice)
        print(
            f"[{time.monotonic() - began:5.0f}s] build-{i:02d}: tbf {rate / 1e6:.0f} Mbit/s", file=sys.stderr
        )

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run([sys.executable, "-m", "harness", "changes", LAB, "--store", store],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    print(f"$ wgharness changes {LAB} --store {store}   (exit {shown.returncode})\n")
    print(shown.stdout)

    values = throughput(store)
    before = [v for _, v in values[: args.step_at - 1]]
    after = [v for _, v in values[args.step_at - 1 :]]
    truth = statistics.median(after) / statistics.median(before) - 1
    print("| builds | tbf on the tunnel | median | CV of the build medians |")
    print("|---|---|---|---|")
    for name, vs, tbf in ((f"build-01..build-{args.step_at - 1:02d}", before, "none"),
                          (f"build-{args.step_at:02d}..build-{args.builds:02d}", after, f"{rate / 1e6:.0f} Mbit/s")):  # fmt: skip
        print(f"| {name} | {tbf} | {statistics.median(vs) / 1e6:.1f} Mbit/s | "
              f"{statistics.stdev(vs) / statistics.mean(vs):.1%} |")  # fmt: skip
    print(f"\nthe step by the true split: {truth:+.1%}")

    with Store.open(store) as s:
        (series,) = series_of_lab(s, LAB, ("receiver_bps",))
    for n in range(args.step_at, args.builds + 1):
        night = replace(series, points=series.points[:n])
        alarms = [cp for cp in change_points(night) if cp.alarm]
        if alarms:
            cp = alarms[0]
            print(f"nightly replay: first reported at build-{n:02d} ({n - args.step_at + 1} builds with the step), "
                  f"as a new regression from {cp.first_bad.label}: {cp.change:+.1%} [{cp.low:+.1%}, {cp.high:+.1%}], "
                  f"p={cp.p:.2g}")  # fmt: skip
            break
    else:
        print("nightly replay: never reported as a new regression")
    print(f"\n({time.monotonic() - began:.0f} s)")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
