"""Review in headless Chromium: marks keyed by what was judged survive a rerun that
changes nothing, not one that changes the verdict; exported reviews import and merge
in another browser; any item can be flagged."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from harness.report import write_report
from harness.report.model import build_report
from harness.report.render import fingerprint
from harness.report.sample import sample_rows

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return sample_rows(tmp_path_factory.mktemp("review") / "sources", n_items=8, seed=11, errors=0)


def test_fingerprint_follows_what_was_judged(rows, tmp_path):
    items = build_report([dict(r) for r in rows]).items
    again = build_report([dict(r) for r in rows]).items
    assert [fingerprint(i) for i in items] == [fingerprint(i) for i in again]
    assert len({fingerprint(i) for i in items}) == len(items)
    flipped = dict(rows[0], verdict="passed" if rows[0]["verdict"] != "passed" else "wrong_reasons")
    assert fingerprint(build_report([flipped]).items[0]) != fingerprint(items[0])
    other = tmp_path / "other.png"
    other.write_bytes(Path(rows[0]["images"]["input"]).read_bytes() + b"\0")
    moved = dict(rows[0], images=dict(rows[0]["images"], input=str(other)))
    assert fingerprint(build_report([moved]).items[0]) != fingerprint(items[0])  # other image content


def open_report(context: Any, path: Path) -> Any:
    page = context.new_page()
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready=true]")
    return page


def mark_first_failure(page: Any, mark: str = "confirmed") -> str:
    failed = page.locator("section.variant.fail").first
    failed.locator(f"input[data-mark={mark}]").check()
    return failed.get_attribute("data-item-key") or ""


def wait_until_stored(context: Any, path: Path, key: str, mark: str = "confirmed", timeout_s: float = 15.0) -> bool:
    """Whether a fresh page of ``context`` sees ``key`` marked, polling: Chromium commits a
    page's localStorage writes to the browser process asynchronously, so a page closed
    right after a mark (on a busy machine) could otherwise take the mark with it."""
    deadline = time.monotonic() + timeout_s
    while True:
        probe = open_report(context, path)
        seen = probe.locator(f"section.variant[data-item-key='{key}'] input[data-mark={mark}]").is_checked()
        probe.close()
        if seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_a_review_survives_a_rerun_with_the_same_verdict_and_image(chromium, rows, tmp_path):
    path = tmp_path / "report.html"
    write_report(rows, path, meta={"started": 1_700_000_000})
    context = chromium.new_context()
    try:
        page = open_report(context, path)
        key = mark_first_failure(page)
        assert wait_until_stored(context, path, key)
        page.close()
        write_report(rows, path, meta={"started": 1_700_086_400})  # the next day, nothing changed
        page = open_report(context, path)
        box = page.locator(f"section.variant[data-item-key='{key}']")
        assert box.locator("input[data-mark=confirmed]").is_checked()
        assert "Kept from an earlier run" in (box.text_content() or "")
        page.close()
        # The verdict of that item changes: the old mark does not apply to the new verdict.
        changed = [dict(r) for r in rows]
        target = next(r for r in changed if f"{r['suite']}::{r['case_id']}[{r['variant']}]" == key)
        target.update(verdict="wrong_reasons" if target["verdict"] != "wrong_reasons" else "false_negative")
        write_report(changed, path, meta={"started": 1_700_172_800})
        page = open_report(context, path)
        box = page.locator(f"section.variant[data-item-key='{key}']")
        assert not box.locator("input[data-mark=confirmed]").is_checked()
    finally:
        context.close()


def test_exported_reviews_import_and_merge_in_another_browser(chromium, rows, tmp_path):
    path = write_report(rows, tmp_path / "report.html")
    first = chromium.new_context(accept_downloads=True)
    second = chromium.new_context()
    try:
        page = open_report(first, path)
        key = mark_first_failure(page, "false_alarm")
        passed = page.locator("section.variant:not(.fail) details.flag").first
        passed.locator("summary").click()
        passed.locator("input[data-mark=unclear]").check()
        flagged = passed.evaluate("e => e.closest('section.variant').dataset.itemKey")
        with page.expect_download() as info:
            page.click("#export-json")
        exported = tmp_path / "reviews.json"
        info.value.save_as(exported)
        doc = json.loads(exported.read_text(encoding="utf-8"))
        marked = {r["nodeid"] or f"{r['suite']}::{r['case_id']}[{r['variant']}]": r["review"] for r in doc["reviews"]}
        assert marked[key] == "false alarm" and marked[flagged] == "unclear"  # a flagged pass is exported too
        assert all(r["fingerprint"] for r in doc["reviews"])

        other = open_report(second, path)
        assert not other.locator(f"section.variant[data-item-key='{key}'] input[data-mark=false_alarm]").is_checked()
        other.set_input_files("#import-json", str(exported))
        other.wait_for_selector("#import-status:has-text('Imported 2 reviews')")
        assert other.locator(f"section.variant[data-item-key='{key}'] input[data-mark=false_alarm]").is_checked()
        assert "Reviewed 1 of" in other.inner_text("#review-status")
        # Importing the same file again changes nothing: the marks here are as new as the file's.
        other.set_input_files("#import-json", str(exported))
        other.wait_for_selector("#import-status:has-text('Imported 0 reviews')")
    finally:
        first.close()
        second.close()
