"""Tests of ReportPlugin: fed with hand-made reports, and inside a real pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.report import ReportPlugin

REPO = Path(__file__).resolve().parents[2]


def make_report(nodeid: str, when: str = "call", outcome: str = "passed", row=None, longrepr=None) -> pytest.TestReport:
    props = [("xai", row)] if row is not None else []
    return pytest.TestReport(nodeid, ("x", 0, nodeid), {}, outcome, longrepr, when, user_properties=props)


def session(items=()):
    return SimpleNamespace(items=[SimpleNamespace(nodeid=n) for n in items], shouldstop=False, shouldfail=False)


def xai_row(case_id: str, variant: str, verdict: str) -> dict:
    return {
        "suite": "s.xai.yaml",
        "line": 2,
        "case_id": case_id,
        "variant": variant,
        "model": "m",
        "explainer": "e",
        "label": "cat",
        "verdict": verdict,
        "passed": verdict == "passed",
        "message": verdict,
        "checks": [],
        "images": {},
    }


def test_plugin_records_rows_errors_and_not_run_items(tmp_path, pytestconfig, payload_of):
    plugin = ReportPlugin(pytestconfig, tmp_path / "r.html")
    ids = [f"s.xai.yaml::c[{v}]" for v in ("original", "instance_removed", "background_removed", "sticker_added")]
    plugin.pytest_sessionstart(session())
    plugin.pytest_collection_finish(session(ids + ["tests/test_plain.py::test_x"]))
    plugin.pytest_runtest_logreport(make_report(ids[0], "setup"))
    plugin.pytest_runtest_logreport(make_report(ids[0], row=xai_row("c", "original", "passed")))
    plugin.pytest_runtest_logreport(
        make_report(
            ids[1], outcome="failed", row=xai_row("c", "instance_removed", "false_positive"), longrepr="fp text"
        )
    )
    # Crash in setup before the row existed.
    plugin.pytest_runtest_logreport(make_report(ids[2], "setup", "failed", longrepr="RuntimeError: no model"))
    # An ordinary failing Python test is not a case: left out.
    plugin.pytest_runtest_logreport(make_report("tests/test_plain.py::test_x", outcome="failed", longrepr="assert 0"))
    plugin.pytest_sessionfinish(session(), 2)
    assert plugin.error is None and plugin.written == (tmp_path / "r.html")

    items = {it["key"]: it for case in payload_of(plugin.written)["cases"] for it in case["items"]}
    assert set(items) == set(ids)
    assert items[ids[0]]["verdict"] == "passed"
    assert items[ids[1]]["verdict"] == "false_positive"
    assert items[ids[1]]["longrepr"] == ""  # the verdict sentence says it all
    assert items[ids[2]]["verdict"] == "error" and "no model" in items[ids[2]]["longrepr"]
    assert items[ids[3]]["verdict"] == "error" and items[ids[3]]["message"].startswith("not run")
    assert "Incomplete run" in plugin.written.read_text()


def test_plugin_marks_teardown_failure_and_failed_pass_as_error(tmp_path, pytestconfig, payload_of):
    plugin = ReportPlugin(pytestconfig, tmp_path / "r.html")
    plugin.pytest_runtest_logreport(make_report("s.xai.yaml::a[original]", row=xai_row("a", "original", "passed")))
    plugin.pytest_runtest_logreport(
        make_report("s.xai.yaml::a[original]", "teardown", "failed", longrepr="OSError: disk")
    )
    plugin.pytest_runtest_logreport(
        make_report(
            "s.xai.yaml::b[original]", outcome="failed", row=xai_row("b", "original", "passed"), longrepr="KeyError: x"
        )
    )
    plugin.pytest_sessionfinish(session(), 1)
    items = {it["key"]: it for case in payload_of(plugin.written)["cases"] for it in case["items"]}
    assert items["s.xai.yaml::a[original]"]["verdict"] == "error"
    assert "OSError: disk" in items["s.xai.yaml::a[original]"]["longrepr"]
    assert items["s.xai.yaml::b[original]"]["verdict"] == "error"
    assert "KeyError: x" in items["s.xai.yaml::b[original]"]["message"]


def test_crash_with_the_cores_placeholder_row_is_an_error(tmp_path, pytestconfig, payload_of):
    plugin = ReportPlugin(pytestconfig, tmp_path / "r.html")
    placeholder = dict(xai_row("a", "original", "passed"), verdict="not run", passed=None, message=None)
    plugin.pytest_runtest_logreport(
        make_report("s.xai.yaml::a[original]", "setup", "failed", row=placeholder, longrepr="MemoryError: CUDA")
    )
    plugin.pytest_sessionfinish(session(), 1)
    (item,) = [it for case in payload_of(plugin.written)["cases"] for it in case["items"]]
    assert item["verdict"] == "error" and "MemoryError: CUDA" in item["longrepr"]


def test_expected_failure_keeps_its_verdict_with_a_note(tmp_path, pytestconfig, payload_of):
    plugin = ReportPlugin(pytestconfig, tmp_path / "r.html")
    report = make_report(
        "s.xai.yaml::a[instance_removed]", outcome="skipped", row=xai_row("a", "instance_removed", "false_positive")
    )
    report.wasxfail = "known shortcut"
    plugin.pytest_runtest_logreport(report)
    plugin.pytest_sessionfinish(session(), 0)
    (item,) = [it for case in payload_of(plugin.written)["cases"] for it in case["items"]]
    assert item["verdict"] == "false_positive"
    assert item["message"].startswith("[expected to fail: known shortcut]")
    assert (item["outcome"], item["group"], item["review"]) == ("xfailed", "xfailed", False)


def test_strict_xpass_is_an_unexpected_pass_not_an_error(tmp_path, pytestconfig, payload_of):
    plugin = ReportPlugin(pytestconfig, tmp_path / "r.html")
    report = make_report(
        "s.xai.yaml::a[instance_removed]",
        outcome="failed",
        row=xai_row("a", "instance_removed", "passed"),
        longrepr="[XPASS(strict)] known shortcut",
    )
    plugin.pytest_runtest_logreport(report)
    plugin.pytest_sessionfinish(session(), 1)
    (item,) = [it for case in payload_of(plugin.written)["cases"] for it in case["items"]]
    assert (item["verdict"], item["outcome"], item["review"]) == ("passed", "xpassed", False)
    assert "xfail_strict" in item["message"] and "known shortcut" in item["message"]


def test_row_added_by_a_hook_that_runs_after_ours_is_still_read(tmp_path, pytestconfig, payload_of):
    plugin = ReportPlugin(pytestconfig, tmp_path / "r.html")
    report = make_report("s.xai.yaml::a[original]")
    plugin.pytest_runtest_logreport(report)
    report.user_properties.append(("xai", xai_row("a", "original", "wrong_reasons")))
    plugin.pytest_sessionfinish(session(), 1)
    (item,) = [it for case in payload_of(plugin.written)["cases"] for it in case["items"]]
    assert item["verdict"] == "wrong_reasons"


def test_skipped_case_is_listed_with_its_reason(tmp_path, pytestconfig, payload_of):
    plugin = ReportPlugin(pytestconfig, tmp_path / "r.html")
    skip = make_report("s.xai.yaml::a[original]", "setup", "skipped", longrepr=("s.xai.yaml", 1, "Skipped: no GPU"))
    plugin.pytest_runtest_logreport(skip)
    plugin.pytest_sessionfinish(session(), 0)
    (item,) = [it for case in payload_of(plugin.written)["cases"] for it in case["items"]]
    assert (item["verdict"], item["message"], item["rank"]) == ("skipped", "skipped: no GPU", 3)


def test_relative_path_is_taken_from_the_invocation_dir(pytestconfig):
    plugin = ReportPlugin(pytestconfig, "reports/x.html")
    assert plugin.path == Path(pytestconfig.invocation_params.dir) / "reports" / "x.html"


CONFTEST = """
import pytest
from harness.report import ReportPlugin

def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ReportPlugin(config, "out/report.html"), "xai-report-test")

class CaseItem(pytest.Item):
    def __init__(self, *, behaviour, line, **kw):
        super().__init__(**kw)
        self.behaviour, self.line = behaviour, line

    def runtest(self):
        if self.behaviour == "crash":
            raise RuntimeError("model file missing")
        verdict = "passed" if self.behaviour == "ok" else "false_positive"
        case_id, variant = self.name[:-1].split("[")
        self.user_properties.append(("xai", {
            "suite": self.path.name, "line": self.line, "case_id": case_id, "variant": variant,
            "model": "m", "explainer": "lrp", "label": "cat", "verdict": verdict,
            "passed": verdict == "passed", "message": verdict + " sentence", "checks": [], "images": {}}))
        if verdict != "passed":
            raise AssertionError(verdict)

class CaseFile(pytest.File):
    def collect(self):
        for number, text in enumerate(self.path.read_text().splitlines(), 1):
            name, behaviour = text.split(":")
            yield CaseItem.from_parent(self, name=name.strip(), behaviour=behaviour.strip(), line=number)

def pytest_collect_file(file_path, parent):
    if file_path.name.endswith(".xai.yaml"):
        return CaseFile.from_parent(parent, path=file_path)
"""


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xai", "-p", "no:randomly", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "cases.xai.yaml").write_text(
        "tench[original]: ok\ntench[instance_removed]: fp\ntench[background_removed]: crash\n"
    )
    return tmp_path


def test_end_to_end_run_writes_report_with_collection_errors(project, payload_of):
    (project / "test_plain.py").write_text("def test_plain():\n    assert False\n")
    (project / "test_broken.py").write_text("def broken(:\n")
    result = run_pytest(project, "--continue-on-collection-errors")
    report = project / "out" / "report.html"
    assert "xai report: file://" in result.stdout, result.stdout + result.stderr
    payload = payload_of(report)
    items = {it["key"]: it for case in payload["cases"] for it in case["items"]}
    assert items["cases.xai.yaml::tench[original]"]["verdict"] == "passed"
    assert items["cases.xai.yaml::tench[instance_removed]"]["verdict"] == "false_positive"
    crash = items["cases.xai.yaml::tench[background_removed]"]
    assert crash["verdict"] == "error" and "model file missing" in crash["longrepr"]
    assert any(it["verdict"] == "error" and "test_broken.py" in it["key"] for it in items.values())
    assert not any("test_plain" in key for key in items)


def test_end_to_end_exitfirst_lists_items_that_did_not_run(project, payload_of):
    result = run_pytest(project, "-x")
    assert result.returncode == 1
    items = {it["key"]: it for case in payload_of(project / "out" / "report.html")["cases"] for it in case["items"]}
    assert items["cases.xai.yaml::tench[background_removed]"]["message"].startswith("not run")
    assert "Incomplete run" in (project / "out" / "report.html").read_text()
