"""Repro bundles against hostile input (issue 22): a bundle is read within caps on
its unpacked size, member count and headers, keeping only what is asked for; its
paths resolve inside it only; it is written readable by its owner only, and the
keys a lab file holds are in none of its files nor the stored run."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import threading
import tracemalloc
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.keys import generate_private_key
from harness.progress import Progress
from harness.repro import bundle as bundle_module
from harness.repro.bundle import FORMAT, Manifest, read_bundle, write_bundle
from harness.repro.run import _run_files, _Underlay
from harness.repro.scenario import parse_scenario
from harness.results.store import Store
from harness.run.session import RunSession
from tests.repro.test_scenario import scenario_text
from tests.support.paths import ROOT

MANIFEST = Manifest(FORMAT, "t", None, "b", "a", "0123456789ab", "passed", "2026-01-01T00:00:00+00:00", "0",
                    "wgharness repro t.toml")  # fmt: skip
LAB = (ROOT / "scenarios" / "lab.toml").read_text()


def tarball(path: Path, members: list[tuple[str, bytes | int]], **pax: str) -> str:
    """A .tar.gz of ``members`` (name under bundle/, bytes or a count of zeros), written
    without holding a member in memory."""
    with gzip.open(path, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT,
                                                                    pax_headers=pax) as tar:  # fmt: skip
        for name, data in members:
            info = tarfile.TarInfo(f"bundle/{name}")
            if isinstance(data, int):
                info.size = data
                tar.addfile(info, _Zeros(data))
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _meta(scenario: str | None = None, lab: str | None = LAB) -> list[tuple[str, bytes | int]]:
    from harness.codec import to_json

    members: list[tuple[str, bytes | int]] = [
        ("manifest.json", to_json(MANIFEST).encode()),
        (
            "scenario.toml",
            (
                scenario or scenario_text().replace(f'lab = "{ROOT}/scenarios/lab.toml"', 'lab = "lab.toml"')
            ).encode(),
        ),  # fmt: skip
    ]
    return members + ([("lab.toml", lab.encode())] if lab is not None else [])


@pytest.fixture
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caps scaled down 128 times (1 GiB total: 8 MiB), so a bomb is cheap to make."""
    monkeypatch.setattr(bundle_module, "MAX_TOTAL", 8 * 1024 * 1024)
    monkeypatch.setattr(bundle_module, "MAX_MEMBER", 4 * 1024 * 1024)
    monkeypatch.setattr(bundle_module, "MAX_HEADER", 64 * 1024)
    monkeypatch.setattr(bundle_module, "MAX_MEMBERS", 100)


def test_a_bomb_of_zeros_is_refused_by_its_total(tmp_path: Path, small_caps: None) -> None:
    """Four members each under the member cap, 12 MiB together: over the total cap."""
    path = tarball(tmp_path / "bomb.tar.gz", [(f"z{i}", 3 * 1024 * 1024) for i in range(4)] + _meta())
    assert os.path.getsize(path) < 100_000
    with pytest.raises(UsageError, match=r"bomb.tar.gz: unpacks to more than 8388608 bytes"):
        read_bundle(path)
    with pytest.raises(UsageError, match="unpacks to more than"):
        read_bundle(path, names=("manifest.json", "scenario.toml"))


def test_only_the_files_asked_for_are_held(tmp_path: Path, small_caps: None) -> None:
    """Under the caps, the files not asked for are passed over, never held in memory; the
    bundle's own files come first, so reading stops before the rest."""
    path = tarball(
        tmp_path / "big.tar.gz", [*_meta(), ("capture.pcap", 3 * 1024 * 1024), ("z", 3 * 1024 * 1024)]
    )
    tracemalloc.start()
    try:
        manifest, files = read_bundle(
            path, names=("manifest.json", "scenario.toml", "lab.toml", "verdicts.json")
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert manifest == MANIFEST and set(files) == {"scenario.toml", "lab.toml"}
    assert peak < 1024 * 1024, peak
    assert set(read_bundle(path)[1]) == {"scenario.toml", "lab.toml", "capture.pcap", "z"}


@pytest.mark.parametrize(
    ("members", "pax", "words"),
    [
        ([("big", 5 * 1024 * 1024)], {}, "big is larger than 4194304 bytes"),
        ([(f"m{i}", b"") for i in range(101)], {}, "more than 100 members"),
        ([], {"comment": "x" * 100_000}, "a header of more than 65536 bytes"),
        ([("scenario.toml", b"again")], {}, "scenario.toml twice"),
    ],
    ids=["member", "count", "header", "twice"],
)
def test_a_bundle_over_a_cap_is_one_usage_error(
    tmp_path: Path, small_caps: None, members: list[tuple[str, bytes | int]], pax: dict[str, str], words: str
) -> None:
    path = tarball(tmp_path / "b.tar.gz", [*_meta(), *members], **pax)
    with pytest.raises(UsageError) as info:
        read_bundle(path)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_bundles_lab_path_resolves_inside_it_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle without lab.toml whose scenario names a lab file outside it: that file
    is never read (it was: lab = "/etc/shadow")."""
    outside = tmp_path / "outside.toml"
    outside.write_text(LAB)
    text = scenario_text().replace(f'lab = "{ROOT}/scenarios/lab.toml"', f'lab = "{outside}"')
    path = tarball(tmp_path / "b.tar.gz", _meta(text, lab=None))
    outside.chmod(0o000)
    os.mkfifo(tmp_path / "fifo")  # read as the lab: a hang, unless never opened
    for lab in (str(outside), "/etc/shadow", str(tmp_path / "fifo")):
        path = tarball(tmp_path / "b.tar.gz", _meta(text.replace(str(outside), lab), lab=None))
        assert main(["repro", path, "--check"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "scenario.lab" in err and "holds no lab.toml" in err, err


@pytest.mark.parametrize(
    ("lab", "field"),
    [
        (LAB.replace('impl = "wireguard-go"', 'impl = "wireguard-go"\nprogram = "/tmp/evil"'), "tunnel.ends[1].program"),
        (LAB.replace('impl = "pyref"', 'impl = "pyref"\nprogram = "sh -c reboot"'), "tunnel.ends[0].program"),
    ],
)  # fmt: skip
def test_a_bundles_lab_runs_no_program_named_outside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lab: str, field: str
) -> None:
    path = tarball(tmp_path / "b.tar.gz", _meta(lab=lab))
    assert main(["repro", path, "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"lab.toml: {field}: " in err and "outside the bundle" in err, err


def test_odd_bundles_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.tar.gz"
    os.mkfifo(fifo)
    timer = threading.Timer(20, lambda: os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)))
    timer.start()  # a harness that waits on the FIFO gets a writer after 20 s, so the test ends
    try:
        assert main(["repro", str(fifo), "--check"]) == 2
    finally:
        timer.cancel()
    assert "not a regular file" in capsys.readouterr().err
    deep = tarball(tmp_path / "deep.tar.gz", [("manifest.json", b"[" * 100_000), *_meta()[1:]])
    assert main(["repro", deep, "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "manifest.json" in err


def test_a_bundle_and_the_folders_made_for_it_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "b.tar.gz"
        write_bundle(str(path), MANIFEST, {"scenario.toml": b"x", "configs/a.conf": b"PrivateKey = k"})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        with tarfile.open(path) as tar:
            names = tar.getnames()
        assert names[:2] == ["bundle/manifest.json", "bundle/scenario.toml"]  # what a rerun reads, first
    finally:
        os.umask(old)


def _keyed_scenario() -> tuple[str, str, str]:
    """A scenario with its lab in the file, both ends given their keys; and the keys."""
    key_a, key_b = generate_private_key(), generate_private_key()
    lab = LAB.replace("listen_port = 51820", f'listen_port = 51820\nprivate_key = "{key_a}"')
    lab = lab.replace("listen_port = 51821", f'listen_port = 51821\nprivate_key = "{key_b}"')
    return scenario_text().replace(f'lab = "{ROOT}/scenarios/lab.toml"\n', "") + "\n" + lab, key_a, key_b


def test_keys_a_lab_file_holds_are_in_no_file_of_the_run(tmp_path: Path) -> None:
    text, key_a, key_b = _keyed_scenario()
    scenario = parse_scenario(text, "s.toml")
    assert scenario.lab.tunnel.ends[0].private_key == key_a
    files = _run_files(scenario, None, _Underlay(scenario, tmp_path, Progress()), None, [], [])
    with Store.open(f"sqlite:///{tmp_path / 'r.db'}") as store:
        session = RunSession(scenario.lab, store, progress=Progress())
        config = f"[Interface]\nPrivateKey = {key_a}\n[Peer]\nPublicKey = x\n".encode()
        keylog = f"LOCAL_STATIC_PRIVATE_KEY = {key_b}\nLOCAL_EPHEMERAL_PRIVATE_KEY = AAAA\n".encode()
        files.update({"configs/a.conf": config, "keylog.txt": keylog})
        for name, data in files.items():
            session.artifact(name, data)
        bundled = {name: session.redact(data) for name, data in files.items()}
        stored = {name: store.get_artifact(session.run_id, name) for name in files}
        lab_text = store.get_run(session.run_id).run.lab_text
    for where in (bundled, stored, {"lab_text": lab_text.encode()}):
        for name, data in where.items():
            assert key_a.encode() not in data and key_b.encode() not in data, name
    assert b"LOCAL_EPHEMERAL_PRIVATE_KEY = AAAA" in bundled["keylog.txt"]  # the run's own keys stay
    assert (
        parse_scenario(bundled["scenario.toml"].decode(), "again.toml").lab.tunnel.ends[0].private_key is None
    )


def test_the_bundles_readme_says_it_is_sensitive(tmp_path: Path) -> None:
    scenario = parse_scenario(scenario_text(), "s.toml")
    files = _run_files(scenario, None, _Underlay(scenario, tmp_path, Progress()), None, [], [])
    assert "sensitive" in files["README.txt"].decode()


def test_a_bundles_command_keeps_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.repro.run import _manifest_command

    monkeypatch.setattr("sys.argv", ["wgharness", "repro", "s.toml", "--store", "postgresql://u:pw@h/db"])
    assert _manifest_command() == "wgharness repro s.toml --store postgresql://u:***@h/db"
