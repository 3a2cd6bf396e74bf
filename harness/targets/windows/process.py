"""A background program on a Windows host: `ScheduledTaskProcess`. OpenSSH for
Windows ends a session's processes with the session, so `WindowsTarget.start`
runs the program from a scheduled task through a small runner script
(`powershell.runner_script`) that records its PID, output and exit status in a
folder of its own under ``C:\\ProgramData\\wgharness\\tasks``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from harness.errors import InfraError
from harness.targets.base import Process
from harness.targets.ledger import Forget
from harness.targets.windows.powershell import kill_task_script, ps_quote, register_task_script, runner_script

if TYPE_CHECKING:
    from harness.targets.windows.target import WindowsTarget


class ScheduledTaskProcess(Process):
    """A program run by a scheduled task as SYSTEM (survives the SSH session), at
    priority `TASK_PRIORITY` (normal) rather than the scheduler's below-normal 7.

    Why SYSTEM, not the SSH user: wg.exe talks to a userspace interface only over
    a named pipe owned by LocalSystem and refuses any other (wireguard-tools
    ``ipc-uapi-windows.h`` ``userspace_interface_file`` compares the pipe's owner
    with WinLocalSystemSid), and wireguard-go asks for that owner in the pipe's
    security descriptor (``ipc/uapi_windows.go``: ``O:SY``), which only a SYSTEM
    process gets without further privileges.

    Its folder ``ROOT\\tasks\\NAME`` holds ``run.ps1``, ``stdout``, ``stderr``,
    ``pid`` and ``exit``; the task is ``\\wgharness\\NAME``. `kill` stops the
    program (TerminateProcess: Windows has no SIGTERM for a console program
    without a console) and unregisters the task.
    """

    START_TIMEOUT = 30.0

    def __init__(self, target: WindowsTarget, argv: Sequence[str], task: str, folder: str, pid: int) -> None:
        self.argv = tuple(argv)
        self.host = target.name
        self.target = target
        self.task = task
        self.folder = folder
        self._pid = pid
        self._status: int | None = None
        self._killed = False
        self.on_end: Forget | None = None
        """Called once the task is gone (it forgets it in the lab's record)."""

    @classmethod
    def launch(
        cls, target: WindowsTarget, argv: Sequence[str], env: Mapping[str, str] | None
    ) -> ScheduledTaskProcess:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", argv[0].replace("\\", "/").rsplit("/", 1)[-1])[:24]
        task = f"{stem}-{uuid.uuid4().hex[:10]}"
        folder = target.path("tasks", task)
        target.mkdir(folder)
        target.put(runner_script(folder, argv, env).encode("utf-8-sig"), folder + "\\run.ps1")
        result = target.check_ps(
            register_task_script(task, folder, cls.START_TIMEOUT),
            f"starting `{' '.join(argv)}` as scheduled task {task}",
            timeout=cls.START_TIMEOUT + 30,
        )
        pid = result.stdout.strip()
        if not pid.isdigit():
            raise InfraError(f"{target.name}: task {task} wrote pid {pid[:40]!r}")
        return cls(target, argv, task, folder, int(pid))

    @property
    def pid(self) -> int:
        return self._pid

    def _read_exit(self) -> int | None:
        f = ps_quote(self.folder + "\\exit")
        result = self.target.run_ps(
            f"if (Test-Path -LiteralPath {f}) {{ Get-Content -LiteralPath {f} -Raw }}\n", timeout=30
        )
        text = result.stdout.strip()
        return int(text) if re.fullmatch(r"-?\d+", text) else None

    def poll(self) -> int | None:
        if self._status is None:
            self._status = self._read_exit()
        return self._status

    def wait(self, timeout: float | None = None) -> int:
        return self.poll_until_done(timeout, interval=0.5)

    def kill(self, grace: float = 3.0) -> int | None:
        if self._killed:
            return self._status
        script = kill_task_script(self.task, self.folder, self._pid, grace)
        result = self.target.run_ps(script, timeout=grace + 30)
        text = result.stdout.strip()
        if re.fullmatch(r"-?\d+", text):
            self._status = int(text)
        self._killed = result.ok
        if self._killed and self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            on_end()
        return self._status

    def output(self) -> tuple[bytes, bytes]:
        out = []
        for name in ("stdout", "stderr"):
            try:
                out.append(self.target.get(self.folder + "\\" + name))
            except (OSError, InfraError):
                out.append(b"")
        return out[0], out[1]
