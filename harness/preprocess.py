"""How an image becomes a model's input: presets, the resize policy, normalisation.

The geometry (stretch, centre crop, letterbox) is applied to the image and, with
nearest-neighbour sampling, to every mask of the case, so regions stay aligned with the
pixels the model sees; the image after the geometry is what the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import torch

ResizePolicy = Literal["stretch", "center_crop", "letterbox"]

# Crop fraction of the torchvision / timm convention: 224 of 256, 299 of 342.
_CROP_FRACTION = 0.875

PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {
        "size": (224, 224),
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "value_range": (0.0, 1.0),
        "resize": "center_crop",
    },
    "inception": {
        "size": (299, 299),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "value_range": (0.0, 1.0),
        "resize": "center_crop",
    },
    "raw": {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "value_range": (0.0, 255.0), "resize": "stretch"},
}
PRESET_HELP = {
    "imagenet": "torchvision's ImageNet convention: shorter side to 256, centre crop 224x224, "
    "0..1 normalised by mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)",
    "inception": "Inception convention: shorter side to 342, centre crop 299x299, values -1..1",
    "raw": "pixels as they are (0..255, no normalisation); give size",
}


def _triple(value: Any) -> Any:
    return (value,) * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class Preprocessing(BaseModel):
    """How uint8 RGB pixels become the model's input tensor.

    In the registry it is a preset name (``imagenet``), or a mapping of the keys below,
    optionally with ``preset:`` whose values the explicit keys override.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["imagenet", "inception", "raw"] | None = Field(
        None, description="named convention whose values the other keys override"
    )
    size: tuple[int, int] = Field(..., description="input height, width (one number: a square)")
    mean: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="per channel, after value_range scaling")
    std: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="per channel, after value_range scaling")
    value_range: tuple[float, float] = Field(
        (0.0, 1.0), description="0..255 is scaled linearly to this range before normalising"
    )
    resize: ResizePolicy = Field("stretch", description="how the image is fitted to size")
    resize_to: int | None = Field(
        None, ge=1, description="center_crop: the shorter side is scaled to this before cropping"
    )

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"preset": data}
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("mean", "std"):
            if key in data:
                data[key] = _triple(data[key])
        if isinstance(data.get("size"), int) and not isinstance(data.get("size"), bool):
            data["size"] = (data["size"], data["size"])
        preset = data.get("preset")
        if preset is None:
            return data
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
        merged = {**PRESETS[preset], **data}
        if preset == "raw" and "size" not in data:
            raise ValueError("preset raw needs size: [height, width]")
        if merged["resize"] == "center_crop" and preset != "raw" and "resize_to" not in data:
            merged["resize_to"] = round(max(merged["size"]) / _CROP_FRACTION)
        return merged

    @model_validator(mode="after")
    def _check(self) -> Preprocessing:
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        if min(self.size) < 1:
            raise ValueError("size must be positive")
        if self.value_range[1] <= self.value_range[0]:
            raise ValueError("value_range must be [low, high] with low < high")
        if self.resize_to is not None and self.resize != "center_crop":
            raise ValueError("resize_to goes with resize: center_crop")
        return self

    # ------------------------------------------------------------------ tensors

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lowest and highest normalised input value per channel, shape (1, 3, 1, 1).

        The z^B (box) rule of LRP needs these.
        """
        import torch

        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        lo, hi = self.value_range
        return (lo - mean) / std, (hi - mean) / std

    def to_tensor(self, images: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
        """Stack uint8 RGB images (already fitted to ``size``) into a normalised NCHW float batch."""
        import torch

        batch = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float()
        lo, hi = self.value_range
        batch = batch * ((hi - lo) / 255.0) + lo
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return (batch - mean) / std

    def neutral_pixel(self) -> tuple[int, int, int]:
        """The uint8 colour that normalises to (about) zero: letterbox padding adds no input."""
        lo, hi = self.value_range
        values = [min(255, max(0, round((m - lo) * 255.0 / (hi - lo)))) for m in self.mean]
        return values[0], values[1], values[2]

    def describe(self) -> str:
        """One line for people: preset, effective values and the resize policy."""

        def fmt(values: tuple[float, ...]) -> str:
            return "[" + ", ".join(f"{v:g}" for v in values) + "]"

        resize = self.resize + (f" (shorter side to {self.resize_to} first)" if self.resize_to else "")
        return (
            f"{self.preset or 'custom'}: {self.size[0]}x{self.size[1]} (h x w), resize {resize}, "
            f"value_range {fmt(self.value_range)}, mean {fmt(self.mean)}, std {fmt(self.std)}"
        )


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Placement:
    """Where the scaled image lies on the input canvas.

    ``scaled`` is the (height, width) the image is resized to; ``offset`` the canvas
    position of its top-left pixel (negative: cropped away, positive: padding).
    """

    scaled: tuple[int, int]
    offset: tuple[int, int]
    canvas: tuple[int, int]


def placement(shape: tuple[int, int], pre: Preprocessing | tuple[int, int]) -> Placement:
    """The geometry that fits an image of ``shape`` (height, width) to the model's input."""
    if not isinstance(pre, Preprocessing):
        return Placement((int(pre[0]), int(pre[1])), (0, 0), (int(pre[0]), int(pre[1])))
    h, w = shape
    big_h, big_w = pre.size
    if pre.resize == "stretch":
        return Placement((big_h, big_w), (0, 0), (big_h, big_w))
    if pre.resize == "letterbox":
        scale = min(big_h / h, big_w / w)
        nh, nw = min(big_h, max(1, round(h * scale))), min(big_w, max(1, round(w * scale)))
        return Placement((nh, nw), ((big_h - nh) // 2, (big_w - nw) // 2), (big_h, big_w))
    if pre.resize_to is not None and min(h, w) * max(big_h / h, big_w / w) <= pre.resize_to:
        # torchvision's Resize(int): the shorter side becomes resize_to, the longer is truncated.
        if h <= w:
            nh, nw = pre.resize_to, int(pre.resize_to * w / h)
        else:
            nh, nw = int(pre.resize_to * h / w), pre.resize_to
    else:
        # Smallest scale that covers the crop (also when resize_to would be too small for it).
        scale = max(big_h / h, big_w / w)
        nh, nw = max(big_h, round(h * scale)), max(big_w, round(w * scale))
    nh, nw = max(nh, big_h), max(nw, big_w)
    # torchvision's CenterCrop rounds the margin the same way.
    top, left = int(round((nh - big_h) / 2.0)), int(round((nw - big_w) / 2.0))
    return Placement((nh, nw), (-top, -left), (big_h, big_w))


def _put(scaled: np.ndarray, where: Placement, fill: Any) -> np.ndarray:
    if where.offset == (0, 0) and scaled.shape[:2] == where.canvas:
        return scaled
    canvas = np.empty((*where.canvas, *scaled.shape[2:]), dtype=scaled.dtype)
    canvas[...] = fill
    oy, ox = where.offset
    ch, cw = where.canvas
    sh, sw = scaled.shape[:2]
    y0, x0 = max(0, oy), max(0, ox)
    y1, x1 = min(ch, oy + sh), min(cw, ox + sw)
    canvas[y0:y1, x0:x1] = scaled[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return canvas


def resize_image(image: np.ndarray, pre: Preprocessing | tuple[int, int]) -> np.ndarray:
    """Fit an RGB image to the model's input (a bare (height, width) means ``stretch``).

    Area averaging when shrinking, bilinear when growing.
    """
    where = placement(image.shape[:2], pre)
    nh, nw = where.scaled
    scaled = image
    if image.shape[:2] != (nh, nw):
        shrinking = image.shape[0] >= nh and image.shape[1] >= nw
        scaled = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    fill = pre.neutral_pixel() if isinstance(pre, Preprocessing) else 0
    return _put(scaled, where, fill)


def resize_mask(mask: np.ndarray, pre: Preprocessing | tuple[int, int]) -> np.ndarray:
    """The same geometry for a boolean mask, nearest-neighbour, as the oracle prescribes."""
    where = placement(mask.shape[:2], pre)
    nh, nw = where.scaled
    scaled = mask.astype(bool)
    if mask.shape[:2] != (nh, nw):
        scaled = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
    return _put(scaled, where, False)
