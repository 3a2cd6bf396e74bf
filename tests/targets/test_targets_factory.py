"""`harness.targets.make`: every kind of host from its `TargetSpec`, real or in its
dry-run form, and the targets layer's independence from the lab, the orchestrator
and the dry-run planner (checked on the sources' imports)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.lab.spec import load_lab
from harness.targets import TARGET_KINDS, DryRunLog, HostKind, Target, TargetSpec, make
from harness.targets.local import LocalTarget
from harness.targets.netns import NetnsTarget
from harness.targets.remote import DryRemote
from harness.targets.ssh import SshConduit, SshSpec, SshTarget
from harness.targets.vm.image import Image, Recipe
from harness.targets.vm.qemu import VmSpec, VmTarget
from harness.targets.windows import WindowsTarget
from harness.targets.windows.dry import RecordingConduit
from tests.support.paths import ROOT

SSH = SshSpec.parse("ssh://root@192.0.2.10:22")

SPECS = {
    "local": TargetSpec("here", "local"),
    "netns": TargetSpec("a", "netns", namespace="wgh-test-a"),
    "ssh": TargetSpec("peer", "ssh", ssh=SSH),
    "windows": TargetSpec("win", "windows", ssh=SSH, tools={"iperf3": r"C:\iperf3\iperf3.exe"}),
    "vm": TargetSpec("guest", "vm", vm=VmSpec("guest"), recipe=Recipe()),
}


def test_every_kind_has_a_spec_here() -> None:
    assert set(SPECS) == set(TARGET_KINDS)


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_dry_forms_write_their_commands_down_and_run_nothing(nothing_runs: None, kind: str) -> None:
    log = DryRunLog()
    host = make(SPECS[kind], dry=log)
    assert isinstance(host, Target) and host.name == SPECS[kind].name
    assert host.dry is log
    host.setup()
    assert host.run(["wg", "--version"]).ok  # a canned answer
    host.put(b"data", "/tmp/wgh-factory-test", 0o600)
    process = host.start(["sleep", "60"])
    assert process.poll() is None
    process.kill()
    host.teardown()
    assert log.entries, "nothing was written down"
    text = "\n".join(line for _, line in log.entries)
    assert "--version" in text and "sleep" in text and "/tmp/wgh-factory-test" in text


def test_kinds_are_one_enum_in_the_order_lab_errors_list_them() -> None:
    assert TARGET_KINDS == tuple(HostKind) == ("netns", "local", "ssh", "windows", "vm")
    assert [k for k in HostKind if k.remote] == [HostKind.SSH, HostKind.WINDOWS]
    # A spec given its kind as text holds the member; its made host says the same kind.
    assert all(type(spec.kind) is HostKind and spec.kind == name for name, spec in SPECS.items())
    log = DryRunLog()
    assert make(SPECS["netns"], dry=log).kind is HostKind.NETNS  # type: ignore[attr-defined]
    assert make(SPECS["local"], dry=log).kind is HostKind.LOCAL  # type: ignore[attr-defined]


def test_dry_forms_are_the_recording_targets(nothing_runs: None) -> None:
    log = DryRunLog()
    local, netns, ssh, windows, vm = (
        make(SPECS[k], dry=log) for k in ("local", "netns", "ssh", "windows", "vm")
    )
    assert type(local) is LocalTarget
    assert isinstance(netns, NetnsTarget) and netns.namespace == "wgh-test-a"
    assert isinstance(ssh, DryRemote) and ssh.booted is None
    assert isinstance(windows, WindowsTarget) and isinstance(windows.conduit, RecordingConduit)
    assert windows.tool("iperf3") == r"C:\iperf3\iperf3.exe"
    assert isinstance(vm, DryRemote) and vm.booted == (SPECS["vm"].vm, SPECS["vm"].recipe)
    vm.setup()
    assert any("qemu-system-x86_64" in line for _, line in log.entries)


def test_real_forms_are_made_without_touching_the_machine(
    nothing_runs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "harness.targets.vm.image.ensure_image", lambda recipe: Image(Path("/cache/abc"), "abc", "6.1.0")
    )
    hosts = {kind: make(spec) for kind, spec in SPECS.items()}
    assert all(host.dry is None for host in hosts.values())
    assert type(hosts["local"]) is LocalTarget
    assert isinstance(hosts["netns"], NetnsTarget) and hosts["netns"].namespace == "wgh-test-a"
    assert type(hosts["ssh"]) is SshTarget and hosts["ssh"].spec == SSH
    windows = hosts["windows"]
    assert isinstance(windows, WindowsTarget) and isinstance(windows.conduit, SshConduit)
    assert windows.tool("iperf3") == r"C:\iperf3\iperf3.exe"
    assert isinstance(hosts["vm"], VmTarget)


def test_a_real_local_host_runs_a_command() -> None:
    host = make(SPECS["local"])
    result = host.run(["echo", "hello"])
    assert result.ok and result.stdout == "hello\n"


@pytest.mark.parametrize(("spec", "error"), [
    (dict(kind="bsd"), "unknown kind 'bsd'"),
    (dict(kind="netns"), "needs namespace"),
    (dict(kind="ssh"), "needs ssh"),
    (dict(kind="windows"), "needs ssh"),
    (dict(kind="vm", vm=VmSpec("h")), "needs recipe"),
])  # fmt: skip
def test_a_spec_without_what_its_kind_needs_is_refused(spec: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TargetSpec("h", **spec)  # type: ignore[arg-type]


def test_lab_hosts_become_target_specs() -> None:
    lab = load_lab(ROOT / "labs" / "windows-go.toml")
    here = lab.hosts["here"].target_spec("wgh-0000-here")
    assert here == TargetSpec("here", "local")
    win = lab.hosts["win"].target_spec("wgh-0000-win")
    assert (
        win.kind is HostKind.WINDOWS
        and win.ssh is not None
        and win.ssh.url == "ssh://Administrator@192.0.2.20:22"
    )
    assert win.ssh.key_file == str(Path("~/.ssh/id_ed25519").expanduser())
    assert dict(win.tools) == {"iperf3": r"C:\iperf3\iperf3.exe"}
    local = load_lab(ROOT / "labs" / "local.toml")
    name = next(iter(local.hosts))
    assert local.hosts[name].target_spec("wgh-0000-a") == TargetSpec(name, "netns", namespace="wgh-0000-a")


# -- the layer's imports ------------------------------------------------------------------
FORBIDDEN = ("harness.lab", "harness.run")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``from harness import x`` counts
    as ``harness.x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_targets_and_vm_import_no_lab_orchestrator_or_dry_run_planner() -> None:
    files = sorted([*(ROOT / "harness" / "targets").rglob("*.py")])
    assert {"factory.py", "remote.py", "qemu.py"} <= {f.name for f in files}  # the walk found them
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert offending == set()


def test_the_import_walk_sees_every_form_of_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from harness.run import dryrun\nimport harness.lab.spec\n"
        "def f():\n    from harness.run.orchestrator import LabInstance\n"
    )
    names = _imports(source)
    assert {"harness.run.dryrun", "harness.lab.spec", "harness.run.orchestrator"} <= names


def test_powershell_rendering_imports_nothing_that_runs_or_connects() -> None:
    """harness.targets.windows.powershell is pure: text tools of the standard library
    only; no paramiko, subprocess, socket or os, and nothing else of the harness."""
    names = _imports(ROOT / "harness" / "targets" / "windows" / "powershell.py")
    assert "base64" in names  # the walk found the imports
    assert {"paramiko", "subprocess", "socket", "os"}.isdisjoint(names)
    assert {name.split(".")[0] for name in names} <= {"__future__", "base64", "re", "collections"}


def test_local_and_netns_hosts_load_no_paramiko_or_qemu_helpers(
    modules_loaded_by: Callable[[str], set[str]],
) -> None:
    """`make` imports a kind's module only when a host of that kind is made."""
    loaded = modules_loaded_by(
        "from harness.targets import TargetSpec, make\n"
        "make(TargetSpec('a', 'netns', namespace='wgh-test-a'))\n"
        "make(TargetSpec('here', 'local'))\n"
    )
    assert "harness.targets.netns" in loaded and "harness.targets.local" in loaded
    lazy = ("paramiko", "harness.targets.ssh", "harness.targets.vm", "harness.targets.windows")
    assert sorted(m for m in loaded if any(m == k or m.startswith(k + ".") for k in lazy)) == []
