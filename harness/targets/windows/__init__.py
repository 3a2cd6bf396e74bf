"""Windows hosts over OpenSSH for Windows, driven by PowerShell:

================  ===========================================================
`powershell`      the rendering: argv and paths to scripts and -EncodedCommand
                  lines (pure: no connection, no program run)
`target`          `WindowsTarget`: sends the rendered scripts over a `Conduit`
`process`         `ScheduledTaskProcess`: a background program as a scheduled task
`dry`             `dry_windows_target`: the target over `RecordingConduit`
================  ===========================================================
"""

from __future__ import annotations

from harness.targets.windows.powershell import (
    MAX_COMMAND_LINE,
    POWERSHELL,
    POWERSHELL_FLAGS,
    PREAMBLE,
    TASK_PRIORITY,
    decode_command,
    encoded_command,
    facts_script,
    link_script,
    ps_quote,
    render_powershell,
    runner_script,
    secure_script,
    sftp_path,
    windows_cmdline,
)
from harness.targets.windows.process import ScheduledTaskProcess
from harness.targets.windows.target import ROOT, WindowsTarget

__all__ = [
    "MAX_COMMAND_LINE",
    "POWERSHELL",
    "POWERSHELL_FLAGS",
    "PREAMBLE",
    "ROOT",
    "TASK_PRIORITY",
    "ScheduledTaskProcess",
    "WindowsTarget",
    "decode_command",
    "encoded_command",
    "facts_script",
    "link_script",
    "ps_quote",
    "render_powershell",
    "runner_script",
    "secure_script",
    "sftp_path",
    "windows_cmdline",
]
