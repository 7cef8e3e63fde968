"""COCO instances JSON (polygons, compressed and uncompressed RLE, boxes) -> suite -> masks."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from harness.authoring.rle import encode_counts, mask_to_rle_counts
from harness.imageio import read_label_image
from harness.regions import rasterize
from harness.spec import load_suite

H, W = 16, 20


def _disc(cx: int, cy: int, r: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    return mask > 0


def _coco(tmp_path: Path, write_image) -> tuple[Path, dict[int, np.ndarray]]:
    write_image(tmp_path / "val" / "a.png", H, W, seed=2)
    write_image(tmp_path / "val" / "b.png", H, W, seed=3)
    polygon = np.zeros((H, W), bool)
    polygon[2:9, 2:11] = True
    disc = _disc(14, 10, 4)
    crowd = np.zeros((H, W), bool)
    crowd[0:5, 12:20] = True
    crowd[9:16, 0:3] = True
    boxed = np.zeros((H, W), bool)
    boxed[4:10, 3:9] = True
    data = {
        "info": {"description": "test"},
        "licenses": [],
        "images": [
            {"id": 7, "file_name": "a.png", "height": H, "width": W},
            {"id": 8, "file_name": "b.png", "height": H, "width": W},
        ],
        "categories": [
            {"id": 1, "name": "dog", "supercategory": "animal"},
            {"id": 2, "name": "cat", "supercategory": "animal"},
            {"id": 3, "name": "person", "supercategory": "person"},
        ],
        "annotations": [
            {
                "id": 100,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "area": 63.0,
                "bbox": [2, 2, 8, 6],
                "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8]],
            },
            {
                "id": 101,
                "image_id": 7,
                "category_id": 2,
                "iscrowd": 0,
                "area": float(disc.sum()),
                "bbox": [10, 6, 9, 9],
                "segmentation": {"size": [H, W], "counts": encode_counts(mask_to_rle_counts(disc))},
            },
            {
                "id": 102,
                "image_id": 7,
                "category_id": 3,
                "iscrowd": 0,
                "area": 30.0,
                "bbox": [0, 0, 5, 6],
                "segmentation": [[0, 0, 5, 0, 5, 6]],
            },
            {
                "id": 103,
                "image_id": 8,
                "category_id": 1,
                "iscrowd": 1,
                "area": float(crowd.sum()),
                "bbox": [0, 0, 20, 16],
                "segmentation": {"size": [H, W], "counts": mask_to_rle_counts(crowd)},
            },
            {
                "id": 104,
                "image_id": 8,
                "category_id": 2,
                "iscrowd": 0,
                "area": 4.0,
                "bbox": [0, 0, 2, 2],
                "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]],
            },
            {
                "id": 105,
                "image_id": 8,
                "category_id": 2,
                "iscrowd": 0,
                "area": 36.0,
                "bbox": [3, 4, 6, 6],
                "segmentation": [],
            },
        ],
    }
    path = tmp_path / "annotations" / "instances_val.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, {100: polygon, 101: disc, 103: crowd, 105: boxed}


def test_coco_round_trip(tmp_path: Path, write_image, registry: Path, cli) -> None:
    source, expected = _coco(tmp_path, write_image)
    suite = tmp_path / "testcases" / "coco.xai.yaml"
    code, out, err = cli(
        "import",
        "coco",
        source,
        "--images",
        tmp_path / "val",
        "--min-area",
        10,
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
    assert "'person'" in err
    spec = load_suite(suite)
    assert spec.error is None and all(not c.errors for c in spec.cases)
    # Ids: image stem + the instance's index among that image's annotations (104 is too small).
    ids = {c.case_id: c for c in spec.cases}
    assert sorted(ids) == ["a_0", "a_1", "b_0", "b_2"]
    by_annotation = {"a_0": 100, "a_1": 101, "b_0": 103, "b_2": 105}
    for case_id, ann in by_annotation.items():
        case = ids[case_id]
        assert np.array_equal(rasterize(case.regions, (H, W), case.base_dir), expected[ann]), case_id
    # RLE instances became mask PNGs in masks/ beside the suite, referenced relatively.
    assert ids["a_1"].regions[0].mask == "masks/a_1.png"
    assert np.array_equal(read_label_image(suite.parent / "masks" / "b_0.png") > 0, expected[103])
    assert ids["b_2"].regions[0].box == (3, 4, 9, 10)  # no segmentation: the bbox
    assert ids["a_0"].label == "canine" and ids["a_1"].label == "feline"
    code, out, _ = cli("validate", suite, "--models", registry)
    assert code == 0, out


def test_category_filter(tmp_path: Path, write_image, registry: Path, cli) -> None:
    source, _ = _coco(tmp_path, write_image)
    suite = tmp_path / "cats.xai.yaml"
    code, _, err = cli(
        "import",
        "coco",
        source,
        "--images",
        tmp_path / "val",
        "--category",
        "cat",
        "-o",
        suite,
        "--model",
        "pets",
        "--models",
        registry,
        "--map",
        "cat=feline",
    )
    assert code == 0, err
    assert [c.case_id for c in load_suite(suite).cases] == ["a_1", "b_1", "b_2"]


def test_without_images_the_coco_layout_is_found(tmp_path: Path, write_image, registry: Path, cli) -> None:
    # annotations/instances_val.json with the images in val/ beside annotations/ (COCO's own layout).
    source, _ = _coco(tmp_path, write_image)
    suite = tmp_path / "cats.xai.yaml"
    code, _, err = cli(
        "import", "coco", source, "--category", "cat", "-o", suite, "--model", "pets", "--models", registry,
        "--map", "cat=feline",
    )  # fmt: skip
    assert code == 0, err
    spec = load_suite(suite)
    assert [c.image for c in spec.cases] == [(tmp_path / "val" / n).resolve() for n in ("a.png", "b.png", "b.png")]
    assert "not found" not in err
    code, out, _ = cli("validate", suite, "--models", registry)
    assert code == 0, out


def test_without_images_and_no_image_folder_is_an_error(tmp_path: Path, write_image, registry: Path, cli) -> None:
    source, _ = _coco(tmp_path, write_image)
    moved = tmp_path / "elsewhere"
    (tmp_path / "val").rename(moved)
    suite = tmp_path / "cats.xai.yaml"
    code, _, err = cli("import", "coco", source, "-o", suite, "--model", "pets", "--models", registry)
    assert code != 0 and not suite.exists()
    assert "annotated images (e.g. a.png)" in err and "give the image folder with --images DIR" in err
    # Given explicitly, the folder is used as it is.
    code, _, err = cli(
        "import", "coco", source, "--images", moved, "-o", suite, "--model", "pets", "--models", registry,
        "--map", "dog=canine", "--map", "cat=feline",
    )  # fmt: skip
    assert code == 0, err
