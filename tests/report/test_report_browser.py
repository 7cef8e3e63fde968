"""The written report in headless Chromium: loads cleanly, filters, reviews, escapes."""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from harness.report import write_report
from harness.report.sample import sample_rows

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
EVIL_ID = "<script>window.__xss = 1</script>"
N_ROWS = 24


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    base = tmp_path_factory.mktemp("browser")
    rows = sample_rows(base / "sources", n_items=N_ROWS, seed=3)
    evil = dict(rows[4])  # a copy with real images
    evil.update(
        case_id=EVIL_ID,
        line=99,
        variant="instance_removed",
        verdict="false_positive",
        passed=False,
        description='</script><img src=x onerror="window.__xss = 2"> "quoted" & more',
        message="<b>not bold</b> </script><script>window.__xss = 3</script>",
        label="<i>cat</i>",
    )
    rows.append(evil)
    path = write_report(rows, base / "report.html", meta={"title": "Browser test report", "command": "pytest -k x"})
    return path, rows


@pytest.fixture(scope="module")
def context(chromium: Any) -> Any:
    ctx = chromium.new_context(viewport={"width": 1440, "height": 1100}, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any, written: tuple[Path, list[dict[str, Any]]]) -> Any:
    path, _ = written
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "request",
        lambda req: (
            problems.append(f"network: {req.url}") if not req.url.startswith(("file:", "data:", "blob:")) else None
        ),
    )
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready=true]")
    page.problems = problems
    yield page
    page.close()


def show_all(page: Any) -> None:
    page.select_option("#f-size", "all")
    settle(page)


def wait_for_images(page: Any, timeout: float = 20.0) -> None:
    """Wait until every card image has finished loading (or failed to).

    Polls with page.evaluate: Playwright's wait_for_function evaluates its predicate
    with eval(), which the report's Content-Security-Policy rightly forbids.
    """
    deadline = time.monotonic() + timeout
    script = "[...document.querySelectorAll('#cases img')].every(img => img.complete)"
    while not page.evaluate(script):
        assert time.monotonic() < deadline, "images still loading"
        page.wait_for_timeout(50)


def choose(page: Any, selector: str, value: str) -> None:
    page.select_option(selector, value)
    settle(page)


def settle(page: Any) -> None:
    """Wait until the page has built every card (large pages are built in slices)."""
    page.wait_for_selector("#cases[aria-busy=false]", state="attached")


def visible_keys(page: Any) -> list[str]:
    """Items the filters selected (an original kept beside a failing variant as context is not one)."""
    return page.eval_on_selector_all("[data-item-key]:not(.context)", "els => els.map(e => e.dataset.itemKey)")


def context_keys(page: Any) -> list[str]:
    return page.eval_on_selector_all("[data-item-key].context", "els => els.map(e => e.dataset.itemKey)")


def test_page_loads_without_console_errors_or_network(page):
    page.wait_for_timeout(200)
    assert page.problems == []
    assert page.title().startswith("Browser test report")


def test_every_item_appears(page, written):
    _, rows = written
    show_all(page)
    assert len(visible_keys(page)) == len(rows)
    # Items of one case share one card: 24 sample rows are 6 cases, plus the evil one.
    assert page.locator("[data-case-key]").count() == N_ROWS // 4 + 1


def test_default_order_puts_failures_first(page):
    show_all(page)
    verdicts = page.eval_on_selector_all("[data-case-key]", "els => els.map(e => e.className)")
    ranks = [int(cls.split("rank-")[1][0]) for cls in verdicts]
    assert ranks == sorted(ranks)


def test_every_image_loads(page):
    show_all(page)
    # Lazy images below the fold never load by themselves in a headless page.
    page.evaluate("document.querySelectorAll('img').forEach(img => { img.loading = 'eager'; })")
    wait_for_images(page)
    widths = page.eval_on_selector_all("#cases img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
    assert widths, "no images rendered"
    broken = [src for src, width in widths if width <= 0]
    assert broken == []
    assert page.locator(".missing").count() == 3  # the error row has no images


def test_filters_hide_what_they_should(page, written):
    _, rows = written
    show_all(page)
    choose(page, "#f-verdict", "false_positive")
    keys = visible_keys(page)
    expected = [r for r in rows if r["verdict"] == "false_positive"]
    assert len(keys) == len(expected) > 0
    shown = page.eval_on_selector_all("[data-item-key]:not(.context)", "els => els.map(e => e.dataset.verdict)")
    assert set(shown) == {"false_positive"}
    # Each failing variant keeps its case's original beside it (once per case), marked as context.
    with_original = {
        f"{r['suite']}::{r['case_id']}[original]"
        for r in expected
        if any(o["case_id"] == r["case_id"] and o["model"] == r["model"] and o["variant"] == "original" for o in rows)
    }
    assert sorted(context_keys(page)) == sorted(with_original) and with_original

    choose(page, "#f-verdict", "")
    choose(page, "#f-variant", "sticker_added")
    shown = page.eval_on_selector_all("[data-item-key]:not(.context)", "els => els.map(e => e.dataset.variant)")
    assert set(shown) == {"sticker_added"}
    assert len(visible_keys(page)) == sum(r["variant"] == "sticker_added" for r in rows)

    choose(page, "#f-variant", "")
    choose(page, "#f-label", "stop")
    assert len(visible_keys(page)) == sum(r["label"] == "stop" for r in rows)
    choose(page, "#f-label", "")
    choose(page, "#f-model", "signs-clean")
    assert len(visible_keys(page)) == sum(r["model"] == "signs-clean" for r in rows)

    page.fill("#f-q", "no such text anywhere")
    page.wait_for_selector(".empty")
    assert visible_keys(page) == []


def test_sort_by_metric(page, written):
    _, rows = written
    show_all(page)
    choose(page, "#f-view", "items")
    choose(page, "#f-sort", "mass_object:desc")
    keys = visible_keys(page)
    by_key = {f"{r['suite']}::{r['case_id']}[{r['variant']}]": r["mass_object"] for r in rows}
    values = [by_key[k] for k in keys if by_key.get(k) is not None]
    assert values == sorted(values, reverse=True)


def test_review_mark_is_kept_and_exported(page, written, tmp_path):
    failed = page.locator("section.variant.fail").first
    key = failed.get_attribute("data-item-key")
    failed.locator("input[data-mark=confirmed]").check()
    failed.locator("textarea").fill('sticker, "clearly"; =1+1')
    assert "Reviewed 1 of" in page.inner_text("#review-status")

    with page.expect_download() as info:
        page.click("#export-csv")
    csv_path = tmp_path / "reviews.csv"
    info.value.save_as(csv_path)
    records = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8-sig"))))
    # Model failures only: an error is not the expert's to judge.
    assert len(records) == sum(r["verdict"] not in ("passed", "error") for r in written[1])
    mine = [r for r in records if r["nodeid"] == "" and f"{r['suite']}::{r['case_id']}[{r['variant']}]" == key]
    assert len(mine) == 1
    assert mine[0]["review"] == "confirmed"
    assert mine[0]["comment"] == 'sticker, "clearly"; =1+1'  # quotes and commas survive

    with page.expect_download() as info:
        page.click("#export-json")
    json_path = tmp_path / "reviews.json"
    info.value.save_as(json_path)
    doc = json.loads(json_path.read_text())
    marked = [r for r in doc["reviews"] if r["review"]]
    assert [(r["case_id"], r["variant"], r["review"]) for r in marked] == [
        (mine[0]["case_id"], mine[0]["variant"], "confirmed")
    ]

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    again = page.locator(f'section[data-item-key="{key}"]')
    assert again.locator("input[data-mark=confirmed]").is_checked()
    assert again.locator("textarea").input_value() == 'sticker, "clearly"; =1+1'
    # Leave the shared browser profile clean for the other tests.
    again.locator("button.link", has_text="clear").click()
    assert "Reviewed 0 of" in page.inner_text("#review-status")


def test_csv_export_guards_against_spreadsheet_formulas(page, tmp_path):
    failed = page.locator("section.variant.fail").first
    failed.locator("input[data-mark=unclear]").check()
    failed.locator("textarea").fill("=HYPERLINK(1)")
    with page.expect_download() as info:
        page.click("#export-csv")
    info.value.save_as(tmp_path / "r.csv")
    records = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text(encoding="utf-8-sig"))))
    assert [r["comment"] for r in records if r["review"] == "unclear"] == ["'=HYPERLINK(1)"]
    failed.locator("button.link", has_text="clear").click()


def test_user_strings_are_text_and_no_injected_script_runs(page):
    show_all(page)
    assert page.evaluate("window.__xss") is None
    title = page.locator(".case-title", has_text="window.__xss = 1")
    assert title.count() == 1
    # text_content: cards off screen are not laid out (content-visibility), so they have no inner text.
    assert title.text_content() == EVIL_ID
    card = page.locator("article.case", has=title)
    assert card.locator("img[src=x]").count() == 0
    assert card.locator("b", has_text="not bold").count() == 0
    assert card.locator("i", has_text="cat").count() == 0
    assert "<b>not bold</b>" in (card.text_content() or "")
    assert "<i>cat</i>" in (card.text_content() or "")
    card.locator("button.thumb").first.click()  # the lightbox renders the id as text too
    assert page.inner_text("#lightbox-title").startswith(EVIL_ID)
    page.keyboard.press("Escape")
    assert page.evaluate("window.__xss") is None
    assert page.problems == []


def test_screenshot_for_humans(page, tmp_path):
    page.set_viewport_size({"width": 1440, "height": 1700})
    page.evaluate("document.querySelectorAll('img').forEach(img => { img.loading = 'eager'; })")
    wait_for_images(page)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    target = REPO / "reports" / "screenshots" / "report.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, target)
