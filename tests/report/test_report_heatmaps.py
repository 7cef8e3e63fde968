"""One colour scale per case: the scale's known answers, the saved relevance, and the
report's recoloured pictures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from harness import render
from harness.report import write_report
from harness.report.heatmaps import case_heatmaps
from harness.report.model import build_report


def test_case_scale_is_the_percentile_of_abs_relevance_over_all_maps():
    a = np.arange(0, 500, dtype=np.float64).reshape(20, 25)
    b = -np.arange(500, 1000, dtype=np.float64).reshape(20, 25)  # sign does not matter
    assert render.case_scale([a, b]) == pytest.approx(np.percentile(np.arange(1000), 99.5))
    assert render.case_scale([a, b], percentile=100) == 999.0
    # One hot pixel among zeros: the percentile is zero, the scale falls back to the peak.
    sparse = np.zeros((40, 40))
    sparse[3, 4] = -0.25
    assert render.case_scale([sparse]) == 0.25
    assert render.case_scale([np.zeros((4, 4))]) == 0.0 and render.case_scale([]) == 0.0


def test_saved_relevance_round_trips_far_below_float16_range(tmp_path: Path):
    rng = np.random.default_rng(0)
    relevance = rng.normal(0, 1e-7, (16, 12))
    obj = np.zeros((16, 12), bool)
    obj[4:9, 3:7] = True
    path = tmp_path / "m_heatmap.npz"
    render.save_heatmap_data(path, relevance, obj, None)
    back, back_obj, back_sticker = render.load_heatmap_data(path)
    assert back.shape == relevance.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, relevance, rtol=0, atol=np.abs(relevance).max() * 1e-3)
    assert np.array_equal(back_obj, obj) and back_sticker is None


def test_full_colour_at_the_scale_and_white_at_zero():
    relevance = np.array([[1.0, -1.0, 0.0, 4.0]])
    picture = render.signed_heatmap(relevance, 1.0)
    assert picture[0, 0].tolist() == [255, 0, 0]  # +scale: red
    assert picture[0, 1].tolist() == [0, 0, 255]  # -scale: blue
    assert picture[0, 2].tolist() == [255, 255, 255]  # zero: white
    assert picture[0, 3].tolist() == [255, 0, 0]  # beyond the scale: clipped, not wrapped


def _row(tmp_path: Path, variant: str, relevance: np.ndarray) -> dict:
    image = np.full(relevance.shape + (3,), 120, np.uint8)
    folder = tmp_path / "assets"
    folder.mkdir(exist_ok=True)
    paths = {}
    for kind, picture in (
        ("input", image),
        ("heatmap", render.heatmap_image(relevance)),
        ("overlay", render.overlay(image, relevance)),
    ):
        paths[kind] = str(folder / f"{variant}_{kind}.png")
        cv2.imwrite(paths[kind], cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    paths["heatmap_data"] = str(folder / f"{variant}_heatmap.npz")
    render.save_heatmap_data(paths["heatmap_data"], relevance, None, None)
    return {
        "suite": "s.xai.yaml", "line": 3, "case_id": "c", "variant": variant, "model": "m",
        "explainer": "lrp/epsilon_plus_flat", "label": "cat", "verdict": "passed", "passed": True,
        "message": "ok", "images": paths, "heatmap_scale": float(np.abs(relevance).max()),
    }  # fmt: skip


def _strong_and_weak(tmp_path: Path) -> list[dict]:
    yy, xx = np.mgrid[0:32, 0:32]
    blob = np.exp(-((xx - 16.0) ** 2 + (yy - 16.0) ** 2) / 40.0)
    return [_row(tmp_path, "original", 0.093 * blob), _row(tmp_path, "instance_removed", 0.0015 * blob)]


def test_a_weak_map_beside_a_strong_one_is_pale_on_the_case_scale(tmp_path: Path):
    rows = _strong_and_weak(tmp_path)
    (case,) = build_report(rows).cases
    shared = case_heatmaps(case)
    assert shared is not None and shared.maps == 2
    assert shared.scale == pytest.approx(
        render.case_scale([render.load_heatmap_data(r["images"]["heatmap_data"])[0] for r in rows])
    )
    assert shared.scale < 0.093  # clipped below the strongest pixel
    by_variant = {item.variant: shared.pictures[item.key] for item in case.items}

    def decoded(png: bytes) -> np.ndarray:
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    strong, weak = decoded(by_variant["original"]["heatmap"]), decoded(by_variant["instance_removed"]["heatmap"])
    centre = strong.shape[0] // 2
    assert strong[centre, centre].tolist() == [255, 0, 0]
    # On its own scale the weak map's centre is full red as well; on the case's it is nearly white.
    assert weak[centre, centre, 0] == 255 and weak[centre, centre, 1] > 240
    assert set(by_variant["original"]) == {"heatmap", "overlay"}


def test_the_report_shows_the_recoloured_pictures_and_the_scale_once_per_case(tmp_path: Path, payload_of):
    rows = _strong_and_weak(tmp_path)
    report = write_report(rows, tmp_path / "out" / "r.html")
    (case,) = payload_of(report)["cases"]
    assert case["heatmap_maps"] == 2 and case["heatmap_percentile"] == render.HEATMAP_PERCENTILE
    assert 0 < case["heatmap_scale"] < 0.093
    for item in case["items"]:
        assert "heatmap_data" not in item["images"]
        assert "case-scale" in item["images"]["heatmap"] and "case-scale" in item["images"]["overlay"]
        picture = cv2.imread(str(report.parent / item["images"]["heatmap"]))
        assert picture is not None and picture.shape[:2] == (192, 192)  # upscaled like the core's
    # The items' own heatmap PNGs are not copied: only what the page shows.
    copied = sorted(p.name for p in (tmp_path / "out" / "r_assets").glob("*.png"))
    assert len(copied) == 2 * 3 and not [name for name in copied if "-heatmap-" in name and "case-scale" not in name]


def test_without_saved_relevance_the_items_pictures_and_scales_are_kept(tmp_path: Path, payload_of):
    rows = _strong_and_weak(tmp_path)
    for row in rows:
        del row["images"]["heatmap_data"]
    (case,) = payload_of(write_report(rows, tmp_path / "r.html"))["cases"]
    assert case["heatmap_scale"] is None
    assert all("case-scale" not in item["images"]["heatmap"] for item in case["items"])


def test_cases_recoloured_on_threads_come_back_in_order_and_equal(tmp_path: Path):
    from harness.report.heatmaps import each_case_heatmaps
    from harness.report.sample import sample_rows

    cases = build_report(sample_rows(tmp_path / "s", n_items=24, seed=2)).cases
    serial = list(each_case_heatmaps(cases, workers=1))
    threaded = list(each_case_heatmaps(cases, workers=3, window=2))
    assert [s and (s.scale, s.pictures) for s in serial] == [t and (t.scale, t.pictures) for t in threaded]
    assert all(s is not None for s in serial)
    # The error item (the last row) saved no relevance: its case's other items are recoloured, it is not.
    errors = [(i, item.key) for i, case in enumerate(cases) for item in case.items if item.verdict == "error"]
    assert len(errors) == 1 and errors[0][1] not in serial[errors[0][0]].pictures
    assert sum(len(s.pictures) for s in serial if s) == sum(len(c.items) for c in cases) - 1


def test_the_predicted_class_heatmap_is_recoloured_on_the_case_scale(tmp_path: Path, payload_of):
    rows = _strong_and_weak(tmp_path)
    yy, xx = np.mgrid[0:32, 0:32]
    # The weak item predicts another class: its second pass is a strong map off-centre.
    other = 0.05 * np.exp(-((xx - 8.0) ** 2 + (yy - 8.0) ** 2) / 20.0) - 0.01
    weak = rows[1]
    label_map = render.load_heatmap_data(weak["images"]["heatmap_data"])[0]
    render.save_heatmap_data(weak["images"]["heatmap_data"], label_map, None, None, predicted=other)
    own = tmp_path / "assets" / "instance_removed_heatmap_predicted.png"
    cv2.imwrite(str(own), cv2.cvtColor(render.heatmap_image(other), cv2.COLOR_RGB2BGR))  # on its own maximum
    weak["images"]["heatmap_predicted"] = str(own)

    report = write_report(rows, tmp_path / "out" / "r.html")
    (case,) = payload_of(report)["cases"]
    saved = [render.load_heatmap_data(r["images"]["heatmap_data"])[0] for r in rows]
    predicted = render.load_predicted_data(weak["images"]["heatmap_data"])
    assert predicted is not None and render.load_predicted_data(rows[0]["images"]["heatmap_data"]) is None
    scale = render.case_scale([*saved, predicted])
    assert case["heatmap_maps"] == 3 and case["heatmap_scale"] == pytest.approx(scale, rel=1e-5)
    item = next(it for it in case["items"] if it["variant"] == "instance_removed")
    assert "case-scale" in item["images"]["heatmap_predicted"]
    shown = cv2.cvtColor(cv2.imread(str(report.parent / item["images"]["heatmap_predicted"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(shown, render.heatmap_image(predicted, None, None, scale=scale))
    # Not the picture on the map's own maximum: the peak pixel is paler on the shared scale.
    assert not np.array_equal(shown, render.heatmap_image(predicted))
