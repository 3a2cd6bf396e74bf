"""The history page of `wgharness report --out` and its pages per run, read back
with the standard library's HTML parser: the verdict at the top, the tables, a
figure per metric and case, the change points listed, and every link landing
(on an anchor of the page, or on a run's page written beside it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.codec import to_json
from harness.results.changes import ChangePoint, Series
from harness.results.history import history, series_from
from harness.results.records import RunDetails, RunStatus, Verdict
from harness.results.render.history_page import figure_id, latest_verdict, write_pages
from harness.results.rounds import ROUNDS_ARTIFACT, MetricId, MetricRounds, RoundsReport, RoundsSettings, Side
from harness.results.sequential import Round, decide
from harness.results.store import Store
from tests.support.synthetic import BASE, store_run


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    nodes: list[Element | str] = field(default_factory=list)
    """Child elements and text, in document order."""

    @property
    def children(self) -> list[Element]:
        return [n for n in self.nodes if isinstance(n, Element)]

    def all(self, tag: str) -> list[Element]:
        """Every element ``tag`` under this one, in document order."""
        found = []
        for child in self.children:
            if child.tag == tag:
                found.append(child)
            found += child.all(tag)
        return found

    def content(self) -> str:
        return " ".join(" ".join(n if isinstance(n, str) else n.content() for n in self.nodes).split())

    def cls(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


VOID = {"meta", "br", "img", "input", "link", "hr"}


class Tree(HTMLParser):
    """A document as a tree of `Element` (HTML's void elements closed at once; SVG's
    self-closed ones by `handle_startendtag`)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].nodes.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].nodes.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].nodes.append(data)


def parse(path: Path) -> Element:
    return Tree(path.read_text()).root


def rows(table: Element) -> list[list[str]]:
    """The cells' text of the table's own rows (not those of a table inside a cell)."""
    [body] = [e for e in table.children if e.tag == "tbody"]
    return [[td.content() for td in tr.children if td.tag == "td"] for tr in body.children]


def section_table(doc: Element, heading_id: str) -> Element:
    """The table right after the heading with id ``heading_id``."""
    body = doc.all("body")[0]
    index = next(i for i, e in enumerate(body.children) if e.attrs.get("id") == heading_id)
    return next(e for e in body.children[index:] if e.tag == "table")


def assert_links_land(page: Path, doc: Element) -> None:
    """Every link of ``page`` is an anchor of it or a file beside it; nothing loads from afar."""
    ids = _ids(doc)
    for a in doc.all("a"):
        href = a.attrs["href"]
        assert not href.startswith(("http:", "https:", "//")), href
        if href.startswith("#"):
            assert href[1:] in ids, href
        else:
            target, _, anchor = href.partition("#")
            assert (page.parent / target).is_file(), href
            if anchor:
                assert anchor in _ids(parse(page.parent / target)), href
    assert not [e for e in doc.all("script") + doc.all("img") + doc.all("link") if e.attrs.get("src") or
                e.attrs.get("href")]  # fmt: skip


def _ids(doc: Element) -> set[str]:
    return {e.attrs["id"] for e in _walk(doc) if "id" in e.attrs}


def _walk(e: Element) -> list[Element]:
    return [e, *(d for c in e.children for d in _walk(c))]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'h.db'}"


def _lab(store: Store) -> list[str]:
    """Four builds of two cases: tcp-1 drops 20% at v3, udp-1 gains 15% at v4;
    then a night that broke. Returns the run ids, oldest first."""
    ids = []
    for i, (tcp, udp) in enumerate([(1.0, 1.0), (1.01, 0.99), (0.8, 1.0), (0.8, 1.15)]):
        ids.append(store_run(store, f"v{i + 1}", [v * tcp for v in BASE], minutes=10 * i, runner="ci"))
        ids.append(store_run(store, f"v{i + 1}", [v * udp / 2 for v in BASE], minutes=10 * i + 1,
                             case="udp-1", runner="ci"))  # fmt: skip
    return ids


def _pages(store: Store, out: Path, found: Sequence[tuple[str, int, Verdict, bool]]) -> list[Series]:
    """The pages of lab local with change points ``found`` (case, index, verdict, new)."""
    _, runs, measured = history(store, "local", ("receiver_bps",))
    every = [store.get_run(r.id) for r in store.runs_of_lab("local", tuple(RunStatus))]
    series = series_from(runs, measured, "local", ("receiver_bps",))
    by_case = {s.key.split("/")[1]: s for s in series}
    cps = [
        ChangePoint(
            by_case[case],
            index,
            -0.2 if verdict is Verdict.REGRESSED else 0.15,
            -0.25,
            -0.15,
            0.002,
            verdict,
            new,
        )  # fmt: skip
        for case, index, verdict, new in found
    ]
    write_pages(out, "local", every, series, cps, {})
    return series


def test_history_page_structure(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    ids = _lab(store)
    broken = store_run(store, "v5", [], minutes=50, status="error", runner="ci")
    series = _pages(store, tmp_path, [("tcp-1", 2, Verdict.REGRESSED, False),
                                      ("udp-1", 3, Verdict.IMPROVED, True)])  # fmt: skip
    store.close()
    page = tmp_path / "history.html"
    doc = parse(page)
    body = doc.all("body")[0]
    # The verdict comes first, under the title: the latest run broke.
    first = [e for e in body.children if e.tag != "h1"][0]
    assert body.children[0].tag == "h1" and first.attrs["id"] == "verdict"
    assert "bad" in first.cls() and first.content().startswith("verdict: INFRASTRUCTURE")
    assert f"runs/{broken}.html" in [a.attrs["href"] for a in first.all("a")]
    assert "new change point, improved: throughput/udp-1/receiver_bps" in first.content()
    summary = next(e for e in body.children if e.attrs.get("id") == "summary").content()
    assert "latest build v4" in summary and "9 run(s), 4 build(s), 2 series" in summary
    assert "new change points: 1 (0 regressed), 2 in all" in summary
    # A figure per metric and case, each with its fingerprint and an inlined SVG.
    figures = [f for f in doc.all("figure") if "trend" in f.cls()]
    assert sorted(f.attrs["data-key"] for f in figures) == [
        "throughput/tcp-1/receiver_bps", "throughput/udp-1/receiver_bps"]  # fmt: skip
    label = series[0].fingerprint
    assert label.startswith("ci@") and {f.attrs["data-series"] for f in figures} == {label}
    for f in figures:
        assert len(f.all("svg")) == 1 and "runner ci" in f.all("figcaption")[0].content()
        builds = rows(f.all("table")[0])
        assert [r[0] for r in builds] == ["v4", "v3", "v2", "v1"]  # newest first
    tcp = next(f for f in figures if "tcp-1" in f.attrs["data-key"])
    marks = {r[0]: r[-1] for r in rows(tcp.all("table")[0])}
    assert marks["v3"] == "regressed -20.0% (first bad)" and marks["v2"] == "last good before v3"
    # The change points: the new one first, each linking to its figure and its runs.
    table = section_table(doc, "change-points")
    listed = rows(table)
    assert [(r[0], r[1], r[3].split()[0], r[4].split()[0], r[5]) for r in listed] == [
        ("improved new", "throughput/udp-1/receiver_bps", "v3", "v4", "+15.0%"),
        ("regressed", "throughput/tcp-1/receiver_bps", "v2", "v3", "-20.0%"),
    ]
    assert [tr.attrs["class"] for tr in table.all("tbody")[0].all("tr")] == ["improved", "regressed"]
    hrefs = [a.attrs["href"] for a in table.all("a")]
    assert f"#{figure_id(series[0])}" in hrefs and f"runs/{ids[4]}.html" in hrefs  # tcp-1 at v3
    # Every run listed, newest first, the broken one marked; one series with its fields.
    runs = rows(section_table(doc, "runs"))
    assert [r[0] for r in runs] == [broken, *ids[::-1]]
    assert runs[0][2] == "error" and "left out of the trends" in runs[0][-1]
    [row] = rows(section_table(doc, "series"))
    assert row[0] == label and row[1] == "ci" and row[2] == "8"
    assert_links_land(page, doc)


def test_run_pages(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    ids = _lab(store)
    _pages(store, tmp_path, [("tcp-1", 2, Verdict.REGRESSED, False)])
    store.close()
    page = tmp_path / "runs" / f"{ids[4]}.html"  # tcp-1 at v3, the first bad build
    doc = parse(page)
    assert doc.all("h1")[0].content() == f"Run {ids[4]} of lab local"
    banner = doc.all("div")[0]
    assert banner.attrs["id"] == "verdict" and "ok" in banner.cls()
    assert banner.content().startswith(f"run {ids[4]}: passed")
    tables = doc.all("table")
    meta = dict((r[0], r[1]) for r in rows(tables[0]))
    assert meta["build"] == "v3" and meta["runner"] == "ci" and meta["status"] == "passed"
    assert meta["series"].startswith("ci@")
    assert ("host a: CPU model", "AMD EPYC") in [tuple(r) for r in rows(tables[1])]
    measured = rows(tables[-1])
    assert len(measured) == len(BASE) and measured[0][:5] == ["throughput", "tcp-1", "-", "-", "receiver_bps"]
    trend = [a for a in doc.all("a") if "#trend-" in a.attrs["href"]]
    assert [a.content() for a in trend] == [
        f"throughput/tcp-1/receiver_bps on {meta['series']}, build v3 (first bad: regressed -20.0%)"
    ]
    assert_links_land(page, doc)


def _rounds(ratio: float) -> RoundsReport:
    mid = MetricId("throughput", "tcp-1", "", "receiver_bps", "bit/s", "higher")  # type: ignore[arg-type]
    rounds = tuple(Round((700e6, 710e6), (700e6 * ratio, 710e6 * ratio)) for _ in range(3))
    metric = MetricRounds(mid, rounds, decide(rounds, mid.direction, max_rounds=10))
    return RoundsReport(Side("v4"), Side("v5"), RoundsSettings(max_rounds=10), 3, (metric,))


def test_the_latest_night_of_adaptive_rounds(url: str, tmp_path: Path) -> None:
    """A nightly run of rounds: its verdict heads the page, its page has its table."""
    store = Store.open(url)
    _lab(store)
    night = store_run(store, "v5", BASE, minutes=60, runner="ci")
    store.add_artifact(night, ROUNDS_ARTIFACT, to_json(_rounds(0.7)).encode(), "application/json")
    store.close()
    assert main(["report", "local", "--store", url, "--out", str(tmp_path)]) == 0
    doc = parse(tmp_path / "history.html")
    banner = next(e for e in doc.all("div") if e.attrs.get("id") == "verdict")
    assert "bad" in banner.cls() and banner.content().startswith("verdict: REGRESSION - tcp-1 receiver_bps")
    assert "baseline (A): v4" in banner.content()
    run = parse(tmp_path / "runs" / f"{night}.html")
    assert [h.content() for h in run.all("h2")][:2] == ["Run", "Adaptive rounds"]
    assert rows(run.all("table")[1])[0][:2] == ["throughput/tcp-1/receiver_bps", "regressed"]
    assert_links_land(tmp_path / "history.html", doc)


def test_latest_verdict_by_outcome(url: str) -> None:
    store = Store.open(url)
    ids = _lab(store)
    failed = store_run(store, "v5", BASE, minutes=60, status="failed")
    latest: dict[str, RunDetails] = {i: store.get_run(i) for i in (ids[-3], ids[-1], failed)}
    two = [latest[ids[-3]], latest[ids[-1]]]  # udp-1, v3 and v4
    [series] = series_from([d.summary for d in two], two, "local", ("receiver_bps",))
    store.close()
    passed = latest[ids[-1]].summary
    regressed = ChangePoint(series, 1, -0.1, -0.2, -0.05, 0.01, Verdict.REGRESSED, True)
    improved = ChangePoint(series, 1, 0.1, 0.05, 0.2, 0.01, Verdict.IMPROVED, True)
    ok = latest_verdict(passed, None, [])
    assert (ok.verdict, ok.tone) == ("verdict: OK - no new change point", "ok")
    better = latest_verdict(passed, None, [improved])
    assert (better.verdict, better.tone) == ("verdict: OK - 1 new improvement(s)", "ok")
    bad = latest_verdict(passed, None, [regressed, improved])
    assert bad.tone == "bad" and bad.verdict == (
        f"verdict: REGRESSION - throughput/udp-1/receiver_bps -10.0% at build v4 (since v3) on {series.fingerprint}"
    )
    # each new one on a line of its own, linking to its figure
    assert [line.split(":")[0] for line in bad.lines[1:]] == ["new change point, regressed",
                                                             "new change point, improved"]  # fmt: skip
    assert latest_verdict(latest[failed].summary, None, []).verdict == "verdict: FAILED - a test failed"
    assert latest_verdict(passed, _rounds(1.0), []).tone == "ok"
    assert latest_verdict(None, None, [], "local").verdict == "no run of lab local stored"


def test_a_thirty_build_history_stays_small(url: str, tmp_path: Path) -> None:
    """Thirty builds of one case: one figure, its build labels on the x-axis, and
    the page under 100 KB (text kept as text in the SVG)."""
    store = Store.open(url)
    for i in range(30):
        store_run(
            store, f"build-{i:02d}", [v * (0.8 if i >= 20 else 1.0) for v in BASE], minutes=i, runner="ci"
        )
    _pages(store, tmp_path, [("tcp-1", 20, Verdict.REGRESSED, False)])
    store.close()
    text = (tmp_path / "history.html").read_text()
    [svg] = parse(tmp_path / "history.html").all("svg")
    labels = [t.content() for t in svg.all("text")]
    assert {f"build-{i:02d}" for i in range(30)} <= set(labels) and "-20.0%" in labels
    assert "#c62828" in text and len(text.encode()) < 100_000


def test_runs_without_a_build_are_points_of_their_own(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    first = store_run(store, None, BASE, minutes=0)  # type: ignore[arg-type]
    second = store_run(store, None, BASE, minutes=1)  # type: ignore[arg-type]
    [series] = _pages(store, tmp_path, [])
    store.close()
    assert [p.label for p in series.points] == [f"run {first}", f"run {second}"]
    doc = parse(tmp_path / "history.html")
    summary = next(e for e in doc.all("p") if e.attrs.get("id") == "summary").content()
    assert summary.startswith(f"latest build none (run {second}) measured 2026-11-01 00:01 UTC")
    assert "change points: 0 (0 regressed), 0 in all" in summary
    labels = [t.content() for t in doc.all("svg")[0].all("text")]
    assert f"run {first[:8]}" in labels and f"run {second[:8]}" in labels
    assert next(e for e in doc.all("p") if "muted" in e.cls()).content() == "none found"
