"""`wgharness repro`: run a scenario (or a bundle's scenario again) on the local lab.

One run: the lab comes up with the outer link captured from the start and,
when the scenario impairs the path, netem or the relay in place; the timeline
plays; the expectations become verdicts; everything is stored as a run (its
measured values and files) and written as one bundle. The lab always comes
down, and the run is stored as failed/error/interrupted if it breaks.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.codec import encode
from harness.errors import HarnessError
from harness.impl.config import render_setconf
from harness.keys import redact_key_text
from harness.progress import Progress
from harness.repro.bundle import FIRST, FORMAT, Manifest, read_bundle, write_bundle
from harness.repro.expect import ExpectationResult, ExpectationStatus, evaluate
from harness.repro.scenario import Scenario, parse_scenario
from harness.repro.timeline import Observations, Timeline
from harness.results.records import Direction, Measurement, RunStatus
from harness.results.store import Store, mask_passwords
from harness.run.cleanup import signals_deferred
from harness.run.hostlock import LockPolicy
from harness.run.orchestrator import LabInstance
from harness.run.session import RunSession
from harness.run.stale import before_run
from harness.targets.base import HostKind
from harness.targets.ledger import HERE, Forget, Ledger, Resource, ResourceKind, note, nothing

HOST_CHECKS = "host-checks.txt"
"""The bundle's member with the host checks' table (`harness.lab.hostcheck`)."""
RELAY_PORTS = (41820, 41821)
"""The relay's two legs: on loopback towards the reference end, on the link towards the subject."""


@dataclass(frozen=True)
class ReproResult:
    run_id: str
    status: RunStatus
    """passed (every verdict passed), failed, error or interrupted."""
    verdicts: list[ExpectationResult]
    bundle: str | None
    warnings: list[str]
    error: str | None = None


class _Underlay:
    """What a scenario puts on the outer link before the tunnel exists: the capture
    and the impairments. Stopped (by PID) whatever happens."""

    def __init__(self, scenario: Scenario, workdir: Path, progress: Progress) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.progress = progress
        self.capture: Any = None
        self.relay: Any = None
        self.backend = "none"
        self.pcap = b""
        self.relay_stats: dict[str, Any] | None = None
        self.relay_saturated = False

    def __call__(self, lab: LabInstance) -> None:
        from harness.capture.tcpdump import Capture

        s = self.scenario
        link = lab.lab.links[s.link]
        ref = lab.hosts[s.reference]
        ifname = lab.link_device(link.index, s.reference)
        self.capture = Capture(ref, ifname, str(self.workdir / "outer.pcap"))
        self.progress.step(f"capture: tcpdump on {ifname} ({s.reference})")
        self.capture.start()
        imp = s.impairments.impairment
        if not imp.active:
            return
        from harness.impair.model import apply_netem, netem_available

        backend = s.impairments.backend
        if backend == "auto":
            backend = "netem" if netem_available(ref) else "relay"
        if backend == "netem":
            for name in (link.a, link.b):
                if lab.lab.hosts[name].kind is HostKind.NETNS:  # a guest's link: its tap's side only
                    apply_netem(lab.hosts[name], lab.link_device(link.index, name), imp)
            self.backend = "netem"
            self.progress.step(f"impairments: netem on link {link.index} ({imp.describe()})")
            return
        self._start_relay(lab, imp)

    def _start_relay(self, lab: LabInstance, imp: Any) -> None:
        from harness.impair.relay import Relay, RelayLeg

        s = self.scenario
        link = lab.lab.links[s.link]
        ref_addr = link.a_address if link.a == s.reference else link.b_address
        sub_addr = link.b_address if link.a == s.reference else link.a_address
        loopback = "::1" if ref_addr.version == 6 else "127.0.0.1"
        ref_end, sub_end = lab.lab.end_for(s.reference), lab.lab.end_for(s.subject)
        near = RelayLeg((loopback, RELAY_PORTS[0]), (loopback, ref_end.listen_port))
        far = RelayLeg((str(ref_addr.ip), RELAY_PORTS[1]), (str(sub_addr.ip), sub_end.listen_port))
        self.relay = Relay(lab.hosts[s.reference], near, far, imp)
        self.relay.start()
        fmt = "[{}]:{}" if ref_addr.version == 6 else "{}:{}"
        lab.endpoints[s.reference] = fmt.format(loopback, RELAY_PORTS[0])
        lab.endpoints[s.subject] = fmt.format(ref_addr.ip, RELAY_PORTS[1])
        self.backend = "relay"
        self.progress.step(f"impairments: relay in {s.reference} ({imp.describe()})")

    def stop(self) -> None:
        if self.relay is not None:
            relay, self.relay = self.relay, None
            with contextlib.suppress(HarnessError):
                stats = relay.stop()
                self.relay_stats = encode(stats)
                self.relay_saturated = stats.saturated
        if self.capture is not None:
            capture, self.capture = self.capture, None
            if capture.running:
                self.pcap = capture.stop()


def load(target: str) -> tuple[Scenario, Manifest | None, dict[str, bytes]]:
    """A scenario file, or a bundle's scenario (with its lab file) and the bundle."""
    from harness.repro.bundle import is_bundle
    from harness.repro.scenario import load_scenario

    if not is_bundle(target):
        return load_scenario(target), None, {}
    manifest, files = read_bundle(target, names=FIRST)
    lab_text = files.get("lab.toml")
    scenario = parse_scenario(
        files["scenario.toml"].decode("utf-8", "replace"),
        f"{target}:scenario.toml",
        bundle=target,
        lab_text=lab_text.decode("utf-8", "replace") if lab_text is not None else None,
    )
    return scenario, manifest, files


def run_scenario(
    scenario: Scenario,
    *,
    impl: str | None = None,
    out: str | None = None,
    store_url: str | None = None,
    build: str | None = None,
    progress: Progress | None = None,
    lock: LockPolicy | None = None,
    runner: str | None = None,
    clean_stale: bool = False,
) -> ReproResult:
    """``clean_stale``: remove the labs a killed harness left on this machine first."""
    progress = progress or Progress()
    lab = scenario.lab_for(impl)
    run_lab = replace(lab, name=f"repro:{scenario.name}", path=scenario.path, text=scenario.text,
                      sha256=scenario.sha256)  # fmt: skip
    before_run(progress, clean_stale)
    with Store.open(store_url) as store, _Workdir() as work:
        session = RunSession(
            run_lab,
            store,
            build=build or impl,
            progress=progress,
            command=shlex.join(sys.argv),
            lock=lock,
            runner=runner,
        )
        link = lab.links[scenario.link]
        netem = scenario.impairments.backend == "netem" and scenario.impairments.impairment.active
        session.check_needs = {
            "capture": (scenario.reference,),
            "netem": tuple(h for h in (link.a, link.b) if lab.hosts[h].kind is HostKind.NETNS)
            if netem
            else (),
        }
        instance = LabInstance(lab, progress=progress, run_id=session.run_id)
        workdir = work.make(instance)
        underlay = _Underlay(scenario, workdir, progress)
        instance.prepare, instance.keylog_dir = underlay, str(workdir)
        obs: Observations | None = None
        verdicts: list[ExpectationResult] = []
        warnings: list[str] = []
        status: RunStatus = RunStatus.ERROR
        error: str | None = None
        files: dict[str, bytes] = {}
        try:
            session.lab_up(instance)
            obs = Timeline(scenario, instance, progress).run()
            files.update(_lab_files(instance))
            underlay.stop()
            from harness.parsers.pcap import udp_packets

            packets = list(udp_packets(underlay.pcap))
            verdicts = evaluate(scenario, obs, packets)
            warnings = _warnings(underlay, obs)
            status = (
                RunStatus.PASSED
                if all(v.status is ExpectationStatus.PASS for v in verdicts)
                else RunStatus.FAILED
            )
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            status, error = (
                RunStatus.INTERRUPTED,
                "Ctrl-C" if signum == signal.SIGINT else f"interrupted by {exc}",
            )
            raise
        except HarnessError as exc:
            error = str(exc)
            progress.warn(error)
        finally:
            # A signal now does not cut the teardown short: it is held, and the run ends interrupted.
            with signals_deferred(reraise=False) as caught:
                underlay.stop()
                files.update(_run_files(scenario, impl, underlay, obs, verdicts, warnings))
                for name, data in files.items():
                    if not name.startswith("logs/"):  # the session keeps the logs, under their own names
                        session.artifact(name, data, _content_type(name))
                if verdicts:
                    session.record(_measurements(verdicts))
                session.lab_down()
            if caught and session.signalled is None:
                session.signalled = caught[0]
            status = session.finish(status, error)
        bundle = None
        if status in (RunStatus.PASSED, RunStatus.FAILED):
            bundle = out or str(Path("results") / f"repro-{scenario.name}-{session.run_id}.tar.gz")
            files.update({f"dumps/{k}": v for k, v in _final_dumps(store, session.run_id).items()})
            if session.host_table is not None:  # the reporter's hosts, as the checks found them
                files[HOST_CHECKS] = session.host_table.encode()
            manifest = Manifest(
                format=FORMAT, scenario=scenario.name, impl=impl, subject=scenario.subject,
                reference=scenario.reference, run_id=session.run_id, status=status,
                created=datetime.now(UTC).isoformat(timespec="seconds"), harness_version=__version__,
                command=_manifest_command(),
            )  # fmt: skip
            write_bundle(bundle, manifest, {name: session.redact(data) for name, data in files.items()})
            progress.step(f"bundle: {bundle}")
        return ReproResult(session.run_id, status, verdicts, bundle, warnings, error)


def _manifest_command() -> str:
    """The command that made the bundle, as it is stored: no password of a store URL."""
    return mask_passwords(shlex.join(sys.argv))


class _Workdir:
    """The run's folder (the capture, pyref's key logs): made by `make` once the lab's
    record is open, named in it, and forgotten there once removed on leaving."""

    def __enter__(self) -> _Workdir:
        self.path: Path | None = None
        self._ledger: Ledger | None = None
        self._forget: Forget = nothing
        return self

    def make(self, instance: LabInstance) -> Path:
        """Open ``instance``'s record now, before the lab is up; make the folder, named in it."""
        self._ledger = instance.open_record()
        self.path = Path(tempfile.mkdtemp(prefix="wgh-repro-"))
        self._forget = note(self._ledger, Resource(ResourceKind.FOLDER, HERE, "repro", path=str(self.path)))
        self.path.chmod(0o755)  # pyref (root, in a namespace) writes its key log here
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            if not self.path.exists():
                self._forget()
        if self._ledger is not None:
            self._ledger.close()  # the lab is down (or never came up): the record goes


def _lab_files(instance: LabInstance) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for end in instance.ends:
        if end.config is not None:
            files[f"configs/{end.spec.host}.conf"] = render_setconf(end.config).encode()
    facts = {name: encode(f) for name, f in instance.state.facts.items()}
    impls = {
        e.spec.host: {
            "impl": e.spec.impl,
            "version": e.info.version if e.info else None,
            "ifname": e.driver.ifname,
        }
        for e in instance.ends
    }
    files["facts.json"] = json.dumps({"hosts": facts, "implementations": impls}, indent=1).encode()
    files["keylog.txt"] = instance.keylog()
    for name, data in instance.logs().items():
        files[f"logs/{name}"] = data
    return files


def _run_files(
    scenario: Scenario,
    impl: str | None,
    underlay: _Underlay,
    obs: Observations | None,
    verdicts: list[ExpectationResult],
    warnings: list[str],
) -> dict[str, bytes]:
    files = {"scenario.toml": redact_key_text(scenario.text).encode()}
    if scenario.lab_path is not None:
        files["lab.toml"] = redact_key_text(scenario.lab.text).encode()
    if obs is not None:
        files["timeline.json"] = json.dumps(obs.timeline_json(), indent=1).encode()
        files["samples.jsonl"] = "".join(json.dumps(encode(s)) + "\n" for s in obs.samples).encode()
        for name, ping in obs.pings.items():
            files[f"traffic/{name}.ping.txt"] = ping.raw.encode()
        for name, run in obs.iperfs.items():
            files[f"traffic/{name}.iperf3.json"] = run.raw.encode()
    files["verdicts.json"] = json.dumps(
        {"impl": impl, "impairments": underlay.backend, "warnings": warnings,
         "verdicts": encode(verdicts)}, indent=1,
    ).encode()  # fmt: skip
    if underlay.pcap:
        files["capture.pcap"] = underlay.pcap
    if underlay.relay_stats is not None:
        files["relay.json"] = json.dumps(underlay.relay_stats, indent=1).encode()
    files["README.txt"] = _readme(scenario).encode()
    return files


def _final_dumps(store: Store, run_id: str) -> dict[str, bytes]:
    details = store.get_run(run_id)
    return {n: store.get_artifact(run_id, n) for n in details.artifacts if n.startswith("wg-dump-")}


def _readme(scenario: Scenario) -> str:
    return (
        f"Repro bundle of scenario {scenario.name}\n\n{scenario.story}\n\n"
        "verdicts.json   the expectations, each with its measured value\n"
        "timeline.json   the steps, with wall-clock start and end\n"
        "capture.pcap    the outer link, captured on the reference end's side\n"
        "keylog.txt      Wireshark's WireGuard key log for it; decrypt with:\n"
        "  tshark -r capture.pcap -o wg.keylog_file:keylog.txt -o wg.dissect_packet:TRUE\n"
        "configs/        the run's wg configurations (keys made for this run only)\n"
        "samples.jsonl   `wg show` dumps of both ends, sampled over the run\n"
        "host-checks.txt what each host had: tools and versions, kernel features, rights\n\n"
        "This bundle is sensitive: its configs and key log decrypt its capture (all the\n"
        "traffic of the run). Keys a lab file gave are replaced by (redacted).\n\n"
        "Run it again, on any machine with wgharness:  wgharness repro THIS.tar.gz\n"
    )


def _content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".pcap"):
        return "application/vnd.tcpdump.pcap"
    return "text/plain"


def _measurements(verdicts: list[ExpectationResult]) -> list[Measurement]:
    return [
        Measurement(
            "repro",
            v.id,
            1,
            v.what,
            v.measured,
            v.unit,
            Direction.NONE,
            params={"status": v.status, "expectation": v.description},
        )  # fmt: skip
        for v in verdicts
        if v.measured is not None
    ]


def _warnings(underlay: _Underlay, obs: Observations) -> list[str]:
    if underlay.backend != "relay":
        return []
    from harness.impair.relay import near_ceiling

    out = []
    if underlay.relay_saturated:
        out.append("the impairment relay's receive buffer overflowed (relay.json): it was the bottleneck, "
                   "not the tunnel")  # fmt: skip
    for run in obs.iperfs.values():
        warning = near_ceiling(run.receiver_bps)
        if warning:
            out.append(f"{run.name}: {warning}")
    return out


def compare(original: list[ExpectationResult], now: list[ExpectationResult]) -> tuple[str, bool]:
    """A table of the bundle's verdicts beside this run's; True if every status is the same."""
    from harness.results.render.summary import table

    before = {v.id: v for v in original}
    rows, same = [], True
    for v in now:
        old = before.get(v.id)
        changed = old is None or old.status != v.status
        same = same and not changed
        rows.append([
            v.id, v.description,
            f"{old.status} ({_value(old)})" if old else "-",
            f"{v.status} ({_value(v)})",
            "CHANGED" if changed else "same",
        ])  # fmt: skip
    return table(["id", "expectation", "bundle", "this run", ""], rows), same


def _value(v: ExpectationResult) -> str:
    return "-" if v.measured is None else f"{v.measured:.3g} {v.unit}"


def verdict_lines(verdicts: list[ExpectationResult]) -> list[str]:
    return [f"{v.status.upper()} {v.id}: {v.description}: {v.message}" for v in verdicts]
