"""The run machinery: a lab brought up, measured and torn down.

* `orchestrator`: brings a lab's hosts, links and tunnel ends up and always
  tears them down (`cleanup`'s stack, undone in reverse).
* `session`: one stored run (its record opened, written and closed).
* `hostlock`: one benchmark per machine at a time (the measured phase's lock),
  and the record of who else measured meanwhile.
* `runner` and `pytest_plugin`: `wgharness run` hands the lab to the suites.
* `rounds`: two builds run round after round until each metric is decided.
* `throughput`: one iperf3 flow between two hosts.
* `dryrun`: the same bring-up, only written down.
"""
