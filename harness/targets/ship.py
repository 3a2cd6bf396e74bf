"""The harness as one file, for a host that must run part of it (pyref, the
prober) and has no installation of its own: its Python sources in a
deterministic .tar.gz, named by their content hash."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import sys
import tarfile
from pathlib import Path

import harness
from harness.targets.base import Target

PACKAGE = Path(harness.__file__).resolve().parent
INSTALL_ROOT = "/var/tmp/wgharness"
"""Where the harness installs itself on another host: one folder per content hash, kept for later runs."""


@functools.cache
def bundle() -> tuple[bytes, str]:
    """(the .tar.gz of the package's .py files, the first 12 hex digits of its SHA-256)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(PACKAGE.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(str(Path("harness") / path.relative_to(PACKAGE)))
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tarball = raw.getvalue()
    digest = hashlib.sha256(tarball).hexdigest()[:12]
    return gzip.compress(tarball, mtime=0), digest


def python_on(host: Target) -> list[str]:
    """The command that runs a Python interpreter with the harness importable on ``host``:
    this interpreter on this machine (its namespaces included); elsewhere the host's
    ``python3`` over the harness's sources, put there once per version."""
    from harness.targets.local import LocalTarget

    if isinstance(host, LocalTarget):
        return [sys.executable]
    data, digest = bundle()
    home = f"{INSTALL_ROOT}/{digest}"
    if not host.run(["test", "-f", f"{home}/harness/__main__.py"]).ok:
        host.put(data, f"{home}.tar.gz", 0o644)
        host.check(["mkdir", "-p", home])
        host.check(["tar", "-xzf", f"{home}.tar.gz", "-C", home])
        host.run(["rm", "-f", f"{home}.tar.gz"])
    return ["env", f"PYTHONPATH={home}", "python3"]
