"""Smoke runs of the benchmark scripts: they must keep working as the harness changes
(their figures are not checked; a test cannot time anything reliably)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_e2e_runs_and_counts_the_harness_lrp_rows(tmp_path):
    out = tmp_path / "e2e.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_e2e.py"),
            "--setups",
            "demo",
            "--copies",
            "1",
            "--rounds",
            "1",
            "--xdist-copies",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        timeout=900,
        capture_output=True,
    )
    figures = json.loads(out.read_text())
    demo = figures["setups"]["demo"]
    assert demo["items"] == 120 and demo["images"] == 120
    # The bare baseline does the harness's LRP work: one row per image plus one per
    # flipped sticker (all 10 stickered 50 km/h signs and more, on the shortcut model).
    assert demo["images"] + 10 <= demo["lrp_rows"] <= demo["images"] + 30
    for key in ("bare_s", "pytest_no_pictures_s", "pytest_s", "loop_s"):
        assert demo[key] > 0
    assert figures["xdist"]["cases"] == 30 and figures["xdist"]["n2_s"] > 0
