"""`wgharness run LAB --dry-run`: every command the run would execute, host by
host, with nothing executed and no connection made.

`plan` first writes down the host checks' read-only probes (`harness.lab.hostcheck`),
then brings the lab up with ``dry=`` a `DryRunLog`: the orchestrator makes every
host in its recording form (`harness.targets.make`), which writes each command
line down and answers with a canned result (`harness.targets.dry`). The suites
are not run; their commands are listed from the same functions the suites use to
build them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from harness.targets.dry import DryRunLog

__all__ = ["plan", "render"]


def render(log: DryRunLog) -> str:
    """Host by host, each command numbered in the order of the whole run."""
    hosts: dict[str, list[str]] = {}
    for n, (host, line) in enumerate(log.entries, 1):
        hosts.setdefault(host, []).append(f"  {n:4d}  {line}")
    return "\n\n".join(f"{host}:\n" + "\n".join(lines) for host, lines in hosts.items())


def plan(lab: Lab) -> str:
    """What `wgharness run` would execute for ``lab``, nothing executed."""
    from harness.lab.hostcheck.probe import check_lab
    from harness.progress import Progress
    from harness.run.orchestrator import LabInstance

    log = DryRunLog()
    log.note("orchestrator", "host checks first, read-only (`wgharness lab check LAB --hosts`)")
    check_lab(lab, dry=log)  # the answers are canned: what matters is what would be asked
    instance = LabInstance(lab, progress=Progress(quiet=True), dry=log)
    instance.up()
    try:
        variants: list[str | None] = [v.name for v in lab.variants] or [None]
        for variant in variants:
            if variant is not None:
                log.note("orchestrator", f"variant {variant}")
                instance.switch_variant(variant)
            _suites(instance, lab, log)
    finally:
        for error in instance.down():
            log.note("orchestrator", f"TEARDOWN ERROR (the real run would report it too): {error}")
    return render(log)


def _suites(instance: LabInstance, lab: Lab, log: DryRunLog) -> None:
    from harness.lab.spec import ConformanceParams, HandshakeParams, ThroughputParams
    from harness.parsers import ParseError
    from harness.parsers.iperf import IperfError
    from harness.run.throughput import run_flow

    for suite in lab.suites:
        p = suite.params
        if isinstance(p, ThroughputParams):
            client = instance.end(p.client)
            server = next(e for e in instance.ends if e is not client)
            for rep in range(1, p.repeat + 1):
                for flow in p.flows:
                    log.note(
                        server.spec.host, f"throughput {flow.name} r{rep}: iperf3 server, then the client"
                    )
                    # The very function the suite calls; nothing comes back to parse.
                    with contextlib.suppress(IperfError, ParseError):
                        run_flow(client.host, server.host, server.inner_ip, flow, p)
        elif isinstance(p, HandshakeParams | ConformanceParams):
            dut = instance.end(p.dut)
            prober = next(e for e in instance.ends if e is not dut)
            log.note(
                prober.spec.host,
                f"{suite.name} suite: prober identities added to {dut.spec.host} with "
                f"`wg addconf {dut.driver.ifname} /dev/stdin` and removed after each test; each test runs "
                f"`python -m harness.probe` here with its job on stdin (see docs/suites.md)",
            )


if TYPE_CHECKING:
    from harness.lab.spec import Lab
    from harness.run.orchestrator import LabInstance
