"""A VM lab's harness killed once its guest is up, for real (root, QEMU under TCG
here: the guest boots in about 12 s from the cached image). QEMU gets SIGTERM as the
harness dies; `wgharness clean` removes the rest its lab's record names (QEMU if it
still ran, its folder with the overlay, the tap, the namespace); then the lab runs
and passes."""

from __future__ import annotations

import signal
from pathlib import Path

from harness.targets.ledger import LABS_DIR
from tests.support.killed import Launched, record_of, still_there
from tests.support.paths import ROOT


def _lab(tmp_path: Path) -> Path:
    """labs/vm-kernel.toml cut down: pyref here against kernel WireGuard in the guest, one
    short flow, the link rate-limited (a qdisc on the tap and one in the guest)."""
    text = (ROOT / "labs" / "vm-kernel.toml").read_text().split("[[variants]]")[0]
    assert 'b_address = "198.18.0.2/24"' in text
    text = text.replace('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nrate = "1gbit"')
    text += '\n[suites.throughput]\nduration = 1\nflows = [{ name = "tcp-1" }]\n'
    path = tmp_path / "vm-killed.toml"
    path.write_text(text)
    return path


def test_sigkill_after_the_guest_is_up_then_clean_then_it_passes(no_leftovers: None, tmp_path: Path) -> None:
    lab, store = _lab(tmp_path), f"sqlite:///{tmp_path / 'runs.db'}"
    with Launched(tmp_path, "run", str(lab), "--store", store, "--no-lock") as wgh:
        wgh.until("link a<->k: tap", timeout=600)  # the guest answers SSH: booted
        wgh.until("tunnel end k: kernel")
        wgh.signal(signal.SIGKILL)
        assert wgh.wait() == -signal.SIGKILL
    record = record_of()
    kinds = {r.kind for r in record.resources}
    assert {"namespace", "qemu", "folder", "tap", "qdisc"} <= kinds, kinds
    assert record.hosts["k"].kind == "vm"
    with Launched(tmp_path, "clean", record.lab_id, name="clean") as cleaning:
        assert cleaning.wait(120) == 0, cleaning.output
    assert still_there(record) == [] and not (LABS_DIR / f"{record.lab_id}.json").exists()
    assert "with guest" in cleaning.output or not any(r.host == "k" for r in record.resources)
    with Launched(tmp_path, "run", str(lab), "--store", store, "--no-lock", name="again") as again:
        assert again.wait(900) == 0, again.output[-3000:]
