"""The layers of the harness, checked: what each part may import."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import harness.pyref

ROOT = Path(__file__).resolve().parent.parent


def test_pyref_core_pulls_in_nothing_of_the_harness() -> None:
    """Importing every module of pyref's sans-IO core loads no other part of the
    harness: not its I/O glue, no target, implementation driver, store or lab model
    (a fresh interpreter, so nothing imported by other tests hides an import)."""
    core = [m.name for m in pkgutil.iter_modules(harness.pyref.__path__, "harness.pyref.") if not m.ispkg]
    assert "harness.pyref.device" in core and "harness.pyref.peer" in core  # the walk found the core
    code = (
        "import importlib, json, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'harness' or m.startswith('harness.'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )
    loaded = json.loads(out.stdout)
    outside = [m for m in loaded if m != "harness" and m != "harness.pyref" and m not in core]
    assert outside == []
