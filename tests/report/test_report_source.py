"""The case's source image in the report: the file at its own resolution with the
object outlined, encoded once per case however many models and explainers show it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from harness import render
from harness.report import write_report

SUITE = """\
model: m
defaults: {label: cat}
cases:
  - id: photo
    image: photo.png
    object: {box: [40, 30, 120, 110]}
  - id: jpeg
    image: photo.jpg
    object: {polygon: [[10, 10], [100, 12], [60, 90]]}
"""


def make_project(root: Path) -> list[dict[str, Any]]:
    """A suite with a 256 x 200 PNG and JPEG, and rows of two explainers for each case."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (200, 256, 3), dtype=np.uint8)  # never the outline's green
    folder = root / "testcases"
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "photo.png"), image)
    cv2.imwrite(str(folder / "photo.jpg"), image)
    (folder / "cats.xai.yaml").write_text(SUITE, encoding="utf-8")
    rows = []
    for case_id in ("photo", "jpeg"):
        for explainer in ("lrp/epsilon_plus_flat", "cam/gradcam"):
            rows.append(
                {"suite": "testcases/cats.xai.yaml", "line": 4, "case_id": case_id, "variant": "original",
                 "model": "m", "explainer": explainer, "label": "cat", "verdict": "passed", "passed": True,
                 "message": "ok", "nodeid": f"testcases/cats.xai.yaml::{case_id}[original-{explainer}]"}
            )  # fmt: skip
    return rows


def test_source_view_is_the_file_at_its_size_with_the_object_outlined(tmp_path: Path, payload_of):
    rows = make_project(tmp_path)
    report = write_report(rows, tmp_path / "out" / "r.html", meta={"rootdir": str(tmp_path)})
    cases = payload_of(report)["cases"]
    assert len(cases) == 4
    by_id = {}
    for case in cases:
        assert case["source_size"] == [256, 200]
        by_id.setdefault(case["case_id"], set()).add(case["source"])
    # One picture per case, shared by its two explainers' cards; a PNG stays a PNG, a photo a JPEG.
    assert {k: len(v) for k, v in by_id.items()} == {"photo": 1, "jpeg": 1}
    (png,), (jpg,) = by_id["photo"], by_id["jpeg"]
    assert png.endswith(".png") and jpg.endswith(".jpg")
    assert len(list((tmp_path / "out" / "r_assets").glob("*-source-*"))) == 2
    picture = cv2.cvtColor(cv2.imread(str(report.parent / png)), cv2.COLOR_BGR2RGB)
    assert picture.shape == (200, 256, 3)
    green = np.all(picture == render.OBJECT_COLOUR, axis=2)
    # The outline follows the box's edge at full resolution: rows 30..109, columns 40..119.
    assert green[30, 40:120].mean() > 0.9 and green[30:110, 40].mean() > 0.9
    assert not green[60:80, 60:100].any() and not green[150:, :].any()


def test_without_the_suite_file_there_is_no_source_view(tmp_path: Path, payload_of):
    rows = make_project(tmp_path)
    report = write_report(rows, tmp_path / "out" / "r.html", meta={"rootdir": str(tmp_path / "elsewhere")})
    assert all(case.get("source") is None for case in payload_of(report)["cases"])
