"""Triage in headless Chromium: worst first, the original kept beside a failing variant,
filter state in the URL, the comparison across models with "verdict changed", one colour
scale per case; and the screenshot set for humans (reports/screenshots/, not committed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harness.report import write_report
from harness.report.sample import sample_rows

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "reports" / "screenshots"
CHANGED_CASE = "speed_50-0000"  # passes everywhere under the second model
SAME_CASE = "speed_70-0001"  # the same verdicts under both models


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    base = tmp_path_factory.mktemp("triage")
    rows = sample_rows(base / "sources", n_items=8, seed=5, models=("signs-shortcut",), errors=0)
    second = []
    for row in rows:
        copy = dict(row, model="signs-clean")
        if row["case_id"] == CHANGED_CASE:
            copy.update(verdict="passed", passed=True, message="passed: the clean model")
        second.append(copy)
    rows += second
    path = write_report(rows, base / "report.html", meta={"title": "Triage test report"})
    return path, rows


@pytest.fixture
def page(chromium: Any, report: tuple[Path, list[dict[str, Any]]]) -> Any:
    context = chromium.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(report[0].as_uri())
    page.wait_for_selector("body[data-ready=true]")
    page.errors = errors
    yield page
    assert errors == []
    context.close()


def settle(page: Any) -> None:
    page.wait_for_selector("#cases[aria-busy=false]", state="attached")


def choose(page: Any, selector: str, value: str) -> None:
    page.select_option(selector, value)
    settle(page)


def cards(page: Any) -> list[str]:
    return page.eval_on_selector_all("article.case .case-title", "els => els.map(e => e.textContent)")


def wait_for_images(page: Any, timeout: float = 20.0) -> None:
    page.evaluate("document.querySelectorAll('img').forEach(img => { img.loading = 'eager'; })")
    deadline = time.monotonic() + timeout
    while not page.evaluate("[...document.querySelectorAll('#cases img')].every(img => img.complete)"):
        assert time.monotonic() < deadline, "images still loading"
        page.wait_for_timeout(50)


def shoot(page: Any, name: str, target: Any = None) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    wait_for_images(page)
    (target or page).screenshot(path=str(SHOTS / f"{name}.png"))
    assert (SHOTS / f"{name}.png").stat().st_size > 5_000


def test_cases_open_worst_first(page, report):
    _, rows = report
    failed: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["case_id"], row["model"])
        failed[key] = failed.get(key, 0) + (row["verdict"] not in ("passed", "error"))
    shown = page.eval_on_selector_all(
        "article.case", "els => els.map(e => e.querySelectorAll('section.variant.fail').length)"
    )
    assert shown == sorted(failed.values(), reverse=True)


def test_the_scale_is_stated_once_per_case_and_not_under_each_map(page):
    assert page.locator("article.case").count() == 4
    for card in page.locator("article.case").all():
        assert card.locator(".case-scale").count() == 1
        assert card.locator("section.variant .cbar").count() == 0
    assert "99.5th percentile" in (page.locator(".case-scale-note").first.text_content() or "")


def test_a_verdict_filter_keeps_the_original_beside_the_failing_variant(page, report):
    _, rows = report
    verdict = next(r["verdict"] for r in rows if r["variant"] != "original" and r["verdict"] != "passed")
    originals = {r["case_id"] + r["model"]: r["verdict"] for r in rows if r["variant"] == "original"}
    cases_hit = {r["case_id"] + r["model"] for r in rows if r["verdict"] == verdict}
    choose(page, "#f-verdict", verdict)
    shown = page.eval_on_selector_all("section.variant:not(.context)", "els => els.map(e => e.dataset.verdict)")
    assert shown and set(shown) == {verdict}
    context = page.eval_on_selector_all("section.variant.context", "els => els.map(e => e.dataset.variant)")
    # One original per case whose own original does not match the filter.
    assert context == ["original"] * sum(originals[k] != verdict for k in cases_hit) and context
    assert page.locator("section.variant.context .review").count() == 0  # context is not for review
    page.locator("#cases-title").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, document.getElementById('cases-title').getBoundingClientRect().top - 8)")
    shoot(page, "filter")


def test_filter_state_lives_in_the_url_and_comes_back(page, chromium, report):
    choose(page, "#f-view", "compare")
    page.check("#f-changed")
    settle(page)
    url = page.url
    assert "view=compare" in url and "changed=1" in url
    assert cards(page) == [CHANGED_CASE]
    other = chromium.new_page()
    try:
        other.goto(url)
        other.wait_for_selector("body[data-ready=true]")
        settle(other)
        assert other.eval_on_selector("#f-view", "e => e.value") == "compare"
        assert other.is_checked("#f-changed")
        assert cards(other) == [CHANGED_CASE]
    finally:
        other.close()


def test_compare_view_puts_models_side_by_side_and_marks_changed_verdicts(page, report):
    _, rows = report
    choose(page, "#f-view", "compare")
    assert sorted(cards(page)) == sorted([CHANGED_CASE, SAME_CASE])
    card = page.locator("article.case.compare", has=page.locator(".case-title", has_text=CHANGED_CASE))
    headers = card.locator("thead th").all_text_contents()
    assert [h.split("colour scale")[0] for h in headers[1:]] == [
        "signs-clean · lrp/epsilon_plus_flat", "signs-shortcut · lrp/epsilon_plus_flat",
    ]  # fmt: skip
    assert all("colour scale ±" in h for h in headers[1:])
    changed = card.locator("tr.changed").evaluate_all("els => els.map(e => e.dataset.variant)")
    expected = [r["variant"] for r in rows if r["case_id"] == CHANGED_CASE and r["model"] == "signs-shortcut"
                and r["verdict"] != "passed"]  # fmt: skip
    assert changed == expected and changed
    same = page.locator("article.case.compare", has=page.locator(".case-title", has_text=SAME_CASE))
    assert same.locator("tr.changed").count() == 0
    card.scroll_into_view_if_needed()
    top = card.evaluate("e => e.getBoundingClientRect().top")
    toolbar = page.evaluate("document.getElementById('toolbar').getBoundingClientRect().height")
    page.evaluate(f"window.scrollBy(0, {top} - {toolbar} - 16)")  # the sticky toolbar would cover the head
    shoot(page, "comparison")


def test_screenshots_of_the_overview_and_one_case(page):
    shoot(page, "overview")
    shoot(page, "case", page.locator("article.case").first)


def test_lightbox_shows_values_and_scale_and_steps_with_the_keyboard(page):
    first_card = page.locator("article.case").first
    first_card.locator("section.variant button.thumb").nth(1).click()  # the first variant's heatmap
    page.wait_for_selector("#lightbox[open]")
    title = page.text_content("#lightbox-title") or ""
    assert title.endswith("relevance")
    info = page.locator("#lightbox-info")
    assert info.locator(".badge").count() >= 1 and info.locator("table.checks").count() == 1
    assert info.locator(".case-scale .cbar").count() == 1  # the case's colour scale, with its values
    total = page.evaluate("document.querySelectorAll('section.variant:not(.context)').length")
    assert page.text_content("#lightbox-pos") == f"item 1 of {total} shown · ← → to step"
    page.keyboard.press("ArrowRight")
    assert page.text_content("#lightbox-pos") == f"item 2 of {total} shown · ← → to step"
    assert (page.text_content("#lightbox-title") or "") != title
    shoot(page, "lightbox")
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#lightbox-title") == title
    page.keyboard.press("Escape")
    assert page.locator("#lightbox[open]").count() == 0
