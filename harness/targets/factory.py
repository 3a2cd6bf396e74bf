"""One place that turns a host's description into a target: `make(spec, dry=...)`.

A `TargetSpec` names the kind of host and carries what that kind needs; `make`
looks the kind up in a table (`_MAKERS`) and imports its module only then, so a
lab of namespaces never loads paramiko or QEMU's helpers. With ``dry=`` a
`DryRunLog` it makes the host's recording form instead, which runs and connects
nothing:

========  ================================  ======================================
kind      real                              dry
========  ================================  ======================================
local     `LocalTarget`                     `LocalTarget` recording to the log
netns     `NetnsTarget` (``namespace``)     `NetnsTarget` recording to the log
ssh       `SshTarget` (``ssh``)             `DryRemote`
windows   `WindowsTarget` over SSH          `WindowsTarget` over a recording
                                            conduit (`dry_windows_target`)
vm        `VmTarget` (``vm``, ``recipe``;   `DryRemote` that notes the QEMU command
          the image built if not cached)    line
========  ================================  ======================================

The lab file's view of a host makes its own `TargetSpec`
(`harness.lab.spec.HostSpec.target_spec`, given the instance's names by the
orchestrator); nothing in this layer knows lab files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.targets.base import HostKind, Target
from harness.targets.dry import DryRunLog

if TYPE_CHECKING:
    from harness.targets.ssh.spec import SshSpec
    from harness.targets.vm.image import Recipe
    from harness.targets.vm.qemu import VmSpec


TARGET_KINDS = tuple(HostKind)
"""Every `HostKind`, in the order error messages list them."""

DRY_VM_URL = "ssh://root@127.0.0.1:2222"
"""Where a dry run says a booted guest is reached (its real port is known only once QEMU runs)."""


@dataclass(frozen=True)
class TargetSpec:
    """A host to make: its name, its kind, and the fields that kind needs."""

    name: str
    kind: HostKind
    namespace: str | None = None
    """netns: the network namespace the host is (created by its `setup`)."""
    ssh: SshSpec | None = None
    """ssh, windows: where the host is and how to trust and log in to it."""
    vm: VmSpec | None = None
    """vm: the guest to boot."""
    recipe: Recipe | None = None
    """vm: the guest image it boots."""
    tools: Mapping[str, str] = field(default_factory=dict)
    """Programs by tool name where the lab gave a path (e.g. ``iperf3``)."""

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(
                f"host {self.name}: unknown kind {self.kind!r} (one of {', '.join(TARGET_KINDS)})"
            )
        object.__setattr__(self, "kind", HostKind(self.kind))  # given as text: the member
        needs = {
            HostKind.NETNS: ("namespace",),
            HostKind.SSH: ("ssh",),
            HostKind.WINDOWS: ("ssh",),
            HostKind.VM: ("vm", "recipe"),
        }
        missing = [name for name in needs.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"host {self.name}: a {self.kind} host needs {' and '.join(missing)}")


def make(spec: TargetSpec, *, dry: DryRunLog | None = None) -> Target:
    """The target ``spec`` describes; with ``dry``, its form that only writes commands
    down to that log. Nothing is set up yet (`Target.setup` does that)."""
    target = _MAKERS[spec.kind](spec, dry)
    if spec.tools:
        target.tools = {**target.tools, **spec.tools}
    return target


def _local(spec: TargetSpec, dry: DryRunLog | None) -> Target:
    from harness.targets.local import LocalTarget

    return LocalTarget(spec.name, dry=dry)


def _netns(spec: TargetSpec, dry: DryRunLog | None) -> Target:
    from harness.targets.netns import NetnsTarget

    assert spec.namespace is not None
    return NetnsTarget(spec.name, spec.namespace, dry=dry)


def _ssh(spec: TargetSpec, dry: DryRunLog | None) -> Target:
    assert spec.ssh is not None
    if dry is not None:
        from harness.targets.remote import DryRemote

        return DryRemote(spec.name, spec.ssh, dry)
    from harness.targets.ssh.target import SshTarget

    return SshTarget(spec.name, spec.ssh)


def _windows(spec: TargetSpec, dry: DryRunLog | None) -> Target:
    assert spec.ssh is not None
    if dry is not None:
        from harness.targets.windows.dry import dry_windows_target

        return dry_windows_target(spec.name, spec.ssh.url, dry)
    from harness.targets.ssh.client import SshConduit
    from harness.targets.windows.target import WindowsTarget

    return WindowsTarget(spec.name, SshConduit(spec.ssh, name=spec.name))


def _vm(spec: TargetSpec, dry: DryRunLog | None) -> Target:
    assert spec.vm is not None and spec.recipe is not None
    if dry is not None:
        from harness.targets.remote import DryRemote
        from harness.targets.ssh.spec import SshSpec

        return DryRemote(spec.name, SshSpec.parse(DRY_VM_URL), dry, booted=(spec.vm, spec.recipe))
    from harness.targets.vm.image import ensure_image
    from harness.targets.vm.qemu import VmTarget

    return VmTarget(spec.name, spec.vm, ensure_image(spec.recipe))


_MAKERS: dict[HostKind, Callable[[TargetSpec, DryRunLog | None], Target]] = {
    HostKind.LOCAL: _local,
    HostKind.NETNS: _netns,
    HostKind.SSH: _ssh,
    HostKind.WINDOWS: _windows,
    HostKind.VM: _vm,
}
