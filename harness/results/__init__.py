"""Results: what a run leaves behind and what is concluded from it.

* `records`: the immutable records of a run (hosts, measurements, summaries),
  with no database behind them: what suites and renderers use.
* `store`: those records kept in SQLite or PostgreSQL (SQLAlchemy Core).
* `stats`, `compare`: pure statistics and the direction-aware verdicts of a
  candidate against a baseline.
* `sequential`: the three-way decision (different / same / unknown) over
  adaptive paired rounds, with alpha spending over the looks; `rounds`: the
  records of a rounds run.
* `fingerprint`: what must match for two runs to be compared (runner, each
  host's CPU, kernel, virtualization, TCP settings, link offloads), computed
  once; `noise`: run-to-run spread per runner and lab from stored runs.
* `history`: each metric's series across builds, read from the store;
  `changes`: the change points of a series (ruptures' segmentation and a
  permutation test on top), pure.
* `nightly`: a stored run compared with its baseline, and the reports written.
* `benchimport`: pytest-benchmark's JSON as a stored run.
* `render`: text, Markdown, HTML and JUnit made of the above, nothing computed.

Nothing here runs a lab: the run machinery (`harness.run.session`) writes records
in, the command line reads them out.
"""
