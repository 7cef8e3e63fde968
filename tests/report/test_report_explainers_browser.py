"""The report of a run with several explainers in headless Chromium: the per-case line
when the explainers disagree on a verdict, and its filter and count."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.report import write_report
from harness.report.sample import sample_rows

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
LRP, CAM = "lrp/epsilon_plus_flat", "cam/gradcam"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("explainers")
    rows = sample_rows(base / "sources", n_items=8, seed=5, models=("signs-clean",), errors=0)
    twins = []
    for row in rows:
        twin = dict(row, explainer=CAM, nodeid=f"{row['suite']}::{row['case_id']}[{row['variant']}-cam]")
        row.update(explainer=LRP, nodeid=f"{row['suite']}::{row['case_id']}[{row['variant']}-lrp]")
        twins.append(twin)
    # Grad-CAM sees one background_removed image differently.
    target = next(t for t in twins if t["variant"] == "background_removed")
    source = next(r for r in rows if r["nodeid"].replace("-lrp]", "") == target["nodeid"].replace("-cam]", ""))
    source.update(verdict="passed", passed=True)
    target.update(verdict="wrong_reasons", passed=False, message="wrong reasons: little relevance on the object")
    return write_report(rows + twins, base / "report.html", meta={"title": "Two explainers"})


@pytest.fixture
def page(chromium: Any, written: Path) -> Any:
    context = chromium.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(written.as_uri())
    page.wait_for_selector("body[data-ready=true]")
    page.problems = problems
    yield page
    context.close()


def settle(page: Any) -> None:
    page.wait_for_selector("#cases[aria-busy=false]", state="attached")


def test_each_card_of_the_image_says_which_explainer_says_what(page, tmp_path):
    assert page.inner_text("#disagree-count") == "1 image on which the explainers disagree"
    # textContent: cards off screen are not laid out (content-visibility), so have no innerText.
    lines = page.eval_on_selector_all("p.disagree", "els => els.map(e => e.textContent)")
    expected = "cam/gradcam says wrong reasons, lrp/epsilon_plus_flat says passed on background removed"
    assert lines == ["explainers disagree: " + expected] * 2  # the case's card under each explainer
    page.click("#disagree-count")  # the overview's count is the filter
    settle(page)
    assert page.is_checked("#f-disagree")
    shown = page.eval_on_selector_all(
        "section.variant:not(.context)", "els => els.map(e => e.dataset.variant + ' ' + e.dataset.verdict)"
    )
    assert sorted(shown) == ["background_removed passed", "background_removed wrong_reasons"]
    assert "disagree=1" in page.url
    page.set_viewport_size({"width": 1400, "height": 1000})
    shot = tmp_path / "disagree.png"
    page.screenshot(path=str(shot))
    target = REPO / "reports" / "screenshots" / "report-explainers-disagree.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, target)
    assert page.problems == []
