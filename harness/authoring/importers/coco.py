"""COCO instances JSON: ``images``, ``annotations`` and ``categories``.

Each annotation (an object instance) becomes one case. Polygon segmentations stay
polygons; RLE segmentations (compressed string or uncompressed list of counts) become
mask PNGs; an annotation with no segmentation falls back to its ``bbox``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from harness.authoring.drafts import CaseDraft, RegionDraft, instance_id, mask_from_array
from harness.authoring.importers import ImportResult, clip_points
from harness.authoring.rle import rle_to_mask
from harness.errors import HarnessError


def _regions(ann: dict[str, Any], width: int, height: int, where: str) -> tuple[list[RegionDraft], float, list[str]]:
    """Regions of one annotation, its area in pixels and warnings."""
    notes: list[str] = []
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        regions = []
        for n, flat in enumerate(seg):
            if not isinstance(flat, list) or len(flat) < 6 or len(flat) % 2:
                notes.append(f"{where}: polygon {n} needs at least 3 x, y pairs; left out")
                continue
            points, far = clip_points(list(zip(flat[0::2], flat[1::2])), width, height)
            if far:
                notes.append(f"{where}: polygon {n} reached outside the {width}x{height} image; clipped")
            regions.append(RegionDraft("polygon", points))
        return regions, float(ann.get("area") or 0.0), notes
    if isinstance(seg, dict):
        try:
            mask = rle_to_mask(seg)
        except HarnessError as exc:
            return [], 0.0, notes + [f"{where}: {exc}; skipped"]
        if mask.shape != (height, width):
            return (
                [],
                0.0,
                notes + [f"{where}: RLE size {list(mask.shape)} differs from the image's {[height, width]}; skipped"],
            )
        return [mask_from_array(mask)], float(ann.get("area") or mask.sum()), notes
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0:
        x, y, w, h = (float(v) for v in bbox)
        return [RegionDraft("box", (x, y, x + w, y + h))], float(ann.get("area") or w * h), notes
    return [], 0.0, notes + [f"{where}: no segmentation and no bbox; skipped"]


def find_images_dir(path: Path, data: dict[str, Any]) -> Path:
    """The folder holding the images of a COCO file given without ``--images``: the
    candidate that holds the most of the annotated images (the JSON's own folder wins
    ties), or a :class:`HarnessError` when none holds any."""
    wanted = {img.get("id"): str(img.get("file_name", "")) for img in data["images"] if isinstance(img, dict)}
    names = sorted({wanted[a.get("image_id")] for a in data["annotations"] if a.get("image_id") in wanted})
    if not names:
        return path.parent
    split = path.stem.split("_", 1)[-1]  # instances_val2017 -> val2017
    here = path.parent
    candidates = list(
        dict.fromkeys([here, here.parent / split, here / split, here.parent / "images" / split, here.parent / "images"])
    )
    found = {folder: sum((folder / name).is_file() for name in names) for folder in candidates}
    best = max(candidates, key=lambda folder: found[folder])  # first of the best: the JSON's folder wins ties
    if found[best] == 0:
        tried = ", ".join(str(folder) for folder in candidates)
        raise HarnessError(
            f"{path}: none of its {len(names)} annotated images (e.g. {names[0]}) is in {tried}; "
            f"give the image folder with --images DIR"
        )
    return best


def import_coco(
    path: str | Path,
    images_dir: str | Path | None = None,
    categories: Collection[str] | None = None,
    min_area: float = 0.0,
) -> ImportResult:
    """Cases from a COCO instances file.

    Parameters
    ----------
    path
        The JSON file.
    images_dir
        Folder that ``file_name`` is relative to. Default: found next to the JSON, in
        the JSON's folder or COCO's own layout (``annotations/instances_val2017.json``
        with ``val2017/`` beside ``annotations/``); a :class:`HarnessError` when no
        such folder holds the images, rather than cases with broken paths.
    categories
        Only these category names (``None``: all).
    min_area
        Skip instances smaller than this many pixels (the annotation's ``area``).
    """
    path = Path(path)
    result = ImportResult()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read COCO file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise HarnessError(f"{path}: not a COCO instances file (needs images, annotations, categories)")
    images = {img["id"]: img for img in data["images"]}
    folder = Path(images_dir) if images_dir is not None else find_images_dir(path, data)
    names = {cat["id"]: str(cat["name"]) for cat in data["categories"]}
    unknown = set(categories or ()) - set(names.values())
    if unknown:
        result.warnings.append(
            f"{path}: no category called {', '.join(sorted(unknown))}; "
            f"categories: {', '.join(sorted(set(names.values())))}"
        )
    seen_in_image: dict[Any, int] = {}
    missing_images: set[str] = set()
    for ann in data["annotations"]:
        image = images.get(ann.get("image_id"))
        index = seen_in_image.get(ann.get("image_id"), 0)
        seen_in_image[ann.get("image_id")] = index + 1
        where = f"{path.name}: annotation {ann.get('id', '?')}"
        if image is None:
            result.warnings.append(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'; skipped")
            continue
        label = names.get(ann.get("category_id"))
        if label is None:
            result.warnings.append(f"{where}: category_id {ann.get('category_id')!r} is not in 'categories'; skipped")
            continue
        if categories is not None and label not in categories:
            continue
        regions, area, notes = _regions(ann, int(image["width"]), int(image["height"]), where)
        result.warnings += notes
        if not regions:
            continue
        if area < min_area:
            continue
        file_path = (folder / str(image["file_name"])).resolve()
        if not file_path.is_file() and str(image["file_name"]) not in missing_images:
            missing_images.add(str(image["file_name"]))
            result.warnings.append(f"{path.name}: image {image['file_name']} not found in {folder} (use --images)")
        crowd = " (crowd)" if ann.get("iscrowd") else ""
        result.cases.append(
            CaseDraft(
                id=instance_id(Path(str(image["file_name"])).stem, index),
                image=file_path,
                label=label,
                source_label=label,
                regions=regions,
                comment=f"from {path.name}: annotation {ann.get('id', '?')}, {label}{crowd}, area {area:.0f} px",
            )
        )
    return result
