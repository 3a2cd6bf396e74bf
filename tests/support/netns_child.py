"""A test's own script run as root in a fresh network namespace of its own: the
way tests check pyref's I/O against the real kernel without touching this host's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from harness.run.orchestrator import new_instance_id
from tests.support.paths import ROOT


def run_in_namespace(
    script: str, *args: str, name: str, timeout: float = 120, env: Mapping[str, str] | None = None
) -> Any:
    """``python SCRIPT ARGS`` inside a new namespace ``wgh-ID-NAME`` (deleted afterwards,
    whatever happens), with this repository on its path and ``env`` added; the JSON of
    its last line of output. AssertionError with its stderr if it failed."""
    ns = f"wgh-{new_instance_id()}-{name}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            cwd=ROOT,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])
