"""Where the repository and the captured test data are."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""
DATA = ROOT / "tests" / "data"
"""Captured outputs of real programs, and hand-written ones that say where their format comes from."""
