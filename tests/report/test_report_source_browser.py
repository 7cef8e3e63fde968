"""The source view in headless Chromium: the case card opens the image file at its own
resolution, with the object outlined."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import pytest

from harness import render
from harness.report import write_report
from tests.report.test_report_source import make_project

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


def test_the_source_view_shows_the_file_at_its_natural_size_with_outlines(chromium: Any, tmp_path: Path):
    report = write_report(make_project(tmp_path), tmp_path / "out" / "r.html", meta={"rootdir": str(tmp_path)})
    context = chromium.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready=true]")
    card = page.locator("article.case", has=page.locator("h3", has_text="photo")).first
    link = card.locator("button.source-link")
    assert link.inner_text() == "source image (256 × 200 px)"
    link.click()
    page.wait_for_selector("#lightbox[open]")
    size = None
    for _ in range(100):
        size = page.evaluate("(() => { const i = document.getElementById('lightbox-img'); "
                             "return i.complete ? [i.naturalWidth, i.naturalHeight] : null; })()")  # fmt: skip
        if size and size[0]:
            break
        page.wait_for_timeout(50)
    assert size == [256, 200]  # the file's own size, not the model's input
    assert page.inner_text("#lightbox-title").endswith("source image")
    assert "256 × 200 px" in page.inner_text("#lightbox-info")
    # The picture the page shows carries the outline (the page cannot read file:// pixels back).
    src = page.get_attribute("#lightbox-img", "src")
    shown = cv2.imread(unquote(urlparse(page.evaluate("document.getElementById('lightbox-img').src")).path))
    assert src and shown is not None and shown.shape[:2] == (200, 256)
    green = np.all(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB) == render.OBJECT_COLOUR, axis=2)
    assert green[30, 40:120].mean() > 0.9
    # The lightbox steps through the items keeping the source view; each item offers it.
    kinds = page.eval_on_selector_all("#lightbox-kinds button", "els => els.map(e => e.dataset.kind)")
    assert "source" in kinds
    shot = tmp_path / "source.png"
    page.screenshot(path=str(shot))
    target = REPO / "reports" / "screenshots" / "report-source-view.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, target)
    assert problems == []
    context.close()
