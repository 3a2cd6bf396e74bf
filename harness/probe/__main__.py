"""``python -m harness.probe``: one probe job, JSON in on stdin, JSON out on stdout.

Every job (on stdin, or in the environment variable WGH_PROBE_JOB for a prober
started in the background) has ``mode`` and the fields its mode documents; the target is
``target`` = [address, port] of the device under test, ``responder_public`` its
public key (base64), and ``identities`` the prober's private keys (base64),
each already configured as a peer of the device under test by the harness.
Exit status 0 with the mode's result (its dataclass as a JSON object, `harness.codec`); 2 with {"error": "..."} for a job
that cannot be run (bad field, socket error) — never a traceback.
"""

from __future__ import annotations

import json
import os
import sys

from harness.codec import to_json
from harness.probe import JobError, modes


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
    print(to_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
