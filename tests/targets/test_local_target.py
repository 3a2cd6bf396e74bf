"""The one place commands become processes on this machine (`LocalTarget`)."""

from __future__ import annotations

import sys

from harness.targets.local import LocalTarget

WRITER = "import sys\nfor i in range(3000):\n    sys.stdout.write(f'line {i}')\n    sys.stdout.flush()\n    sys.stdout.write('\\n')\n    sys.stdout.flush()\n"


def test_reading_the_output_of_a_running_process_leaves_it_whole() -> None:
    # The process writes each line in two writes while its output is read again and
    # again: reading must not move where the process's next write lands.
    proc = LocalTarget("local").start([sys.executable, "-c", WRITER])
    while proc.poll() is None:
        proc.output()
    assert proc.wait(10) == 0
    assert proc.output()[0].decode().splitlines() == [f"line {i}" for i in range(3000)]
