"""`sample`: the probe model's confidence follows brightness, so the choice is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.spec import load_suite


def _images(tmp_path: Path, write_image, write_mask) -> tuple[Path, list[str]]:
    """Twelve flat grey images in shuffled brightness order; returns names, brightest first."""
    rng = np.random.default_rng(11)
    levels = rng.permutation(np.linspace(40, 220, 12).round().astype(int))
    folder = tmp_path / "photos"
    for n, level in enumerate(levels):
        image = np.full((48, 48, 3), level, np.uint8)
        write_image(folder / f"img_{n:02d}.png", array=image)
        if n % 2 == 0:
            mask = np.zeros((48, 48), bool)
            mask[10:30, 12:40] = True
            write_mask(folder / f"img_{n:02d}_mask.png", mask)
    order = [f"img_{n:02d}" for n in np.argsort(-levels, kind="stable")]
    return folder, order


def test_most_and_least_confident_are_chosen(tmp_path: Path, write_image, write_mask, registry: Path, cli) -> None:
    folder, brightest_first = _images(tmp_path, write_image, write_mask)
    suite = tmp_path / "suites" / "bright.xai.yaml"
    code, out, err = cli(
        "sample",
        "--model",
        "probe",
        "--class",
        "bright",
        "--images",
        folder,
        "--most",
        3,
        "--least",
        4,
        "--batch-size",
        5,
        "--label",
        "bright",
        "--output",
        suite,
        "--models",
        registry,
    )
    assert code == 0, err
    spec = load_suite(suite)
    ids = [c.case_id for c in spec.cases]
    assert ids[:3] == brightest_first[:3]  # most confident first
    assert ids[3:] == brightest_first[::-1][:4]  # least confident first
    text = suite.read_text()
    assert "most confident (1 of 3): p(bright) = " in text
    # Images with a mask file got it; the others carry the TODO placeholder ...
    todo = [c for c in spec.cases if int(c.case_id[-2:]) % 2]
    assert todo and text.count("# TODO: annotate the object") == len(todo)
    for case in spec.cases:
        if case not in todo:
            assert not case.errors and case.regions[0].mask == f"../photos/{case.case_id}_mask.png"
    # ... which validate reports, so such a case cannot run unnoticed.
    code, out, _ = cli("validate", suite, "--models", registry)
    assert code == 1
    assert out.count("not annotated yet") == len(todo)


def test_sample_takes_regions_from_a_coco_file(tmp_path: Path, write_image, write_mask, registry: Path, cli) -> None:
    folder, brightest_first = _images(tmp_path, write_image, write_mask)
    images = [{"id": n, "file_name": f"img_{n:02d}.png", "height": 48, "width": 48} for n in range(12)]
    annotations = [
        {
            "id": 100 + n,
            "image_id": n,
            "category_id": 1,
            "iscrowd": 0,
            "area": 100.0,
            "bbox": [5, 5, 10, 10],
            "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]],
        }
        for n in range(12)
    ]
    coco = tmp_path / "photos.json"
    coco.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "lamp"}]})
    )
    suite = tmp_path / "lamps.xai.yaml"
    code, _, err = cli(
        "sample",
        "--model",
        "probe",
        "--class",
        "bright",
        "--images",
        folder / "img_??.png",
        "--most",
        2,
        "--least",
        0,
        "--annotations",
        coco,
        "--map",
        "lamp=bright",
        "--mask-pattern",
        "{stem}_nomask.png",
        "-o",
        suite,
        "--models",
        registry,
    )
    assert code == 0, err
    spec = load_suite(suite)
    assert [c.case_id for c in spec.cases] == brightest_first[:2]
    assert all(c.regions[0].polygon and not c.errors for c in spec.cases)


def test_sample_never_invents_labels(tmp_path: Path, write_image, write_mask, registry: Path, cli) -> None:
    # A mixed folder ("photos"), no annotations, no --label: nothing says what the images show.
    folder, _ = _images(tmp_path, write_image, write_mask)
    suite = tmp_path / "bright.xai.yaml"
    args = ("--model", "probe", "--class", "bright", "--most", 2, "--least", 0, "-o", suite, "--models", registry)
    code, _, err = cli("sample", "--images", folder, *args)
    assert code != 0 and not suite.exists()
    assert "none of the 12 images has a known label: give --label CLASS" in err
    # A folder named after the class is a label.
    named = tmp_path / "bright"
    folder.rename(named)
    code, _, err = cli("sample", "--images", named, *args)
    assert code == 0, err
    assert suite.read_text().count("    label: bright\n") == 2  # (a case still to annotate loads without its label)


def test_sample_labels_only_annotated_images_of_a_mixed_folder(
    tmp_path: Path, write_image, write_mask, registry: Path, cli
) -> None:
    folder, brightest_first = _images(tmp_path, write_image, write_mask)
    annotated = brightest_first[-3:]  # the three darkest images are the "bright" objects
    numbers = [int(name[-2:]) for name in annotated]
    images = [{"id": n, "file_name": f"img_{n:02d}.png", "height": 48, "width": 48} for n in range(12)]
    annotations = [
        {"id": 100 + n, "image_id": n, "category_id": 1, "area": 100.0, "bbox": [5, 5, 10, 10],
         "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]}
        for n in numbers
    ]  # fmt: skip
    coco = tmp_path / "photos.json"
    coco.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "bright"}]})
    )
    suite = tmp_path / "bright.xai.yaml"
    code, _, err = cli(
        "sample", "--model", "probe", "--class", "bright", "--images", folder, "--most", 5, "--least", 0,
        "--annotations", coco, "-o", suite, "--models", registry,
    )  # fmt: skip
    assert code == 0, err
    assert "9 of 12 images left out: no --label, no bright annotation" in err
    # Only the annotated images, most confident first, though brighter ones were in the folder.
    spec = load_suite(suite)
    assert [c.case_id for c in spec.cases] == annotated
    assert {c.label for c in spec.cases} == {"bright"} and not any(c.errors for c in spec.cases)
