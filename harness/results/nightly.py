"""`wgharness nightly`'s conclusion: a stored run (the command line has just run
it) compared with a baseline, Markdown, HTML and JUnit reports written into a
folder, and the exit status. With ``--rounds adaptive`` the run held both
builds, and the verdict is its rounds' decisions (`conclude_rounds`).

Exit status: 0 no regression, 1 regression (or a failed test), 2 usage error,
3 infrastructure failure (the lab did not come up, no usable baseline when
one is required), 130 interrupted (the command line makes it 128 + the signal:
143 for SIGTERM, 129 for SIGHUP).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK
from harness.results.compare import Comparison, Selector, Settings, compare, parse_selector
from harness.results.history import changes_of, series_from
from harness.results.records import RunStatus
from harness.results.render.comparison import render_markdown, verdict_line
from harness.results.render.html import (
    distribution_plot,
    html_page,
    samples_by_key,
    series_plot,
)
from harness.results.render.junit import junit_xml
from harness.results.render.rounds import html_page as rounds_page
from harness.results.render.rounds import junit_xml as rounds_junit
from harness.results.render.rounds import render_markdown as rounds_markdown
from harness.results.render.rounds import verdict_line as rounds_verdict
from harness.results.render.summary import run_summary
from harness.results.render.trend import trend_svg
from harness.results.rounds import RoundsReport, exit_status
from harness.results.store import Store


@dataclass(frozen=True)
class NightlyResult:
    exit_status: int
    verdict: str
    run_id: str | None


def write_reports(
    store: Store, c: Comparison, out: Path, run_id: str, metrics: tuple[str, ...], notes: list[str]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    details = store.get_run(run_id)
    md = [
        render_markdown(c),
        *(f"> {n}" for n in notes),
        "",
        "## The candidate run",
        "",
        "```",
        run_summary(details),
        "```",
        "",
    ]
    base_details = [store.get_run(r.id) for r in c.base_runs]
    cand_details = [store.get_run(r.id) for r in c.cand_runs]
    base, unit = samples_by_key(base_details, metrics)
    cand, _ = samples_by_key(cand_details, metrics)
    history = store.runs_of_lab(details.run.lab_name, limit=200)
    history_details = [store.get_run(r.id) for r in history]
    sections = [
        ("Per-interval throughput of this run", series_plot(details)),
        ("Samples, baseline and candidate", distribution_plot(base, cand, unit)),
        *(
            (f"Trend: {s.key} on {s.fingerprint}", trend_svg(s, changes_of([s])))
            for s in series_from(history, history_details, details.run.lab_name, metrics)
        ),
    ]
    _atomic_write(out / "summary.md", "\n".join(md))
    _atomic_write(
        out / "report.html",
        html_page(f"wgharness nightly: {details.run.lab_name}, build {details.run.build}", c, sections),
    )
    _atomic_write(out / "junit.xml", junit_xml(c, notes))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def conclude(
    store_url: str | None,
    run_id: str | None,
    run_status: RunStatus,
    baseline: str,
    out: Path,
    settings: Settings,
    *,
    require_baseline: bool = False,
) -> NightlyResult:
    """The verdict on run ``run_id`` (stored with ``run_status``; None: the run was
    not stored) against ``baseline``, with the reports written into ``out``."""
    base_sel = parse_selector(baseline)
    if run_id is None:
        return NightlyResult(EXIT_INFRA, "verdict: INFRASTRUCTURE - the run was not stored", None)
    cand_sel = Selector(run_id, "ids", (run_id,))
    store = Store.open(store_url)
    try:
        c = compare(store, base_sel, cand_sel, settings)
        notes = []
        if run_status == RunStatus.ERROR:
            notes.append(f"run {run_id}: infrastructure failure")
        if not c.base_runs:
            notes.append(f"no usable baseline run matches {baseline!r}: nothing to compare against")
        write_reports(store, c, out, run_id, settings.metrics, notes)
    finally:
        store.close()
    if run_status == RunStatus.INTERRUPTED:
        status = EXIT_INTERRUPTED
    elif run_status == RunStatus.ERROR:
        status = EXIT_INFRA
    elif not c.base_runs:
        status = (
            EXIT_INFRA if require_baseline else (EXIT_FAILED if run_status == RunStatus.FAILED else EXIT_OK)
        )
    else:
        status = c.exit_status()
    return NightlyResult(status, verdict_line(c), run_id)


def conclude_rounds(
    store_url: str | None, run_id: str | None, run_status: RunStatus, report: RoundsReport | None, out: Path
) -> NightlyResult:
    """The verdict of a run of adaptive rounds (``report``: None if they never
    began), with the reports written into ``out`` (see `harness.results.rounds`
    for the exit status)."""
    if run_id is None:
        return NightlyResult(EXIT_INFRA, "verdict: INFRASTRUCTURE - the run was not stored", None)
    with Store.open(store_url) as store:
        details = store.get_run(run_id)
    notes = [f"run {run_id}: {details.summary.error}"] if details.summary.error else []
    errors = notes if run_status.infrastructure else []
    summary = ["## The run", "", "```", run_summary(details), "```", ""]
    title = f"wgharness nightly: {details.run.lab_name}, build {details.run.build}"
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "summary.md", "\n".join([rounds_markdown(report, run_status, notes), *summary]))
    _atomic_write(out / "report.html", rounds_page(title, report, run_status, notes))
    _atomic_write(out / "junit.xml", rounds_junit(report, run_status, errors))
    return NightlyResult(exit_status(report, run_status), rounds_verdict(report, run_status), run_id)
