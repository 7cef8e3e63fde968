"""Shared pieces of the reliability tests: a session of demo suites run once, in a
subprocess, and its outcomes read back from JUnit XML and results.csv."""

from __future__ import annotations

import csv
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "fixtures" / "models.yaml"
HELDOUT = REPO / "fixtures" / "signs" / "heldout"

# The control case every suite of the matrix starts with (lines 1-8), and the
# baseline suite is exactly this: its outcomes are what a run without bad input gives.
HEADER = """\
model: signs-clean
explainer: lrp/epsilon_plus_flat
defaults:
  label: speed_30
cases:
  - id: ok
    image: img.png
    object: {mask: mask.png}
"""


@dataclass
class Outcome:
    """One item of a run: pytest's outcome and the message it printed."""

    outcome: str  # passed, failed, error, skipped, xfailed
    message: str


@dataclass
class Run:
    """What one pytest run produced."""

    returncode: int
    stdout: str
    items: dict[str, dict[str, Outcome]] = field(default_factory=dict)  # file stem -> item name -> outcome
    rows: list[dict[str, str]] = field(default_factory=list)
    report: str = ""  # the HTML report, when one was asked for

    def rows_of(self, suite: str) -> list[dict[str, str]]:
        return [row for row in self.rows if row["suite"] == f"{suite}.xai.yaml"]


def write_world(root: Path) -> None:
    """Demo image and mask, plus the odd files bad inputs point at."""
    shutil.copy(HELDOUT / "speed_30_000.png", root / "img.png")
    shutil.copy(HELDOUT / "speed_30_000_mask.png", root / "mask.png")
    cv2.imwrite(str(root / "mask_small.png"), np.full((32, 32), 255, np.uint8))
    cv2.imwrite(str(root / "mask_empty.png"), np.zeros((64, 64), np.uint8))
    cv2.imwrite(str(root / "mask_full.png"), np.full((64, 64), 255, np.uint8))
    (root / "not_an_image.png").write_text("this is text, not a PNG\n")
    (root / "folder.png").mkdir()
    (root / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    os.symlink("loop_b.png", root / "loop_a.png")
    os.symlink("loop_a.png", root / "loop_b.png")
    # 'flaky' stands for a marker some plugin acts on (pytest-rerunfailures' does).
    (root / "pytest.ini").write_text(f"[pytest]\nxai_models = {MODELS}\nmarkers =\n    flaky: rerun a failing test\n")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` pixels with almost no data: a decompression
    bomb as far as any reader that trusts the header is concerned."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def run_session(root: Path, *extra: str) -> Run:
    """Run pytest on ``root`` in a fresh process and read its JUnit XML and results table."""
    junit = root / "junit.xml"
    results = root / "reports" / "results.csv"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(root),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "--rootdir",
        str(root),
        f"--junitxml={junit}",
        f"--xai-results={results}",
        "--xai-assets=",
        "--strict-markers",
        "-q",
        *extra,
    ]
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env, timeout=600)
    run = Run(done.returncode, done.stdout + done.stderr)
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            suite = case.get("classname", "").removesuffix(".xai.yaml")
            name = case.get("name", "")
            run.items.setdefault(suite, {})[name] = _outcome(case)
    if results.exists():
        with results.open(newline="", encoding="utf-8") as handle:
            run.rows = list(csv.DictReader(handle))
    report = root / "reports" / "index.html"
    if report.exists():
        run.report = report.read_text(encoding="utf-8")
    return run


def _outcome(case: ET.Element) -> Outcome:
    for tag in ("error", "failure", "skipped"):
        element = case.find(tag)
        if element is not None:
            text = (element.get("message") or "") + "\n" + (element.text or "")
            xfailed = element.get("type") == "pytest.xfail" or "xfail" in (element.get("message") or "")
            if tag == "skipped" and xfailed:
                return Outcome("xfailed", text)
            return Outcome({"failure": "failed"}.get(tag, tag), text)
    return Outcome("passed", "")
