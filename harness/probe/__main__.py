"""``python -m harness.probe``: one probe job, JSON in on stdin, JSON out on stdout.

Every job (on stdin, or in the environment variable WGH_PROBE_JOB for a prober
started in the background) has ``mode`` and the fields its mode documents; the target is
``target`` = [address, port] of the device under test, ``responder_public`` its
public key (base64), and ``identities`` the prober's private keys (base64),
each already configured as a peer of the device under test by the harness.
Exit status 0 with the mode's result object; 2 with {"error": "..."} for a job
that cannot be run (bad field, socket error) — never a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable

from harness.probe import Job, JobError

MODULES = ("harness.probe.handshakes", "harness.probe.conformance", "harness.probe.timers")


def modes() -> dict[str, Callable[[Job], Job]]:
    table: dict[str, Callable[[Job], Job]] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a family of probes not built in this checkout
        table.update(module.MODES)
    return table


def main() -> int:
    try:
        # The job on stdin, or in WGH_PROBE_JOB for a prober started in the background.
        text = os.environ.get("WGH_PROBE_JOB")
        job = json.loads(text) if text is not None else json.load(sys.stdin)
        if not isinstance(job, dict):
            raise JobError("the job must be a JSON object")
        table = modes()
        mode = job.get("mode")
        if mode not in table:
            raise JobError(f"mode: unknown {mode!r} (known: {', '.join(sorted(table))})")
        result = table[mode](job)
    except (JobError, ValueError, KeyError, OSError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
