"""Object regions (mask PNG, polygon, bounding box) rasterised to boolean masks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from harness.errors import HarnessError
from harness.imageio import read_label_image
from harness.yamlio import refuse_booleans

# Coordinates are pixels; beyond this they cannot be meant (and would overflow the
# int32 points OpenCV rasterises), so the schema refuses them.
MAX_COORDINATE = 1_000_000.0

# A mask is decoded only once its header says it has the image's size; this caps the
# size of any mask we decode at all (PIL's own bomb check starts far higher).
MAX_MASK_PIXELS = 64_000_000


class Region(BaseModel):
    """One annotated region: exactly one of ``mask``, ``polygon`` or ``box``.

    Coordinates are image pixels (x to the right, y down) of the case's image.
    """

    model_config = ConfigDict(extra="forbid")

    mask: str | None = Field(
        None, min_length=1, description="PNG mask, same size as the image; non-zero pixels are the object"
    )
    mask_value: int | None = Field(
        None, ge=0, le=65535, description="with `mask`: only pixels equal to this value (instance/class PNGs)"
    )
    polygon: list[tuple[float, float]] | None = Field(None, min_length=3, description="[[x, y], ...] in image pixels")
    box: tuple[float, float, float, float] | None = Field(None, description="[x0, y0, x1, y1] in image pixels")

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_booleans(cls, info.field_name, value)

    @field_validator("polygon", "box")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        # A NaN vertex would be rounded to INT_MIN and draw a wedge to the image edge.
        if value is None:
            return value
        flat: list[float] = []
        for item in value:
            flat.extend(item if isinstance(item, tuple) else (item,))
        for v in flat:
            if not math.isfinite(v):
                raise ValueError(f"coordinates must be finite numbers (got {v!r})")
            if abs(v) > MAX_COORDINATE:
                raise ValueError(f"coordinate {v!r} is out of range (at most {MAX_COORDINATE:.0f} pixels)")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Region:
        given = [k for k in ("mask", "polygon", "box") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'mask', 'polygon' or 'box'" + (f" (got {', '.join(given)})" if given else "")
            )
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
            labels = read_mask(base_dir / region.mask, (height, width))
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


def _size_mismatch(path: Path, size: tuple[int, int], shape: tuple[int, int]) -> HarnessError:
    return HarnessError(
        f"mask {path} is {size[0]}x{size[1]} (w x h) but the image is {shape[1]}x{shape[0]}; "
        f"a mask must have the image's size"
    )


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask PNG that must be ``shape`` (height, width) as a 2-D integer array.

    The size is checked from the file's header before decoding, so a mask of the wrong
    size (a decompression bomb included) is refused without being decoded; every
    failure is a :class:`HarnessError` naming the file.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                size = probe.size
    except FileNotFoundError:
        raise HarnessError(f"mask file not found: {path}") from None
    except (OSError, ValueError, Image.DecompressionBombError, RuntimeError) as exc:
        # RuntimeError: a symlink loop; OSError: unreadable or not an image.
        raise HarnessError(f"cannot read mask {path}: {exc}") from None
    if (size[1], size[0]) != tuple(shape):
        raise _size_mismatch(path, size, shape)
    if size[0] * size[1] > MAX_MASK_PIXELS:
        raise HarnessError(f"mask {path} has {size[0] * size[1]} pixels, more than the limit of {MAX_MASK_PIXELS}")
    try:
        labels = read_label_image(path)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file must stay this case's error
        raise HarnessError(f"cannot decode mask {path}: {exc}") from None
    if labels.ndim != 2 or labels.shape != tuple(shape):
        raise _size_mismatch(path, (labels.shape[1], labels.shape[0]), shape)
    return labels


def check_usable(mask: np.ndarray, what: str = "object region") -> None:
    """Inside-vs-outside needs both sides: reject an empty or a full mask."""
    if not mask.any():
        raise HarnessError(f"the {what} is empty (no pixels inside the image); check the annotation")
    if mask.all():
        raise HarnessError(f"the {what} covers the whole image, so inside vs outside is meaningless")
