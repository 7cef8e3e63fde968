"""What a scan reads: image paths with their class and, optionally, the object's region.

Inputs are folders, globs or image files (masks found beside them as ``{stem}_mask.png``
or in ``--masks DIR`` under the image's stem), or manifests: CSV or Parquet tables with a
``path`` column and optional ``label`` and ``region`` (or ``mask``) columns. Paths in a
manifest are relative to the manifest's folder. A region is a mask path, or JSON with
exactly one of ``mask``, ``polygon`` or ``box`` as in a suite's ``object:`` (e.g.
``{"box": [4, 6, 40, 44]}``); ``--annotations FILE`` is such a manifest whose regions
are attached to the scanned images by path (or, failing that, file name).

Only strings leave this module: an item carries its region as JSON with absolute paths,
which is all a worker needs (it reads pixels itself, from shared storage).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.authoring.expand import expand
from harness.errors import HarnessError
from harness.regions import Region

__all__ = ["ScanItem", "build_items", "parse_region", "read_manifest", "region_json"]

MANIFEST_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class ScanItem:
    """One image to scan; ``index`` is its position in the scan (the table's order)."""

    index: int
    path: str
    label: str
    region: str | None = None  # JSON of a Region with absolute paths, or None


def region_json(value: Any, base_dir: Path, where: str) -> str | None:
    """A manifest's region cell as canonical JSON (mask paths made absolute), or ``None``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{where}: region: not valid JSON ({exc.msg} at column {exc.colno})") from None
    else:
        data = {"mask": text}
    try:
        region = Region.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HarnessError(
            f"{where}: region: {first['msg']} (expected a mask path or JSON with one of mask, polygon, box)"
        ) from None
    if region.mask is not None:
        region = region.model_copy(update={"mask": str((base_dir / region.mask).resolve())})
    return json.dumps(region.model_dump(exclude_none=True), separators=(",", ":"))


def parse_region(text: str) -> Region:
    """The :class:`Region` of an item's region JSON (made by :func:`region_json`)."""
    return Region.model_validate(json.loads(text))


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # noqa: BLE001 - a broken file is the user's to fix, named here
            raise HarnessError(f"cannot read manifest {path}: {exc}") from None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HarnessError(f"cannot read manifest {path}: {exc}") from None


def read_manifest(path: str | Path) -> list[tuple[str, str | None, str | None, str]]:
    """Rows of a manifest as (absolute image path, label or None, region JSON or None, where).

    ``where`` is ``file:line`` (CSV, counting the header as line 1) or ``file:row N``.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"manifest not found: {path}")
    rows = _rows(path)
    if not rows:
        return []
    columns = set(rows[0])
    if "path" not in columns:
        raise HarnessError(f"{path}: a manifest needs a 'path' column (found: {', '.join(sorted(columns)) or 'none'})")
    if "region" in columns and "mask" in columns:
        raise HarnessError(f"{path}: give either a 'region' or a 'mask' column, not both")
    region_key = "region" if "region" in columns else "mask" if "mask" in columns else None
    base = path.parent
    out = []
    for n, row in enumerate(rows):
        where = f"{path}:{n + 2}" if path.suffix.lower() == ".csv" else f"{path}:row {n}"
        image = row.get("path")
        if image is None or not str(image).strip():
            raise HarnessError(f"{where}: path: empty")
        label = row.get("label")
        label = str(label).strip() if label is not None and str(label).strip() else None
        region = region_json(row.get(region_key), base, where) if region_key else None
        out.append((str((base / str(image).strip()).resolve()), label, region, where))
    return out


def _is_manifest(text: str) -> bool:
    return Path(text).suffix.lower() in MANIFEST_SUFFIXES and Path(text).is_file()


def build_items(
    inputs: Sequence[str],
    label: str | None,
    masks_dir: str | Path | None = None,
    annotations: str | Path | None = None,
) -> tuple[list[ScanItem], list[str]]:
    """The items of a scan, in input order (folders and globs sorted), and warnings.

    ``label`` is the class of images whose input gives none; with a labelled manifest
    it selects that class's rows. Duplicate paths are scanned once.

    Raises
    ------
    HarnessError
        An input matches nothing, a manifest is malformed, or an image has no label.
    """
    warnings: list[str] = []
    found: list[tuple[str, str | None, str | None]] = []
    for text in inputs:
        if _is_manifest(text):
            rows = read_manifest(text)
            if label is not None:
                other = [r for r in rows if r[1] is not None and r[1] != label]
                if other:
                    warnings.append(f"{text}: {len(other)} rows of other classes left out (--label {label})")
                rows = [r for r in rows if r[1] is None or r[1] == label]
            found += [(p, lab, reg) for p, lab, reg, _ in rows]
            continue
        pairs = expand(text)
        if not pairs:
            raise HarnessError(f"no images match {text!r} (a folder, a glob, an image or a .csv/.parquet manifest)")
        for pair in pairs:
            region = None if pair.mask is None else region_json(str(pair.mask), Path("/"), str(pair.image))
            found.append((str(pair.image), None, region))
    if masks_dir is not None:
        found = _attach_masks(found, Path(masks_dir), warnings)
    if annotations is not None:
        found = _attach_annotations(found, Path(annotations), warnings)
    items: list[ScanItem] = []
    seen: set[str] = set()
    for path, lab, region in found:
        if path in seen:
            continue
        seen.add(path)
        chosen = lab or label
        if chosen is None:
            raise HarnessError(f"{path}: no label: give --label CLASS or a 'label' column in the manifest")
        items.append(ScanItem(len(items), path, chosen, region))
    return items, warnings


def _attach_masks(
    found: Iterable[tuple[str, str | None, str | None]], folder: Path, warnings: list[str]
) -> list[tuple[str, str | None, str | None]]:
    if not folder.is_dir():
        raise HarnessError(f"--masks: not a folder: {folder}")
    out, missing = [], 0
    for path, lab, region in found:
        stem = Path(path).stem
        mask = next((folder / n for n in (f"{stem}.png", f"{stem}_mask.png") if (folder / n).is_file()), None)
        if mask is None:
            missing += 1
        else:
            region = region_json(str(mask.resolve()), folder, str(mask))
        out.append((path, lab, region))
    if missing:
        warnings.append(f"--masks {folder}: no mask for {missing} images (their object mass is left empty)")
    return out


def _attach_annotations(
    found: Iterable[tuple[str, str | None, str | None]], manifest: Path, warnings: list[str]
) -> list[tuple[str, str | None, str | None]]:
    rows = read_manifest(manifest)
    by_path = {p: reg for p, _, reg, _ in rows if reg is not None}
    by_name: dict[str, str] = {}
    for p, _, reg, _ in rows:
        if reg is not None:
            by_name.setdefault(Path(p).name, reg)
    out, missing = [], 0
    for path, lab, region in found:
        region = by_path.get(path) or by_name.get(Path(path).name) or region
        missing += region is None
        out.append((path, lab, region))
    if missing:
        warnings.append(f"--annotations {manifest}: no region for {missing} images (their object mass is left empty)")
    return out
