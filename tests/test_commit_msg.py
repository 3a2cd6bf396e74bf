"""The commit-msg hook (scripts/commit_msg.py) that .pre-commit-config.yaml runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

HOOK = ROOT / "scripts" / "commit_msg.py"


def _run(tmp_path: Path, message: str) -> subprocess.CompletedProcess[str]:
    msg = tmp_path / "COMMIT_EDITMSG"
    msg.write_text(message)
    return subprocess.run([sys.executable, str(HOOK), str(msg)], capture_output=True, text=True, check=False)


def test_a_short_subject_with_a_body_passes(tmp_path: Path) -> None:
    done = _run(tmp_path, "store: refuse a foreign database\n\nWhy, what was measured.\n# a comment\n")
    assert done.returncode == 0, done.stderr


def test_a_subject_of_73_characters_is_refused_with_its_length(tmp_path: Path) -> None:
    done = _run(tmp_path, "x" * 73 + "\n")
    assert done.returncode == 1
    assert "73 characters" in done.stderr and "COMMIT_EDITMSG" in done.stderr
    assert _run(tmp_path, "x" * 72 + "\n").returncode == 0


def test_a_body_glued_to_the_subject_and_an_empty_message_are_refused(tmp_path: Path) -> None:
    assert "second line" in _run(tmp_path, "subject\nbody right under it\n").stderr
    assert "empty" in _run(tmp_path, "# only comments\n\n").stderr


def test_the_pre_commit_config_names_the_hook_and_ruff() -> None:
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "scripts/commit_msg.py" in config and "stages: [commit-msg]" in config
    assert ".venv/bin/ruff check" in config and ".venv/bin/ruff format" in config
