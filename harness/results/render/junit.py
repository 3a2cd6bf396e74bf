"""A comparison as JUnit XML, the one format every CI reads: a test case per
compared metric, a failure per regression or failed run, an error per
infrastructure problem."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from harness.results.compare import Comparison


def junit_xml(c: Comparison, run_errors: Sequence[str] = ()) -> str:
    """One test case per compared metric; regressions are failures, infrastructure errors errors."""
    suite = ET.Element("testsuite", name="wgharness.compare")
    failures = errors = 0
    for r in c.rows:
        case = ET.SubElement(suite, "testcase", classname=f"{r.suite}.{r.case}", name=r.key, time="0")
        if r.verdict.failing:
            failures += 1
            ET.SubElement(case, "failure", message=f"{r.verdict}: {r.reason}", type=r.verdict)
        ET.SubElement(case, "system-out").text = f"{r.verdict}: {r.reason}"
    for line in c.failed_runs:
        failures += 1
        case = ET.SubElement(suite, "testcase", classname="runs", name=line.split(":")[0], time="0")
        ET.SubElement(case, "failure", message=line, type="failed-run")
    for line in [*c.infra, *run_errors]:
        errors += 1
        case = ET.SubElement(suite, "testcase", classname="infrastructure", name=line.split(":")[0], time="0")
        ET.SubElement(case, "error", message=line, type="infrastructure")
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
