"""Object regions (mask PNG, polygon, bounding box) rasterised to boolean masks."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import HarnessError
from harness.imageio import read_label_image


class Region(BaseModel):
    """One annotated region: exactly one of ``mask``, ``polygon`` or ``box``.

    Coordinates are image pixels (x to the right, y down) of the case's image.
    """

    model_config = ConfigDict(extra="forbid")

    mask: str | None = Field(None, description="PNG mask, same size as the image; non-zero pixels are the object")
    mask_value: int | None = Field(None, ge=0, description="with `mask`: only pixels equal to this value (instance/class PNGs)")
    polygon: list[tuple[float, float]] | None = Field(None, min_length=3, description="[[x, y], ...] in image pixels")
    box: tuple[float, float, float, float] | None = Field(None, description="[x0, y0, x1, y1] in image pixels")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Region":
        given = [k for k in ("mask", "polygon", "box") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'mask', 'polygon' or 'box'"
                + (f" (got {', '.join(given)})" if given else ""))
        if self.mask_value is not None and self.mask is None:
            raise ValueError("'mask_value' needs 'mask'")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (x1 > x0 and y1 > y0):
                raise ValueError(f"box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0 (got {list(self.box)})")
        return self


def rasterize(regions: Sequence[Region], shape: tuple[int, int], base_dir: Path) -> np.ndarray:
    """Union of the regions as a boolean (H, W) mask.

    Parameters
    ----------
    regions
        Validated regions; mask paths are relative to ``base_dir``.
    shape
        (height, width) of the image the regions annotate.

    Raises
    ------
    HarnessError
        A mask file is missing or its size differs from the image's.
    """
    height, width = shape
    out = np.zeros((height, width), dtype=bool)
    for region in regions:
        if region.mask is not None:
            path = base_dir / region.mask
            labels = read_label_image(path)
            if labels.shape[:2] != (height, width):
                raise HarnessError(
                    f"mask {path} is {labels.shape[1]}x{labels.shape[0]} (w x h) but the image is "
                    f"{width}x{height}; a mask must have the image's size")
            out |= (labels == region.mask_value) if region.mask_value is not None else (labels > 0)
        elif region.polygon is not None:
            canvas = np.zeros((height, width), dtype=np.uint8)
            points = np.round(np.asarray(region.polygon, dtype=np.float64)).astype(np.int32)
            cv2.fillPoly(canvas, [points.reshape(-1, 1, 2)], 255)
            out |= canvas > 0
        else:
            x0, y0, x1, y1 = region.box  # type: ignore[misc]
            # Box corners are pixel edges: [0, 0, 4, 4] covers 4x4 pixels.
            c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            c1, r1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
            out[r0:r1, c0:c1] = True
    return out


def check_usable(mask: np.ndarray, what: str = "object region") -> None:
    """Inside-vs-outside needs both sides: reject an empty or a full mask."""
    if not mask.any():
        raise HarnessError(f"the {what} is empty (no pixels inside the image); check the annotation")
    if mask.all():
        raise HarnessError(f"the {what} covers the whole image, so inside vs outside is meaningless")
