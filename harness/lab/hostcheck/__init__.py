"""What each host of a lab lacks, found out read-only before the lab touches it
(`wgharness lab check LAB --hosts`, and the start of every `wgharness run`).

* `needs`: what a lab asks of each host, from its kind, its tunnel end's
  implementation, the suites and the links (pure).
* `core`: the `HostCheck` row, its `CheckVerdict`, the POSIX hosts' one probe
  script and the pure functions that turn what it printed into rows, the table.
* `windows`: the same for a Windows host (one PowerShell script, pure parsing).
* `probe`: the thin part that runs the scripts through each host's `Target`.

Every command the probes run only reads: nothing is installed, started, created
or written on any host.
"""
