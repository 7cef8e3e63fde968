"""Pascal VOC: XML box annotations, and class / instance segmentation PNGs.

The published layout is ``VOC2012/{Annotations, JPEGImages, SegmentationClass,
SegmentationObject}``. Boxes use 1-based, inclusive pixel indices; the harness's boxes
are pixel edges, so ``xmin..xmax`` becomes ``[xmin - 1, ..., xmax]``. Segmentation PNGs
are palette images whose *indices* carry the meaning (class index, or instance number
in the order of the XML's objects); 255 marks the 'void' border and is never object.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from harness.authoring.drafts import CaseDraft, RegionDraft, instance_id, mask_from_array, sanitise_id
from harness.authoring.importers import ImportResult, files_under, find_image
from harness.errors import HarnessError

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOID = 255


def read_index_png(path: str | Path) -> np.ndarray:
    """Palette indices of a VOC segmentation PNG (not its RGB colours).

    Raises
    ------
    HarnessError
        The file cannot be read, or it is a colour image whose indices are lost.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode in ("P", "L", "I", "I;16"):
                return np.array(image).astype(np.int64)
            mode = image.mode
    except OSError as exc:
        raise HarnessError(f"cannot read {path}: {exc}") from None
    raise HarnessError(
        f"{path} is a {mode} image; VOC segmentation PNGs are palette ('P') images "
        "whose indices are the classes or instances"
    )


def _default_folder(anchor: Path, name: str) -> Path:
    """``VOC2012/<name>`` next to the folder of ``anchor``, or ``anchor``'s own folder."""
    sibling = anchor.parent.parent / name
    return sibling if sibling.is_dir() else anchor.parent


def _xml_objects(path: Path) -> tuple[str, list[ET.Element]]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise HarnessError(f"cannot read VOC XML {path}: {exc}") from None
    filename = (root.findtext("filename") or f"{path.stem}.jpg").strip()
    return filename, root.findall("object")


def _box(obj: ET.Element) -> tuple[float, float, float, float] | None:
    bndbox = obj.find("bndbox")
    if bndbox is None:
        return None
    try:
        xmin, ymin, xmax, ymax = (float(bndbox.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        return None
    if not (xmax >= xmin and ymax >= ymin):
        return None
    return xmin - 1, ymin - 1, xmax, ymax


def import_voc_boxes(paths: Iterable[str | Path], images_dir: str | Path | None = None) -> ImportResult:
    """One box case per ``<object>`` of VOC XML files (folders are searched for ``*.xml``)."""
    result = ImportResult()
    for path in files_under(paths, (".xml",)):
        try:
            filename, objects = _xml_objects(path)
        except HarnessError as exc:
            result.warnings.append(f"{exc}; skipped")
            continue
        folder = Path(images_dir) if images_dir is not None else _default_folder(path, "JPEGImages")
        image = (folder / filename).resolve()
        if not image.is_file():
            result.warnings.append(f"{path.name}: image {filename} not found in {folder} (use --images)")
        for index, obj in enumerate(objects):
            label = (obj.findtext("name") or "").strip()
            box = _box(obj)
            if box is None:
                result.warnings.append(f"{path.name}: object {index} ({label}) has no usable bndbox; skipped")
                continue
            flags = [k for k in ("difficult", "truncated", "occluded") if (obj.findtext(k) or "0").strip() == "1"]
            note = f", {', '.join(flags)}" if flags else ""
            result.cases.append(
                CaseDraft(
                    id=instance_id(Path(filename).stem, index),
                    image=image,
                    label=label,
                    source_label=label,
                    regions=[RegionDraft("box", box)],
                    comment=f"from {path.name}: object {index} ({label}{note})",
                )
            )
    return result


def _instance_labels(
    png: Path,
    instances: np.ndarray,
    values: Sequence[int],
    classes: Sequence[str],
    class_dir: Path | None,
    xml_dir: Path | None,
) -> dict[int, str | None]:
    """Class of each instance: majority class index in SegmentationClass, else the XML object order."""
    class_png = (class_dir or _default_folder(png, "SegmentationClass")) / png.name
    if class_png.is_file() and class_png.resolve() != png.resolve():
        class_map = read_index_png(class_png)
        out: dict[int, str | None] = {}
        for value in values:
            found = class_map[(instances == value) & (class_map != VOID)]
            if found.size == 0:
                out[value] = None
                continue
            index = int(np.bincount(found).argmax())
            out[value] = classes[index] if index < len(classes) else None
        return out
    xml = (xml_dir or _default_folder(png, "Annotations")) / f"{png.stem}.xml"
    if xml.is_file():
        _, objects = _xml_objects(xml)
        # VOC numbers instances 1, 2, ... in the order of the XML's <object> elements.
        return {
            v: ((objects[v - 1].findtext("name") or "").strip() or None) if v - 1 < len(objects) else None
            for v in values
        }
    return {v: None for v in values}


def import_voc_segmentation(
    paths: Iterable[str | Path],
    kind: Literal["class", "object"] = "object",
    images_dir: str | Path | None = None,
    classes: Sequence[str] = VOC_CLASSES,
    class_dir: str | Path | None = None,
    xml_dir: str | Path | None = None,
) -> ImportResult:
    """Cases from VOC segmentation PNGs, one per instance (``object``) or per class (``class``).

    Parameters
    ----------
    paths
        PNG files or folders of them (``SegmentationObject`` or ``SegmentationClass``).
    kind
        ``object``: instance PNGs, one case per instance; the class comes from the
        matching ``SegmentationClass`` PNG or else the XML. ``class``: class PNGs, one
        case per class present.
    classes
        Class names by palette index (VOC's 21 by default).
    """
    result = ImportResult()
    for png in files_under(paths, (".png",)):
        try:
            indices = read_index_png(png)
        except HarnessError as exc:
            result.warnings.append(f"{exc}; skipped")
            continue
        folder = Path(images_dir) if images_dir is not None else _default_folder(png, "JPEGImages")
        image = find_image(folder, png.stem)
        if image is None:
            image = folder / f"{png.stem}.jpg"
            result.warnings.append(f"{png.name}: no image called {png.stem}.* in {folder} (use --images)")
        values = [int(v) for v in np.unique(indices) if v not in (0, VOID)]
        if kind == "class":
            for value in values:
                label = classes[value] if value < len(classes) else None
                if label is None:
                    result.warnings.append(f"{png.name}: class index {value} has no name; skipped")
                    continue
                result.cases.append(
                    CaseDraft(
                        id=sanitise_id(f"{png.stem}_{label}"),
                        image=image.resolve(),
                        label=label,
                        source_label=label,
                        regions=[mask_from_array(indices == value)],
                        comment=f"from {png.name}: class {value} ({label})",
                    )
                )
            continue
        labels = _instance_labels(
            png, indices, values, classes, Path(class_dir) if class_dir else None, Path(xml_dir) if xml_dir else None
        )
        for value in values:
            label = labels[value]
            if label is None:
                result.warnings.append(
                    f"{png.name}: no class found for instance {value} (needs "
                    "SegmentationClass/<same name>.png or Annotations/<stem>.xml); skipped"
                )
                continue
            result.cases.append(
                CaseDraft(
                    id=instance_id(png.stem, value - 1),
                    image=image.resolve(),
                    label=label,
                    source_label=label,
                    regions=[mask_from_array(indices == value)],
                    comment=f"from {png.name}: instance {value} ({label})",
                )
            )
    return result
