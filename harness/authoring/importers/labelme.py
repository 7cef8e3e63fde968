"""LabelMe JSON: one file per image with ``shapes``, ``imagePath`` (relative to the JSON),
``imageHeight`` and ``imageWidth``.

Shapes of one object share a ``group_id`` (LabelMe's grouping); a shape without one is
an object of its own. Each object becomes one case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from harness.authoring.drafts import CaseDraft, RegionDraft, instance_id
from harness.authoring.importers import ImportResult, clip_points, files_under


def _region(
    shape: dict[str, Any], width: int | None, height: int | None, where: str
) -> tuple[RegionDraft | None, str | None]:
    kind = shape.get("shape_type") or "polygon"
    points = [(float(p[0]), float(p[1])) for p in shape.get("points") or []]
    if kind == "circle" and len(points) == 2:
        (cx, cy), (px, py) = points
        radius = float(np.hypot(px - cx, py - cy))
        # LabelMe stores centre + a rim point; 36 vertices are within a pixel for usual sizes.
        ring = cv2.ellipse2Poly((int(round(cx)), int(round(cy))), (int(round(radius)),) * 2, 0, 0, 360, 10)
        points, kind = [(float(x), float(y)) for x, y in ring[:-1]], "polygon"
    if kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = points
        if width is not None and height is not None:
            (x0, y0), (x1, y1) = clip_points([(x0, y0), (x1, y1)], width, height, tolerance=float("inf"))[0]
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if box[2] <= box[0] or box[3] <= box[1]:
            return None, f"{where}: rectangle has no area; skipped"
        return RegionDraft("box", box), None
    if kind == "polygon":
        if len(points) < 3:
            return None, f"{where}: polygon with fewer than 3 points; skipped"
        note = None
        if width is not None and height is not None:
            points, far = clip_points(points, width, height)
            if far:
                note = f"{where}: polygon reached outside the {width}x{height} image; clipped to it"
        return RegionDraft("polygon", points), note
    return None, f"{where}: shape type {kind!r} is not an area (use polygon, rectangle or circle); skipped"


def read_labelme(path: Path) -> ImportResult:
    """Cases from one LabelMe JSON file."""
    result = ImportResult()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        result.warnings.append(f"{path}: not readable as JSON ({exc}); skipped")
        return result
    if not isinstance(data, dict) or "shapes" not in data:
        result.warnings.append(f"{path}: not a LabelMe file (no 'shapes'); skipped")
        return result
    image_ref = data.get("imagePath")
    if not image_ref:
        result.warnings.append(f"{path}: no imagePath; skipped")
        return result
    # LabelMe on Windows writes backslashes.
    image = (path.parent / str(image_ref).replace("\\", "/")).resolve()
    if not image.is_file():
        result.warnings.append(f"{path}: image {image_ref} not found (imagePath is relative to the JSON)")
    width, height = data.get("imageWidth"), data.get("imageHeight")
    width = int(width) if width else None
    height = int(height) if height else None
    objects: dict[tuple[str, Any], list[RegionDraft]] = {}
    order: list[tuple[str, Any]] = []
    for n, shape in enumerate(data["shapes"]):
        label = str(shape.get("label", ""))
        group = shape.get("group_id")
        key = (label, group if group is not None else ("shape", n))
        region, note = _region(shape, width, height, f"{path}: shapes[{n}] ({label})")
        if note:
            result.warnings.append(note)
        if region is None:
            continue
        if key not in objects:
            objects[key] = []
            order.append(key)
        objects[key].append(region)
    for index, key in enumerate(order):
        label = key[0]
        result.cases.append(
            CaseDraft(
                id=instance_id(Path(str(image_ref)).stem, index),
                image=image,
                label=label,
                source_label=label,
                regions=objects[key],
                comment=f"from {path.name}: object {index} ({label})",
            )
        )
    return result


def import_labelme(paths: Iterable[str | Path]) -> ImportResult:
    """Cases from LabelMe JSON files (folders are searched for ``*.json``)."""
    result = ImportResult()
    for path in files_under(paths, (".json",)):
        result.extend(read_labelme(path))
    return result
