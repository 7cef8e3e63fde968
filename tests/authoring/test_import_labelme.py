"""LabelMe JSON -> suite -> load_suite -> rasterised regions, pixel by pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.regions import rasterize
from harness.spec import load_suite

H, W = 30, 40


def _labelme(image_path: str, shapes: list[dict]) -> dict:
    # The published layout: version, flags, shapes, imagePath, imageData, imageHeight, imageWidth.
    return {
        "version": "5.2.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": H,
        "imageWidth": W,
    }


def _shape(label: str, kind: str, points: list[list[float]], group: int | None = None) -> dict:
    return {"label": label, "points": points, "group_id": group, "description": "", "shape_type": kind, "flags": {}}


def _expected() -> dict[str, np.ndarray]:
    dog = np.zeros((H, W), bool)
    dog[5:16, 5:21] = True  # polygon corners are pixel centres: both ends included
    cat = np.zeros((H, W), bool)
    cat[3:20, 22:35] = True  # a rectangle is a box: corners are pixel edges
    pair = np.zeros((H, W), bool)
    pair[20:27, 2:9] = True
    pair[20:29, 10:15] = True
    return {"photo_0": dog, "photo_1": cat, "photo_2": pair}


def _write_fixture(tmp_path: Path, write_image) -> Path:
    write_image(tmp_path / "images" / "photo.png", H, W, seed=1)
    shapes = [
        _shape("dog", "polygon", [[5, 5], [20, 5], [20, 15], [5, 15]]),
        _shape("cat", "rectangle", [[35, 20], [22, 3]]),
        _shape("dog", "polygon", [[2, 20], [8, 20], [8, 26], [2, 26]], group=1),
        _shape("person", "polygon", [[30, 22], [38, 22], [38, 28]]),
        _shape("dog", "polygon", [[10, 20], [14, 20], [14, 28], [10, 28]], group=1),
        _shape("dog", "line", [[0, 0], [10, 10]]),
    ]
    path = tmp_path / "labelme" / "photo.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_labelme("../images/photo.png", shapes)), encoding="utf-8")
    return path


def test_labelme_round_trip(tmp_path: Path, write_image, registry: Path, cli) -> None:
    source = _write_fixture(tmp_path, write_image)
    suite = tmp_path / "suites" / "pets.xai.yaml"
    code, out, err = cli(
        "import",
        "labelme",
        source.parent,
        "-o",
        suite,
        "--model",
        "pets",
        "--models",
        registry,
        "--map",
        "dog=canine",
        "--map",
        "cat=feline",
    )
    assert code == 0, err
    assert "'person'" in err and "line" in err  # unknown class and non-area shape: warned, skipped
    spec = load_suite(suite)
    assert spec.error is None
    assert [c.case_id for c in spec.cases] == ["photo_0", "photo_1", "photo_2"]
    assert [c.label for c in spec.cases] == ["canine", "feline", "canine"]
    assert all(not c.errors for c in spec.cases)
    assert "image: ../images/photo.png" in suite.read_text()
    for case in spec.cases:
        mask = rasterize(case.regions, (H, W), case.base_dir)
        assert np.array_equal(mask, _expected()[case.case_id]), case.case_id
    code, out, _ = cli("validate", suite, "--models", registry)
    assert code == 0, out


def test_keep_unknown_keeps_unmapped_classes(tmp_path: Path, write_image, registry: Path, cli) -> None:
    source = _write_fixture(tmp_path, write_image)
    suite = tmp_path / "all.xai.yaml"
    code, _, err = cli(
        "import", "labelme", source, "-o", suite, "--model", "pets", "--models", registry, "--keep-unknown"
    )
    assert code == 0, err
    labels = [c.label for c in load_suite(suite).cases]
    assert labels == ["dog", "cat", "dog", "person"]
    code, out, _ = cli("validate", suite, "--models", registry)
    assert code == 1 and "unknown class 'dog' for model 'pets'" in out


def test_points_slightly_outside_are_clipped(tmp_path: Path, write_image) -> None:
    from harness.authoring.importers.labelme import read_labelme

    write_image(tmp_path / "p.png", H, W)
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            _labelme(
                "p.png",
                [
                    _shape("dog", "polygon", [[-0.4, 1], [40.3, 1], [20, 29]]),
                    _shape("dog", "polygon", [[-9, 1], [10, 1], [5, 9]]),
                ],
            )
        )
    )
    result = read_labelme(path)
    first, second = (c.regions[0].value for c in result.cases)
    assert min(x for x, _ in first) == 0 and max(x for x, _ in first) == W
    assert min(x for x, _ in second) == 0
    assert len(result.warnings) == 1 and "clipped" in result.warnings[0]  # only the far one is worth a warning
