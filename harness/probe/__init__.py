"""The prober: speaks WireGuard directly over UDP to an implementation under
test, built on pyref's sans-IO core. It runs on a lab host as
``python -m harness.probe`` with a JSON job on stdin and prints one JSON result
(the job format: `harness/probe/__main__.py`)."""

from __future__ import annotations

from typing import Any

Job = dict[str, Any]
"""A probe job or result: JSON-shaped."""


class JobError(Exception):
    """The job cannot be run (a bad or missing field): one line for the caller."""
