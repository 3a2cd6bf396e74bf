"""The thin part of the host checks: run each host's one read-only script through
its `Target` and hand what it printed to the pure checks (`core`, `windows`).

Hosts on this machine (local, netns, vm) are checked on this machine itself: a
netns host's namespace does not exist before its lab is up, and checking creates
none. A remote host is logged in to as the lab says (its host key checked as its
policy says); a host that cannot be is one ``reachable`` row, and nothing more
is asked of it. The connection is closed before the checks return.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

from harness.errors import InfraError
from harness.lab.hostcheck.core import HostCheck, posix_checks, posix_script, reach_check, sudo_check
from harness.lab.hostcheck.needs import HostNeeds, lab_needs
from harness.lab.hostcheck.windows import windows_checks, windows_script
from harness.lab.spec import Lab
from harness.targets import DryRunLog, HostKind, Target, TargetSpec, make

PROBE_TIMEOUT = 60.0


def check_lab(
    lab: Lab, *, dry: DryRunLog | None = None, capture: Collection[str] = (), netem: Collection[str] = ()
) -> list[HostCheck]:
    """Every host's rows, host by host in the lab's order."""
    from harness.targets.vm.image import cache_dir

    needs = lab_needs(lab, capture=capture, netem=netem, image_dir=str(cache_dir()))
    rows: list[HostCheck] = []
    for need in needs.values():
        if need.image and dry is None:  # a dry run executes nothing, not even qemu --version
            need = replace(need, accel_verdict=_accel_verdict(need.image))
        spec = lab.hosts[need.host]
        target_spec = (
            TargetSpec(f"{need.host} (checked on this machine)", HostKind.LOCAL)
            if need.on_this_machine
            else spec.target_spec("")
        )
        rows.extend(check_host(need, make(target_spec, dry=dry)))
    return rows


def _accel_verdict(image_dir: str) -> str:
    """What an earlier boot of this guest found on this machine (read-only: QEMU's cache)."""
    from harness.targets.vm.image import Image
    from harness.targets.vm.qemu import cached_verdict

    folder = Path(image_dir)
    return cached_verdict(Image(folder, folder.name, "")) or ""


def check_host(needs: HostNeeds, target: Target) -> list[HostCheck]:
    """``needs`` checked on ``target`` (for a host on this machine, this machine's
    `LocalTarget`). Never raises for what a host lacks or for a host that cannot be
    reached: both are rows."""
    remote = needs.kind.remote
    try:
        rows = _windows(needs, target) if needs.windows else _posix(needs, target)
    except InfraError as exc:
        if not remote:
            raise
        return [reach_check(needs.host, needs.url, needs.host_key_policy, str(exc))]
    finally:
        conduit = getattr(target, "conduit", None)
        if remote and conduit is not None:
            with contextlib.suppress(Exception):
                conduit.close()
    reach = [reach_check(needs.host, needs.url, needs.host_key_policy, None)] if remote else []
    return reach + rows


def _posix(needs: HostNeeds, target: Target) -> list[HostCheck]:
    rows: list[HostCheck] = []
    if needs.sudo:
        probe = getattr(target, "sudo_probe")  # noqa: B009 (an SshTarget or its dry form)
        result = probe()
        user = needs.url.split("@", 1)[0]
        rows.append(sudo_check(needs.host, user, result.status, result.stderr))
        if not result.ok:
            return rows
    result = target.run(["sh", "-c", posix_script(needs)], timeout=PROBE_TIMEOUT)
    return rows + posix_checks(needs, result.stdout)


def _windows(needs: HostNeeds, target: Target) -> list[HostCheck]:
    from harness.targets.windows.target import WindowsTarget

    assert isinstance(target, WindowsTarget)
    result = target.run_ps(windows_script(needs), timeout=PROBE_TIMEOUT)
    return windows_checks(needs, result.stdout)
