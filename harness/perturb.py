"""Test variants: pure, deterministic OpenCV/numpy functions plus their settings.

Every variant returns the modified image and the regions the metrics need. The
functions never touch files or global random state: randomness comes from a
``numpy.random.Generator`` seeded from the case's settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, cast

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from harness.errors import HarnessError
from harness.yamlio import refuse_booleans

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class VariantImage:
    """A generated variant and the regions used for its metrics (all at one resolution)."""

    image: np.ndarray  # uint8 (H, W, 3) RGB
    object_mask: np.ndarray  # bool (H, W): the annotated object
    removed_mask: np.ndarray | None = None  # bool: pixels that were filled (instance_removed)
    sticker_mask: np.ndarray | None = None  # bool: pixels covered by the sticker


# --------------------------------------------------------------------------- settings


class VariantSettings(BaseModel):
    """Base of the per-variant settings accepted in YAML (unknown keys are errors)."""

    # No NaN/inf in any float setting: a NaN passes no range check but poisons the image.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_booleans(cls, info.field_name, value)


# Seeds feed numpy's SeedSequence, which takes non-negative integers only; the upper
# bound keeps them within what every numpy API (and a results table) accepts.
Seed = Annotated[int, Field(ge=0, le=2**63 - 1, description="seed (a non-negative integer)")]
Channel = Annotated[int, Field(ge=0, le=255)]
# A sticker centre may lie off the image (the part inside is pasted); beyond this it cannot be meant.
Coordinate = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]


class OriginalSettings(VariantSettings):
    """The unchanged image; no settings."""


InstanceFill = Literal["inpaint_telea", "inpaint_ns", "blur", "mean", "grey", "noise"]
BackgroundFill = Literal["grey", "black", "mean", "blur", "noise", "image"]
Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right"]
CORNERS: tuple[str, ...] = ("top_left", "top_right", "bottom_left", "bottom_right")
StickerPosition = Union[  # noqa: UP007 - a runtime alias that pydantic reads
    Literal["on_object", "object_center", "off_object", "top_left", "top_right", "bottom_left", "bottom_right"],
    tuple[Coordinate, Coordinate],
]


class InstanceRemovedSettings(VariantSettings):
    """Paint the object out."""

    fill: InstanceFill = Field("inpaint_telea", description="how the object pixels are filled")
    dilate: int = Field(
        2, ge=0, le=64, description="grow the mask by this many pixels first, so no object edge survives"
    )
    inpaint_radius: int = Field(3, ge=1, le=32, description="neighbourhood radius for the inpaint fills")
    grey_value: int = Field(128, ge=0, le=255)
    seed: Seed = Field(0, description="seed of the noise fill (a non-negative integer)")


class BackgroundRemovedSettings(VariantSettings):
    """Keep only the object."""

    fill: BackgroundFill = Field("grey", description="what replaces everything outside the object")
    image: str | None = Field(
        None, min_length=1, description="with fill: image, the replacement background (path relative to the YAML file)"
    )
    grey_value: int = Field(128, ge=0, le=255)
    blur_sigma: float = Field(8.0, gt=0, le=100, description="with fill: blur, Gaussian sigma in pixels")
    seed: Seed = Field(0, description="seed of the noise fill (a non-negative integer)")

    @model_validator(mode="after")
    def _image_given(self) -> BackgroundRemovedSettings:
        if self.fill == "image" and not self.image:
            raise ValueError("fill 'image' needs 'image': the path of the replacement background")
        return self


class StickerAddedSettings(VariantSettings):
    """Paste a patch (the seed experiment's black sticker) or an image (a watermark)."""

    shape: Literal["square", "circle"] = "square"
    color: tuple[Channel, Channel, Channel] = Field((0, 0, 0), description="RGB, each 0..255")
    image: str | None = Field(None, min_length=1, description="a PNG (alpha respected) pasted instead of a plain shape")
    size: Annotated[float, Field(gt=0, le=1)] | Literal["native"] = Field(
        0.25,
        description="the sticker's larger side as a fraction of the object's (or image's) larger side; "
        "'native': an image sticker keeps its own pixel size",
    )
    relative_to: Literal["object", "image"] = "object"
    position: StickerPosition = Field(
        "on_object",
        description="on_object (seeded spot inside the object), object_center, off_object, a corner, "
        "or [x, y] of the sticker's centre",
    )
    margin: int = Field(0, ge=0, le=10_000, description="with a corner position: pixels between sticker and edges")
    opacity: float = Field(1.0, gt=0, le=1, description="0-1: how much of the sticker covers the image (1: opaque)")
    seed: Seed = Field(0, description="seed of the on_object / off_object placement (a non-negative integer)")

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        # One clear message instead of one per branch of the union.
        if isinstance(value, str):
            if value != "native":
                raise ValueError(f"size must be a fraction 0 < size <= 1 or 'native' (got {value!r})")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"Input should be a finite number (got {value!r})")
            if value <= 0:
                raise ValueError(f"Input should be greater than 0 (got {value!r})")
            if value > 1:
                raise ValueError(f"Input should be less than or equal to 1 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StickerAddedSettings:
        if self.size == "native" and not self.image:
            raise ValueError("size 'native' needs 'image': a plain shape has no size of its own")
        if self.margin and self.position not in CORNERS:
            raise ValueError(f"margin applies to the corner positions only ({', '.join(CORNERS)})")
        return self


# --------------------------------------------------------------------------- helpers


def _as_uint8_mask(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.uint8) * 255


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by ``pixels`` with an elliptical structuring element."""
    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(_as_uint8_mask(mask), kernel) > 0


def _mean_colour(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    if not where.any():
        return image.reshape(-1, 3).mean(axis=0)
    return image[where].mean(axis=0)


def _masked_blur(image: np.ndarray, keep: np.ndarray, sigma: float) -> np.ndarray:
    """Blur that only averages ``keep`` pixels (normalised convolution), so a hole is
    filled with its surroundings instead of a smear of what was in it."""
    weights = keep.astype(np.float32)
    num = cv2.GaussianBlur(image.astype(np.float32) * weights[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weights, (0, 0), sigma)[..., None]
    fallback = _mean_colour(image, keep).astype(np.float32)
    out = np.where(den > 1e-6, num / np.maximum(den, 1e-6), fallback)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# --------------------------------------------------------------------------- variants


def original(image: np.ndarray, object_mask: np.ndarray) -> VariantImage:
    """The unchanged image."""
    return VariantImage(image=image.copy(), object_mask=object_mask.copy())


def remove_instance(
    image: np.ndarray,
    object_mask: np.ndarray,
    *,
    fill: InstanceFill = "inpaint_telea",
    dilate: int = 2,
    inpaint_radius: int = 3,
    grey_value: int = 128,
    seed: int = 0,
) -> VariantImage:
    """Fill the (dilated) object so that the class evidence on the object is gone.

    Returns the image with ``removed_mask`` = the filled pixels.
    """
    removed = dilate_mask(object_mask, dilate)
    if not removed.any():
        # No object (an `expect: absent` case): nothing to paint out, and no removed region.
        return VariantImage(image=image.copy(), object_mask=object_mask.copy())
    if removed.all():
        raise HarnessError("the dilated object covers the whole image: nothing left to fill it from")
    out = image.copy()
    if fill in ("inpaint_telea", "inpaint_ns"):
        flag = cv2.INPAINT_TELEA if fill == "inpaint_telea" else cv2.INPAINT_NS
        out = cv2.inpaint(image, _as_uint8_mask(removed), inpaint_radius, flag)
    elif fill == "blur":
        sigma = max(2.0, 0.5 * float(np.sqrt(removed.sum())))
        out[removed] = _masked_blur(image, ~removed, sigma)[removed]
    elif fill == "mean":
        out[removed] = np.round(_mean_colour(image, ~removed)).astype(np.uint8)
    elif fill == "grey":
        out[removed] = grey_value
    elif fill == "noise":
        out[removed] = _noise(image.shape, np.random.default_rng(seed))[removed]
    else:  # pragma: no cover - the settings model restricts fill
        raise HarnessError(f"unknown fill {fill!r}")
    return VariantImage(image=out, object_mask=object_mask.copy(), removed_mask=removed)


def remove_background(
    image: np.ndarray,
    object_mask: np.ndarray,
    *,
    fill: BackgroundFill = "grey",
    background: np.ndarray | None = None,
    grey_value: int = 128,
    blur_sigma: float = 8.0,
    seed: int = 0,
) -> VariantImage:
    """Replace everything outside the object; the object pixels stay identical."""
    outside = ~object_mask
    if fill == "grey":
        filler = np.full_like(image, grey_value)
    elif fill == "black":
        filler = np.zeros_like(image)
    elif fill == "mean":
        filler = np.empty_like(image)
        filler[:] = np.round(_mean_colour(image, outside)).astype(np.uint8)
    elif fill == "blur":
        filler = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    elif fill == "noise":
        filler = _noise(image.shape, np.random.default_rng(seed))
    elif fill == "image":
        if background is None:
            raise HarnessError("fill 'image' needs a background image ('image' setting)")
        filler = cv2.resize(background, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_AREA)
    else:  # pragma: no cover
        raise HarnessError(f"unknown fill {fill!r}")
    out = np.where(outside[..., None], filler, image).astype(np.uint8)
    return VariantImage(image=out, object_mask=object_mask.copy())


def _extent(object_mask: np.ndarray, relative_to: str) -> int:
    """The length ``size`` is a fraction of: the larger side of the object's box or of the image."""
    if relative_to == "image":
        return max(object_mask.shape)
    rows, cols = np.nonzero(object_mask)
    if len(rows) == 0:
        raise HarnessError("a sticker sized relative to the object needs an object; use relative_to: image")
    return int(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))


def sticker_shape(
    object_mask: np.ndarray, size: float | str, relative_to: str, native: tuple[int, int] | None
) -> tuple[int, int]:
    """(height, width) of the pasted sticker.

    ``native`` is the sticker image's own (height, width), or ``None`` for a plain
    shape (a square box). The sticker's larger side becomes ``size`` times the extent,
    and its aspect ratio is kept, so a 16x9 watermark never turns into a square.
    """
    if size == "native":
        if native is None:
            raise HarnessError("size 'native' needs an image sticker")
        return native
    target = max(1, int(round(float(size) * _extent(object_mask, relative_to))))
    if native is None:
        return target, target
    height, width = native
    scale = target / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _sticker_origin(
    object_mask: np.ndarray,
    box: tuple[int, int],
    position: StickerPosition,
    margin: int,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Top-left corner (x, y) of an h x w sticker, placed as the position setting asks."""
    height, width = object_mask.shape
    h, w = box
    if isinstance(position, tuple):
        return int(position[0]) - w // 2, int(position[1]) - h // 2
    corners = {
        "top_left": (margin, margin),
        "top_right": (width - w - margin, margin),
        "bottom_left": (margin, height - h - margin),
        "bottom_right": (width - w - margin, height - h - margin),
    }
    if position in corners:
        return corners[position]
    # Candidate centres (the kernel's anchor is (w // 2, h // 2)) for which the sticker lies inside the image.
    rect = cv2.getStructuringElement(cv2.MORPH_RECT, (w, h))
    inside_image = np.zeros_like(object_mask)
    inside_image[h // 2 : height - (h - h // 2) + 1, w // 2 : width - (w - w // 2) + 1] = True
    if not object_mask.any():
        raise HarnessError(f"position {position!r} needs an object; use a corner or [x, y]")
    if position in ("on_object", "object_center"):
        # Distance to the object's border: the sticker should sit on the object, not its edge.
        dist = cv2.distanceTransform(_as_uint8_mask(object_mask), cv2.DIST_L2, 5)
        if position == "on_object":
            fits = (cv2.erode(_as_uint8_mask(object_mask), rect) > 0) & inside_image
            if fits.any():
                ys, xs = np.nonzero(fits)
                pick = int(rng.integers(len(ys)))
                return int(xs[pick]) - w // 2, int(ys[pick]) - h // 2
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        return int(x) - w // 2, int(y) - h // 2
    # off_object: the whole sticker must miss the object (touching is allowed).
    free = (cv2.dilate(_as_uint8_mask(object_mask), rect) == 0) & inside_image
    if not free.any():
        raise HarnessError(f"no room for a {w}x{h}px sticker off the object; use a smaller size or a corner")
    ys, xs = np.nonzero(free)
    pick = int(rng.integers(len(ys)))
    return int(xs[pick]) - w // 2, int(ys[pick]) - h // 2


def add_sticker(
    image: np.ndarray,
    object_mask: np.ndarray,
    *,
    shape: str = "square",
    color: tuple[int, int, int] = (0, 0, 0),
    sticker: np.ndarray | None = None,
    size: float | str = 0.25,
    relative_to: str = "object",
    position: StickerPosition = "on_object",
    margin: int = 0,
    opacity: float = 1.0,
    seed: int = 0,
) -> VariantImage:
    """Paste a square/circle of one colour, or an RGBA image, and report where it is.

    ``sticker_mask`` holds the pixels the sticker actually covers (alpha > 0 for images).
    """
    height, width = object_mask.shape
    native = None if sticker is None else (int(sticker.shape[0]), int(sticker.shape[1]))
    h, w = sticker_shape(object_mask, size, relative_to, native)
    x0, y0 = _sticker_origin(object_mask, (h, w), position, margin, np.random.default_rng(seed))
    # Clip the sticker to the image; a user-given [x, y] near the edge is allowed.
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    if ix1 <= ix0 or iy1 <= iy0:
        raise HarnessError(f"sticker centred at ({x0 + w // 2}, {y0 + h // 2}) lies outside the {width}x{height} image")
    if sticker is not None:
        patch = sticker if (h, w) == native else cv2.resize(sticker, (w, h), interpolation=cv2.INTER_AREA)
        alpha = patch[..., 3:4].astype(np.float32) / 255.0
        colour = patch[..., :3].astype(np.float32)
    else:
        side = h
        alpha_u8 = np.zeros((side, side), dtype=np.uint8)
        if shape == "circle":
            cv2.circle(alpha_u8, (side // 2, side // 2), max(side // 2, 1), 255, thickness=-1)
            if side <= 2:
                alpha_u8[:] = 255
        else:
            alpha_u8[:] = 255
        alpha = alpha_u8[..., None].astype(np.float32) / 255.0
        colour = np.empty((side, side, 3), dtype=np.float32)
        colour[:] = np.asarray(color, dtype=np.float32)
    alpha = alpha * np.float32(opacity)
    sub = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    region = image[iy0:iy1, ix0:ix1].astype(np.float32)
    blended = alpha[sub] * colour[sub] + (1.0 - alpha[sub]) * region
    out = image.copy()
    out[iy0:iy1, ix0:ix1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    sticker_mask = np.zeros((height, width), dtype=bool)
    sticker_mask[iy0:iy1, ix0:ix1] = alpha[sub][..., 0] > 0
    return VariantImage(image=out, object_mask=object_mask.copy(), sticker_mask=sticker_mask)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class VariantKind:
    """A registered variant: its YAML name, settings model and description."""

    name: str
    settings: type[VariantSettings]
    description: str


VARIANTS: dict[str, VariantKind] = {
    kind.name: kind
    for kind in (
        VariantKind("original", OriginalSettings, "the unchanged image"),
        VariantKind("instance_removed", InstanceRemovedSettings, "the object painted out"),
        VariantKind("background_removed", BackgroundRemovedSettings, "everything but the object replaced"),
        VariantKind("sticker_added", StickerAddedSettings, "a patch pasted on (or off) the object"),
    )
}

DEFAULT_VARIANTS: tuple[str, ...] = tuple(VARIANTS)


def apply_variant(
    name: str,
    settings: VariantSettings,
    image: np.ndarray,
    object_mask: np.ndarray,
    load_rgb: Callable[[str], np.ndarray],
    load_rgba: Callable[[str], np.ndarray],
) -> VariantImage:
    """Generate variant ``name`` with its validated settings.

    ``load_rgb`` / ``load_rgba`` resolve the file names a setting may hold (background
    or sticker image), so this module stays free of path handling. A variant made of
    steps (its settings are a ``harness.steps.StepsSettings``) applies them in order.
    """
    from harness.steps import StepsSettings, apply_steps  # steps build on this module

    if isinstance(settings, StepsSettings):
        return apply_steps(settings, image, object_mask, load_rgb, load_rgba)
    if name == "original":
        return original(image, object_mask)
    if name == "instance_removed":
        s = cast(InstanceRemovedSettings, settings)
        return remove_instance(
            image,
            object_mask,
            fill=s.fill,
            dilate=s.dilate,
            inpaint_radius=s.inpaint_radius,
            grey_value=s.grey_value,
            seed=s.seed,
        )
    if name == "background_removed":
        s2 = cast(BackgroundRemovedSettings, settings)
        background = load_rgb(s2.image) if s2.fill == "image" and s2.image else None
        return remove_background(
            image,
            object_mask,
            fill=s2.fill,
            background=background,
            grey_value=s2.grey_value,
            blur_sigma=s2.blur_sigma,
            seed=s2.seed,
        )
    if name == "sticker_added":
        s3 = cast(StickerAddedSettings, settings)
        patch = load_rgba(s3.image) if s3.image else None
        return add_sticker(
            image,
            object_mask,
            shape=s3.shape,
            color=s3.color,
            sticker=patch,
            size=s3.size,
            relative_to=s3.relative_to,
            position=s3.position,
            margin=s3.margin,
            opacity=s3.opacity,
            seed=s3.seed,
        )
    raise HarnessError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
