"""The harness as one file, for a host that must run part of it (pyref, the
prober) and has no installation of its own: its Python sources in a
deterministic .tar.gz, named by their content hash."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).resolve().parent


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
