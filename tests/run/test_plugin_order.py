"""The pytest plugin (`harness/run/pytest_plugin.py`) in pytest sessions of its own
(pytester), with a lab file that is never brought up: the order of a variant
run's cases (repetitions outermost, variants in ABBA order within them), the
``suite_params`` fixture, and `pytest --lab` refused with one line and exit
status 2 when not root. No root needed (the root check is monkeypatched)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness.results.store  # noqa: F401  (imported once here: pytester's runs in this process keep it)

pytest_plugins = ("pytester",)

LAB = """
[lab]
name = "order"
[hosts.a]
target = "netns"
[hosts.b]
target = "netns"
[[links]]
a = "a"
b = "b"
a_address = "198.18.0.1/24"
b_address = "198.18.0.2/24"
[[tunnel.ends]]
host = "a"
impl = "wireguard-go"
address = "198.19.0.1/24"
[[tunnel.ends]]
host = "b"
impl = "wireguard-go"
address = "198.19.0.2/24"
{variants}
[suites.throughput]
repeat = {repeat}
flows = [{{ name = "tcp-1" }}]
"""

SUITE_MODULE = """
from harness.lab.spec import ThroughputParams

SUITE = "throughput"
PARAMS = ThroughputParams


def test_case(repetition, variant, suite_params):
    assert isinstance(suite_params, ThroughputParams) and suite_params.repeat >= repetition
"""


def lab_file(pytester: pytest.Pytester, variants: list[str], repeat: int) -> Path:
    blocks = "\n".join(f'[[variants]]\nname = "{v}"\nbuild = "build-{v}"' for v in variants)
    return pytester.makefile(".toml", lab=LAB.format(variants=blocks, repeat=repeat))


def run_order(pytester: pytest.Pytester, variants: list[str], repeat: int) -> tuple[list[str], list[str]]:
    """(collected test ids, executed test ids, in order) of a throughput module under the plugin."""
    lab = lab_file(pytester, variants, repeat)
    pytester.makepyfile(test_suite=SUITE_MODULE)
    store = f"sqlite:///{pytester.path / 'runs.db'}"
    reprec = pytester.inline_run("--lab", str(lab), "--lab-store", store, "-p", "no:cacheprovider")
    collected = [item.name for item in reprec.getcall("pytest_collection_finish").session.items]
    executed = [
        r.nodeid.split("::")[-1] for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call"
    ]
    passed, skipped, failed = reprec.listoutcomes()
    assert not failed and not skipped and len(passed) == len(collected)
    return collected, executed


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def test_two_variants_two_repetitions_run_abba(pytester: pytest.Pytester, as_root: None) -> None:
    collected, executed = run_order(pytester, ["a", "b"], repeat=2)
    want = [f"test_case[{case}]" for case in ("r1-a", "r1-b", "r2-b", "r2-a")]
    assert collected == want
    assert executed == want


def test_three_variants_reverse_every_other_repetition(pytester: pytest.Pytester, as_root: None) -> None:
    collected, executed = run_order(pytester, ["a", "b", "c"], repeat=3)
    order = [f"r{rep}-{v}" for rep, vs in ((1, "abc"), (2, "cba"), (3, "abc")) for v in vs]
    want = [f"test_case[{case}]" for case in order]
    assert collected == want
    assert executed == want


def test_without_variants_repetitions_in_order(pytester: pytest.Pytester, as_root: None) -> None:
    collected, _ = run_order(pytester, [], repeat=2)
    assert collected == ["test_case[r1]", "test_case[r2]"]


def test_suite_params_of_another_type_fail_the_test(pytester: pytest.Pytester, as_root: None) -> None:
    lab = lab_file(pytester, [], repeat=1)
    pytester.makepyfile(
        test_suite=SUITE_MODULE.replace("PARAMS = ThroughputParams", "PARAMS = HandshakeParams").replace(
            "import ThroughputParams", "import HandshakeParams, ThroughputParams"
        )
    )
    store = f"sqlite:///{pytester.path / 'runs.db'}"
    result = pytester.runpytest_inprocess("--lab", str(lab), "--lab-store", store, "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*suite throughput: parameters ThroughputParams, not HandshakeParams*"])


def test_pytest_lab_not_root_exits_2_with_one_line(pytester: pytest.Pytester) -> None:
    # A pytest of its own (an exit during configure ends an in-process run early),
    # told by its conftest that it is not root.
    pytester.makeconftest("import os\nos.geteuid = lambda: 1000\n")
    lab = lab_file(pytester, [], repeat=1)
    pytester.makepyfile(test_suite=SUITE_MODULE)
    store = pytester.path / "runs.db"
    result = pytester.runpytest_subprocess("--lab", str(lab), "--lab-store", f"sqlite:///{store}")
    assert result.ret == 2
    assert len(result.errlines) == 1 and "needs root" in result.errlines[0], result.errlines
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not store.exists(), "nothing stored before the check"
