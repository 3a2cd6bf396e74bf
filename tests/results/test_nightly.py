"""`wgharness nightly` for real on the local lab: a first night with no
baseline, then a build whose link is rate-limited to a fraction of what the
tunnel carries, which must be flagged as a regression (exit 1) in all three
reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

from tests.support.paths import ROOT


def nightly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "nightly", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_nightly_flags_a_slower_build(no_leftovers: None, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'n.db'}"
    lab = str(ROOT / "benchmarks" / "overhead.toml")
    common = ["--repeat", "4", "--duration", "1", "--store", store]

    first = nightly(lab, "--build", "v1", "--baseline", "build:v0", "--out", str(tmp_path / "n1"), *common)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "no usable baseline run" in first.stdout
    strict = nightly(lab, "--build", "v1b", "--baseline", "build:v0", "--require-baseline",
                     "--out", str(tmp_path / "n1b"), *common)  # fmt: skip
    assert strict.returncode == 3

    slow = tmp_path / "slow.toml"
    slow.write_text(
        (ROOT / "benchmarks" / "overhead.toml")
        .read_text()
        .replace('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nrate = "150mbit"')
    )
    out = tmp_path / "n2"
    second = nightly(
        str(slow), "--build", "v2", "--baseline", "build:v1", "--out", str(out), "--allow-mismatch", *common
    )
    assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
    assert "verdict: REGRESSION" in second.stdout
    summary = (out / "summary.md").read_text()
    assert "| regressed |" in summary and "fingerprint differs (baseline vs candidate): lab file: " in summary
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.get("failures") == "1" and junit.find("testcase/failure") is not None
    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 3 and "REGRESSION" in page
