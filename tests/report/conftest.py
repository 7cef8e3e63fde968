"""Fixtures of the report tests: fabricated rows, payload reader, a headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.report.render import decode_payload
from harness.report.sample import sample_rows

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_ISLAND = re.compile(r'<script type="application/json" id="xai-data">(.*?)</script>', re.S)


def read_payload(path: Path) -> dict[str, Any]:
    """Parse the JSON data island of a written report."""
    match = _ISLAND.search(path.read_text(encoding="utf-8"))
    assert match, "report has no data island"
    return decode_payload(json.loads(match.group(1)))


@pytest.fixture
def payload_of() -> Callable[[Path], dict[str, Any]]:
    """The data island parser, as a fixture (test modules do not import conftest)."""
    return read_payload


@pytest.fixture
def rows(tmp_path: Path) -> list[dict[str, Any]]:
    """Twelve seeded rows (three cases) with real PNGs, the last one an error."""
    return sample_rows(tmp_path / "sources", n_items=12, seed=7)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Debian Chromium per test module, driven by Playwright.

    Skips when Chromium or Playwright is missing, but fails when ``CI=true``: there a
    missing browser is a broken image, not an optional extra.
    """
    executable = shutil.which("chromium")
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed"
    if executable is None:
        problem = "no 'chromium' executable on PATH (Debian package chromium)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests need Chromium and Playwright in CI: {problem}", pytrace=False)
        pytest.skip(problem)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
