"""The case's source image at its own resolution, with the annotated object outlined.

Items show their images as the model saw them (a 256 px photo becomes a 64 px input);
an expert checking an annotation needs the photo itself. The report reads the case
from its suite file (the rows name suite and case, not the image), outlines the case's
regions drawn at the photo's resolution, and encodes that picture once per case
(suite and case id), however many models, explainers and variants show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Case

__all__ = ["SourcePicture", "SourceViews"]

# Outline width per pixel of the longer side: visible on a 4000 px photo, thin on 256 px.
_LINE_PER_PIXEL = 1 / 300


@dataclass(frozen=True)
class SourcePicture:
    """An encoded source picture: ``data`` in ``suffix``'s format, ``size`` (width, height)."""

    data: bytes
    suffix: str
    size: tuple[int, int]
    outlined: bool


class SourceViews:
    """Source pictures of a report's cases, each suite parsed and each case encoded once."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.base_dir = base_dir
        self._suites: dict[Path, dict[str, Any]] = {}
        self._pictures: dict[tuple[str, str], SourcePicture | None] = {}

    def _cases(self, suite: str) -> dict[str, Any]:
        path = Path(suite)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        if path not in self._suites:
            cases: dict[str, Any] = {}
            if path.is_file():
                from harness.spec import load_suite

                try:
                    for case in load_suite(path).cases:
                        cases.setdefault(case.case_id, case)
                except Exception:  # noqa: BLE001 - a suite that no longer parses only loses its source view
                    cases = {}
            self._suites[path] = cases
        return self._suites[path]

    def picture(self, case: Case) -> SourcePicture | None:
        """The outlined source picture of ``case``; ``None`` when its suite, case or image
        cannot be read (a report of an older run, or of rows without suite files)."""
        key = (case.suite, case.case_id)
        if key not in self._pictures:
            spec = self._cases(case.suite).get(case.case_id) if case.suite and case.case_id else None
            self._pictures[key] = _encode(spec) if spec is not None and spec.image is not None else None
        return self._pictures[key]


def _encode(spec: Any) -> SourcePicture | None:
    import cv2

    from harness import render
    from harness.errors import HarnessError
    from harness.imageio import read_rgb
    from harness.regions import rasterize

    try:
        image = read_rgb(spec.image)
    except HarnessError:
        return None
    height, width = image.shape[:2]
    outlined = False
    if spec.regions:
        try:
            mask = rasterize(spec.regions, (height, width), spec.base_dir)
        except (HarnessError, ValueError):
            mask = None
        if mask is not None and mask.any():
            contours, _ = cv2.findContours(mask.astype("uint8"), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            thickness = max(1, round(max(height, width) * _LINE_PER_PIXEL))
            image = image.copy()
            cv2.drawContours(image, contours, -1, render.OBJECT_COLOUR, thickness=thickness)
            outlined = True
    # A photo stays a JPEG (a lossless copy of a 12-megapixel photo would weigh tens of MB).
    lossless = Path(spec.image).suffix.lower() in (".png", ".bmp", ".gif", ".tif", ".tiff")
    suffix, params = (".png", []) if lossless else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92])
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        return None
    return SourcePicture(data.tobytes(), suffix, (width, height), outlined)
