"""Relevance metrics: small pure functions over a relevance map R (H, W) and a mask M.

Sign convention: relevance mass uses positive relevance only, R⁺ = max(R, 0); the
share of mass inside M is ``sum(R⁺[M]) / sum(R⁺)``. Negative relevance (evidence
against the class, drawn blue) is reported separately. Undefined values raise
:class:`~harness.errors.MetricError` instead of returning NaN, so an oracle can never
pass on a value it could not compute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from harness.errors import MetricError


def _check(relevance: np.ndarray, mask: np.ndarray) -> None:
    if relevance.ndim != 2:
        raise MetricError(f"relevance must be 2-D (H, W), got shape {relevance.shape}")
    if mask.shape != relevance.shape:
        raise MetricError(f"mask shape {mask.shape} differs from relevance shape {relevance.shape}")
    if not mask.any():
        raise MetricError("the region is empty: relevance inside vs outside is undefined")
    if mask.all():
        raise MetricError("the region covers the whole image: relevance inside vs outside is undefined")
    if not np.isfinite(relevance).all():
        bad = int(relevance.size - np.count_nonzero(np.isfinite(relevance)))
        raise MetricError(f"the relevance map is not finite ({bad} of {relevance.size} values are NaN/Inf)")


def channel_sum(relevance: np.ndarray) -> np.ndarray:
    """Collapse a (C, H, W) relevance tensor to (H, W) by summing colour channels."""
    return relevance.sum(axis=0) if relevance.ndim == 3 else relevance


def positive_mass(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Share of positive relevance inside ``mask``: ``sum(R⁺[M]) / sum(R⁺)`` in [0, 1].

    Raises
    ------
    MetricError
        If the mask is empty or full, or there is no positive relevance at all.
    """
    _check(relevance, mask)
    inside, total = _inside_and_total(np.maximum(relevance, 0.0), mask)
    if total <= 0.0:
        raise MetricError("the relevance map has no positive relevance: the mass share is undefined")
    return float(inside / total)


def negative_mass(relevance: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of negative relevance inside ``mask`` (``None`` when there is none at all)."""
    _check(relevance, mask)
    inside, total = _inside_and_total(np.maximum(-relevance, 0.0), mask)
    return None if total <= 0.0 else float(inside / total)


def _inside_and_total(values: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Sums of non-negative ``values`` inside ``mask`` and overall. The total is the sum of
    the inside and outside sums, not a third summation: rounding could otherwise make the
    inside exceed the total (a share of 1.0000000000000002, seen with values spanning 16
    orders of magnitude), and inside <= inside + outside holds in floating point."""
    values = values.astype(np.float64)
    inside = float(values[mask].sum())
    return inside, inside + float(values[~mask].sum())


def signed_share(relevance: np.ndarray, mask: np.ndarray) -> float | None:
    """``sum(R[M]) / sum(|R|)`` in [-1, 1]: net evidence inside M relative to all evidence."""
    _check(relevance, mask)
    total = np.abs(relevance).astype(np.float64).sum()
    if total <= 0.0:
        return None
    # |sum R[M]| <= sum |R| holds exactly, not always after rounding: keep the share in range.
    return float(np.clip(relevance[mask].astype(np.float64).sum() / total, -1.0, 1.0))


def rank_accuracy(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Share of the |M| most relevant pixels that lie inside M (ties: lower index first)."""
    _check(relevance, mask)
    flat = relevance.ravel()
    inside = mask.ravel()
    k = int(inside.sum())
    # Linear time instead of a full sort (this runs for every item): the k-th largest
    # value splits the pixels into those surely in the top k (greater) and the ties,
    # of which the lowest-index ones fill the remaining places, as a stable sort would.
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    greater = flat > kth
    ties = np.flatnonzero(flat == kth)[: k - int(greater.sum())]
    hits = int(np.count_nonzero(inside & greater)) + int(np.count_nonzero(inside[ties]))
    return float(hits / k)


def pointing_game(relevance: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> bool:
    """Whether the most relevant pixel lies in M grown by ``tolerance`` pixels."""
    _check(relevance, mask)
    if tolerance > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
        mask = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    index = int(np.argmax(relevance))
    return bool(mask.ravel()[index])


def area_share(mask: np.ndarray) -> float:
    """Share of the image's pixels inside ``mask``, in (0, 1) for a usable region."""
    if mask.size == 0:
        raise MetricError("the mask has no pixels: its area share is undefined")
    return float(np.count_nonzero(mask) / mask.size)


def lift(mass: float, area: float) -> float:
    """Relevance mass per unit of area share: 1 means the region holds exactly its share
    of the positive relevance, 3 three times its share, whatever its size."""
    if not 0.0 < area < 1.0:
        raise MetricError(f"the region's area share {area} leaves no inside and outside: its lift is undefined")
    return mass / area


@dataclass(frozen=True)
class RegionMetrics:
    """All metrics of one relevance map against one region."""

    mass: float
    signed: float | None
    negative: float | None
    rank_accuracy: float
    pointing_game: bool
    # Share of the pixels in the region and mass / area (None only where a caller built
    # the metrics by hand without them).
    area: float | None = None
    lift: float | None = None


def region_metrics(relevance: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> RegionMetrics:
    """Compute every metric of ``relevance`` against ``mask`` at once."""
    # Overflowing sums are caught below as non-finite values, not warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        metrics = RegionMetrics(
            mass=positive_mass(relevance, mask),
            signed=signed_share(relevance, mask),
            negative=negative_mass(relevance, mask),
            rank_accuracy=rank_accuracy(relevance, mask),
            pointing_game=pointing_game(relevance, mask, tolerance),
        )
        area = area_share(mask)
        metrics = replace(metrics, area=area, lift=lift(metrics.mass, area))
    for name in ("mass", "signed", "negative", "rank_accuracy", "lift"):
        value = getattr(metrics, name)
        # Sums of finite float32 maps can still overflow to Inf: no metric may pass on it.
        if value is not None and not np.isfinite(value):
            raise MetricError(f"the metric {name} is not finite ({value})")
    return metrics
