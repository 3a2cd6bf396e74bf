"""commit-msg hook: the subject line says what changed in at most 72 characters,
and a body, if any, is set off from it by an empty line. Usage: commit_msg.py FILE."""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 72


def problems(message: str) -> list[str]:
    lines = [line for line in message.splitlines() if not line.startswith("#")]
    if not lines or not lines[0].strip():
        return ["the subject line is empty"]
    found = []
    if len(lines[0]) > LIMIT:
        found.append(
            f"the subject line has {len(lines[0])} characters (at most {LIMIT}): put the detail in the body"
        )
    if len(lines) > 1 and lines[1].strip():
        found.append("the second line must be empty (subject, blank line, body)")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: commit_msg.py COMMIT_MSG_FILE", file=sys.stderr)
        return 2
    found = problems(Path(argv[1]).read_text(errors="replace"))
    for line in found:
        print(f"{argv[1]}: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
