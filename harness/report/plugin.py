"""pytest plugin object that collects the ``xai`` rows and writes the HTML report.

The core registers :class:`ReportPlugin` when ``--xai-report PATH`` is given (and not in
an xdist worker: the controller receives every worker's reports together with their
``user_properties``). This module relies only on the data contract: each test report
of a case item carries ``("xai", row)`` in ``report.user_properties``.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from .model import Item, error_item, item_from_row
from .render import write_report

__all__ = ["ReportPlugin"]

_CASE_SUFFIXES = (".yaml", ".yml")
# Row verdicts that cannot explain a failed pytest report; "not run" is the core's
# placeholder row before the item is evaluated.
_NOT_A_FAILURE = ("passed", "not run", "skipped")
# pytest's text for an xfail item whose test passed under xfail_strict (reported as failed).
_STRICT_XPASS = "[XPASS(strict)]"


def _is_case_node(nodeid: str) -> bool:
    """Whether ``nodeid`` belongs to a YAML case file (not to an ordinary test)."""
    return nodeid.split("::", 1)[0].lower().endswith(_CASE_SUFFIXES)


def _xai_row(report: pytest.TestReport) -> dict[str, Any] | None:
    row = None
    for prop in report.user_properties:
        # xdist sends the properties over the wire as lists, not tuples.
        name, value = prop
        if name == "xai" and isinstance(value, dict):
            row = value
    return row


def _baseline_meta(config: pytest.Config) -> dict[str, Any] | None:
    """With --xai-baseline: the comparison's counts and the baseline items this run did
    not have (only the core's state knows them; each row carries its own comparison)."""
    from harness.plugin import STATE_KEY

    state = config.stash.get(STATE_KEY, None)
    if state is None or state.baseline is None:
        return None
    from harness.baseline import comparison

    return comparison(state.baseline, list(state.rows.values())).as_dict()


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext


class ReportPlugin:
    """Collect one row per test item and write the HTML report at session end.

    Parameters
    ----------
    config
        The pytest config.
    path
        Target HTML file; a relative path is taken relative to the directory pytest
        was invoked from.
    self_contained
        Inline images as data URIs instead of copying them next to the report.
    """

    def __init__(self, config: pytest.Config, path: str | os.PathLike[str], self_contained: bool = False) -> None:
        self.config = config
        target = Path(path).expanduser()
        if not target.is_absolute():
            target = Path(config.invocation_params.dir) / target
        self.path = target
        self.self_contained = self_contained
        self.written: Path | None = None
        self.error: str | None = None
        self._reports: list[pytest.TestReport | pytest.CollectReport] = []
        self._records: dict[str, Item] = {}
        self._expected: list[str] = []
        self._started = time.time()

    @property
    def items(self) -> list[Item]:
        """Items recorded so far, in the order their reports arrived."""
        # Reports are read only now, not when they arrive: the core may add the
        # ("xai", row) property in its own logreport hook, before or after this one.
        for report in self._reports:
            if isinstance(report, pytest.CollectReport):
                self._record_collect(report)
            else:
                self._record(report)
        self._reports.clear()
        return list(self._records.values())

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._started = time.time()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._reports.append(report)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._reports.append(report)

    def _record_collect(self, report: pytest.CollectReport) -> None:
        # Any collection error is shown, not only a YAML file's: it means the run is
        # incomplete, which the expert must know before trusting the counts.
        if report.failed:
            nodeid = report.nodeid or "(collection)"
            text = report.longreprtext
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            message = "collection error: " + (lines[-1] if lines else "the file could not be collected")
            self._records[f"collect:{nodeid}"] = error_item(nodeid, text, message)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._expected = [item.nodeid for item in session.items]

    def _record(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if report.when == "teardown":
            if report.failed:
                self._teardown_failed(report)
            return
        if report.when == "setup" and report.passed:
            return  # the call phase follows and carries the row
        row = _xai_row(report)
        if row is None and not _is_case_node(nodeid):
            return  # an ordinary test in the same session: not the expert's business
        xfail = getattr(report, "wasxfail", None)
        strict_xpass = report.failed and report.longreprtext.startswith(_STRICT_XPASS)
        if (xfail is not None or strict_xpass) and row is not None:
            # An expected failure keeps its real verdict; its outcome sets it apart from
            # the verdict counts, and the note says it was expected.
            item = item_from_row(row, nodeid=nodeid)
            if strict_xpass:
                reason = report.longreprtext.removeprefix(_STRICT_XPASS).strip()
                item.outcome, note = "xpassed", f"expected to fail, but passed; fails the run (xfail_strict): {reason}"
            elif report.skipped:
                item.outcome, note = "xfailed", f"expected to fail: {xfail or 'xfail'}"
            else:
                item.outcome, note = "xpassed", f"expected to fail, but passed: {xfail or 'xfail'}"
            item.message = f"[{note}] {item.message}"
            self._records[nodeid] = item
        elif report.skipped:
            base = dict(row or {})
            base.update(verdict="skipped", passed=False, message="skipped: " + _skip_reason(report))
            self._records[nodeid] = item_from_row(base, nodeid=nodeid)
        elif row is None:
            self._records[nodeid] = error_item(nodeid, report.longreprtext)
        else:
            item = item_from_row(row, nodeid=nodeid, longrepr=report.longreprtext if report.failed else "")
            if report.failed and item.verdict in _NOT_A_FAILURE:
                # pytest failed the item although the row holds no failing verdict (a
                # crash before or after the verdict): pytest's outcome wins.
                last = (report.longreprtext.strip().splitlines() or ["unknown error"])[-1]
                item.message = f"error (row verdict was '{item.verdict}'): {last}"
                item.verdict, item.passed = "error", False
                item.longrepr = report.longreprtext
            self._records[nodeid] = item

    def _teardown_failed(self, report: pytest.TestReport) -> None:
        item = self._records.get(report.nodeid)
        text = "teardown failed:\n" + report.longreprtext
        if item is None:
            if _is_case_node(report.nodeid):
                self._records[report.nodeid] = error_item(report.nodeid, text)
            return
        if item.verdict == "passed":
            item.verdict, item.passed = "error", False
            item.message = "teardown failed after the item passed"
        item.longrepr = (item.longrepr + "\n\n" + text).strip()

    def _not_run(self, exitstatus: int) -> list[Item]:
        message = f"not run: the session stopped before this item ran (exit status {exitstatus})"
        return [
            error_item(nodeid, message, message)
            for nodeid in self._expected
            if nodeid not in self._records and _is_case_node(nodeid)
        ]

    def _meta(self, session: pytest.Session, exitstatus: int, not_run: int) -> dict[str, Any]:
        args = [str(arg) for arg in self.config.invocation_params.args]
        return {
            "started": self._started,
            "finished": time.time(),
            "command": "pytest " + shlex.join(args) if args else "pytest",
            "rootdir": str(self.config.rootpath),
            "exitstatus": int(exitstatus),
            "interrupted": bool(
                int(exitstatus) == pytest.ExitCode.INTERRUPTED or session.shouldstop or session.shouldfail or not_run
            ),
            "baseline": _baseline_meta(self.config),
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
        items = self.items
        not_run = self._not_run(int(exitstatus))
        items += not_run
        try:
            self.written = write_report(
                items,
                self.path,
                meta=self._meta(session, int(exitstatus), len(not_run)),
                self_contained=self.self_contained,
            )
        except Exception as exc:  # noqa: BLE001 - a broken report must not hide test results
            self.error = f"{type(exc).__name__}: {exc}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.error:
            terminalreporter.write_line(f"xai report could not be written: {self.error}", red=True)
        elif self.written:
            terminalreporter.write_line(f"xai report: {self.written.as_uri()}")
