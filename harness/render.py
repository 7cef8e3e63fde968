"""Pictures for humans: annotated inputs, signed heatmaps and overlays (uint8 RGB).

Pictures with outlines are drawn upscaled (thin lines on small model inputs); the
others stay at the model's resolution, because the report enlarges small images with
pixelated rendering, which shows exactly what a nearest-neighbour upscale would, and
PNG encoding, the main cost of writing pictures, grows with the pixel count.
"""

from __future__ import annotations

import io
import math
import os
import threading
from pathlib import Path

import cv2
import numpy as np

OBJECT_COLOUR = (0, 200, 0)
REMOVED_COLOUR = (255, 190, 0)
STICKER_COLOUR = (230, 0, 230)
DISPLAY_MIN_SIDE = 192
# The colour scale of a case's maps: this percentile of |R| over all of them, so that a
# few extreme pixels do not wash every other pixel out to near-white.
HEATMAP_PERCENTILE = 99.5


def display_scale(shape: tuple[int, ...]) -> int:
    """Integer upscale so small model inputs (e.g. 64×64) stay readable in a report."""
    return max(1, math.ceil(DISPLAY_MIN_SIDE / max(1, min(shape[:2]))))


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return image
    return cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def heatmap_scale(relevance: np.ndarray) -> float:
    """Symmetric colour scale: max |R| maps to full red / full blue."""
    return float(np.abs(relevance).max())


def case_scale(maps: list[np.ndarray], percentile: float = HEATMAP_PERCENTILE) -> float:
    """One symmetric colour scale for several maps: the ``percentile`` of |R| over all
    their pixels (the largest |R| when that percentile is zero, 0.0 for all-zero maps)."""
    if not maps:
        return 0.0
    values = np.concatenate([np.abs(np.asarray(m, dtype=np.float64)).ravel() for m in maps])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    scale = float(np.percentile(values, percentile))
    return scale if scale > 0 else float(values.max())


def save_heatmap_data(
    path: str | Path,
    relevance: np.ndarray,
    object_mask: np.ndarray | None,
    sticker_mask: np.ndarray | None,
    predicted: np.ndarray | None = None,
) -> None:
    """Keep what a heatmap is drawn from, compactly, so that the report can colour all
    maps of a case on one scale once the whole case is known (items run one by one).

    float16 keeps three significant digits of the map divided by its peak (relevance
    itself may be far below float16's normal range); written beside, then renamed.
    ``predicted``, the predicted class's map where the item has one, is kept the same way
    (:func:`load_predicted_data`), so that it is recoloured on the case's scale too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name, data in (("relevance", relevance), ("predicted", predicted)):
        if data is None:
            continue
        data = np.asarray(data, dtype=np.float64)
        peak = float(np.abs(data).max()) if data.size else 0.0
        scaled = data / peak if peak > 0 and math.isfinite(peak) else np.zeros_like(data)
        arrays[name] = scaled.astype(np.float16)
        arrays["peak" if name == "relevance" else f"{name}_peak"] = np.array(peak)
    for name, mask in (("object", object_mask), ("sticker", sticker_mask)):
        if mask is not None:
            arrays[name] = np.asarray(mask).astype(bool)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)


def load_heatmap_data(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The relevance map (float32) and the object and sticker masks saved by :func:`save_heatmap_data`."""
    with np.load(path, allow_pickle=False) as data:
        relevance = data["relevance"].astype(np.float32) * np.float32(data["peak"])
        object_mask = data["object"] if "object" in data.files else None
        sticker_mask = data["sticker"] if "sticker" in data.files else None
    return relevance, object_mask, sticker_mask


def load_predicted_data(path: str | Path) -> np.ndarray | None:
    """The predicted class's map saved by :func:`save_heatmap_data` (float32), if any."""
    with np.load(path, allow_pickle=False) as data:
        if "predicted" not in data.files:
            return None
        return data["predicted"].astype(np.float32) * np.float32(data["predicted_peak"])


def signed_heatmap(relevance: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Blue (negative) – white (zero) – red (positive) image of a 2-D relevance map."""
    scale = heatmap_scale(relevance) if scale is None else scale
    t = np.clip(relevance / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(relevance)
    t = t.astype(np.float32)
    out = np.empty(t.shape + (3,), dtype=np.float32)
    pos, neg = np.maximum(t, 0), np.maximum(-t, 0)
    out[..., 0] = 1.0 - neg
    out[..., 1] = 1.0 - pos - neg
    out[..., 2] = 1.0 - pos
    return np.round(out * 255).astype(np.uint8)


def _outline(canvas: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int], scale: int) -> None:
    if mask is None or not mask.any():
        return
    big = _upscale(mask.astype(np.uint8) * 255, scale)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, colour, thickness=max(1, scale // 2))


def annotate(
    image: np.ndarray,
    object_mask: np.ndarray,
    removed_mask: np.ndarray | None = None,
    sticker_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Upscaled input with the object (green), removed region (amber) and sticker (magenta) outlined."""
    scale = display_scale(image.shape)
    canvas = _upscale(image, scale).copy()
    _outline(canvas, object_mask, OBJECT_COLOUR, scale)
    _outline(canvas, removed_mask, REMOVED_COLOUR, scale)
    _outline(canvas, sticker_mask, STICKER_COLOUR, scale)
    return canvas


def heatmap_image(
    relevance: np.ndarray,
    object_mask: np.ndarray | None = None,
    sticker_mask: np.ndarray | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """Upscaled signed heatmap with thin region outlines for orientation; ``scale`` is
    the |R| drawn at full colour (the map's own maximum when not given)."""
    factor = display_scale(relevance.shape)
    canvas = _upscale(signed_heatmap(relevance, scale), factor).copy()
    _outline(canvas, object_mask, OBJECT_COLOUR, factor)
    _outline(canvas, sticker_mask, STICKER_COLOUR, factor)
    return canvas


def overlay(image: np.ndarray, relevance: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Heatmap blended over a dimmed grey copy of the input, at the input's resolution;
    strong relevance (``scale`` and above, the map's maximum by default) is opaque."""
    scale = heatmap_scale(relevance) if scale is None else scale
    strength = np.clip(np.abs(relevance) / scale, 0, 1) if scale > 0 else np.zeros_like(relevance)
    alpha = np.sqrt(strength)[..., None].astype(np.float32)  # sqrt: faint relevance stays visible
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float32)
    base = 0.35 * grey + 0.65 * 255.0 * 0.5
    mixed = alpha * signed_heatmap(relevance, scale).astype(np.float32) + (1 - alpha) * base
    return np.round(mixed).astype(np.uint8)
