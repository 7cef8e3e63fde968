"""Benchmark the HTML report: render time and sizes for many items, optional load time.

Usage::

    python benchmarks/bench_report.py [--items 1000] [--out DIR] [--no-browser]

Fabricates ``--items`` rows with real PNGs (four per item), renders the report with an
assets folder and self-contained, prints the figures, and, when Chromium and Playwright
are available, times how long the page takes until its first cards are on screen and
until all items are rendered. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.report import write_report  # noqa: E402
from harness.report.sample import sample_rows  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def folder_size(path: Path) -> int:
    """Total size in bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def mib(size: int) -> str:
    """Format a byte count in MiB."""
    return f"{size / 2**20:.2f} MiB"


def best_of(repeat: int, action):
    """Run ``action`` ``repeat`` times; return (best seconds, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return best, result


def time_in_browser(report: Path) -> dict[str, float]:
    """Print load-to-first-cards and render-all times in headless Chromium."""
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser: skipped (playwright not installed)")
        return {}
    if executable is None:
        print("browser: skipped (no chromium on PATH)")
        return {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        start = time.perf_counter()
        page.goto(report.as_uri())
        page.wait_for_selector("[data-item-key]")
        first = time.perf_counter() - start
        items = page.evaluate("document.querySelectorAll('[data-item-key]').length")
        start = time.perf_counter()
        page.select_option("#f-size", "all")
        responsive = time.perf_counter() - start  # the first slice is on screen
        page.wait_for_selector("#cases[aria-busy=false]", state="attached")
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        everything = time.perf_counter() - start
        total = page.evaluate("document.querySelectorAll('[data-item-key]').length")
        start = time.perf_counter()
        page.select_option("#f-verdict", "!passed")
        page.wait_for_selector("#cases[aria-busy=false]", state="attached")
        refilter = time.perf_counter() - start
        print(f"browser: first page ({items} items) on screen {first * 1000:.0f} ms after navigation")
        print(
            f"browser: 'show all': first slice after {responsive * 1000:.0f} ms, "
            f"all {total} items built after {everything * 1000:.0f} ms (in slices, page stays responsive)"
        )
        print(f"browser: filter 'all not passed' with all shown, until built: {refilter * 1000:.0f} ms")
        browser.close()
    return {
        "first_page_ms": first * 1000,
        "show_all_first_slice_ms": responsive * 1000,
        "show_all_built_ms": everything * 1000,
        "refilter_ms": refilter * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the outputs here")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"items": args.items, "size": args.size}

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_report_"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = sample_rows(out / "sources", n_items=args.items, seed=0, size=args.size, errors=max(1, args.items // 100))
    print(
        f"fabricated {len(rows)} items ({folder_size(out / 'sources') // len(rows)} B of PNG per item, "
        f"{args.size}x{args.size} px) in {time.perf_counter() - start:.1f} s"
    )

    linked = out / "report.html"
    seconds, _ = best_of(args.repeat, lambda: write_report(rows, linked, meta={"title": "benchmark"}))
    assets = out / "report_assets"
    figures["render_assets_ms"] = seconds * 1000
    print(f"render with assets folder: {seconds * 1000:.0f} ms (best of {args.repeat})")
    print(
        f"  HTML {mib(linked.stat().st_size)}, assets {mib(folder_size(assets))} "
        f"in {sum(1 for _ in assets.glob('*.png'))} files"
    )

    inline = out / "inline.html"
    seconds, _ = best_of(
        args.repeat, lambda: write_report(rows, inline, meta={"title": "benchmark"}, self_contained=True)
    )
    figures["render_self_contained_ms"] = seconds * 1000
    print(f"render self-contained:     {seconds * 1000:.0f} ms (best of {args.repeat})")
    print(f"  HTML {mib(inline.stat().st_size)}")

    if not args.no_browser:
        figures["browser"] = time_in_browser(linked)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.out is None:
        shutil.rmtree(out)
    else:
        print(f"outputs kept in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
