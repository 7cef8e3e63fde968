"""Explanation health: is a relevance map fit to be evidence for a verdict?

LRP redistributes the target logit ``z`` over the input pixels, so the map's sum ``R``
approximates ``z`` (biases and the epsilon stabiliser absorb part of it). The ratio
``R / z`` is the map's *conservation*. A map is **unhealthy** — and its item an error,
never a verdict — when

* it holds NaN or Inf (any explainer);
* it is all zero although the target logit is not near zero (any explainer);
* its conservation lies outside the band ``[lo, hi]`` (LRP only; input×gradient does
  not conserve anything).

Near a zero logit the ratio means nothing (a logit of 1e-4 and a sum of 2e-3 give 20).
There the logit is compared in absolute terms, against the image's *logit scale*
``s = max_k |logit_k|``: if ``|z| < NEAR_ZERO * s`` the map is healthy when
``|R - z| <= NEAR_ZERO * s * max(1 - lo, hi - 1)``, which is exactly what the ratio
band allows at the edge ``|z| = NEAR_ZERO * s``. The default band and how it was
measured are in ``docs/reliability.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Default [lo, hi] for LRP conservation; docs/reliability.md has the measurements
# (healthy maps of the demo models and torchvision nets span -1.9 .. 5.5, a residual
# net without an LRP rule for its additions gives about 200).
DEFAULT_CONSERVATION: tuple[float, float] = (-3.0, 8.0)

# Below this fraction of the logit scale a target logit counts as near zero.
NEAR_ZERO = 0.1


@dataclass(frozen=True)
class Health:
    """Measurements of one relevance map (the row's health columns)."""

    target_logit: float
    relevance_sum: float
    logit_scale: float
    nonfinite: int  # NaN/Inf values in the map
    nan: int
    size: int  # values in the map
    all_zero: bool

    @property
    def finite(self) -> bool:
        return self.nonfinite == 0

    @property
    def conservation(self) -> float | None:
        """``relevance_sum / target_logit``; ``None`` when undefined (zero logit, or a
        non-finite map)."""
        if not self.finite or self.target_logit == 0.0 or not math.isfinite(self.relevance_sum):
            return None
        return self.relevance_sum / self.target_logit

    @property
    def near_zero(self) -> bool:
        # A zero logit is near zero even when every logit is zero (scale 0): no ratio then.
        return self.target_logit == 0.0 or abs(self.target_logit) < NEAR_ZERO * self.logit_scale

    def columns(self) -> dict[str, Any]:
        """The values a results row records."""
        return {
            "target_logit": self.target_logit,
            "relevance_sum": self.relevance_sum if math.isfinite(self.relevance_sum) else None,
            "conservation": self.conservation,
            "relevance_finite": self.finite,
        }


def measure(logits: np.ndarray, target: int, relevance: np.ndarray) -> Health:
    """Health measurements of ``relevance`` (any shape) explaining ``logits[target]``."""
    values = np.asarray(relevance, dtype=np.float64)
    finite = np.isfinite(values)
    nonfinite = int(values.size - np.count_nonzero(finite))
    total = float(values.sum()) if nonfinite == 0 else float("nan")
    logit_row = np.asarray(logits, dtype=np.float64)
    return Health(
        target_logit=float(logit_row[target]),
        relevance_sum=total,
        logit_scale=float(np.abs(logit_row).max()),
        nonfinite=nonfinite,
        nan=int(np.count_nonzero(np.isnan(values))),
        size=int(values.size),
        all_zero=nonfinite == 0 and not values.any(),
    )


def band_of(thresholds: dict[str, Any]) -> tuple[float, float] | None:
    """The item's conservation band (``None``: the check is off)."""
    band = thresholds.get("conservation", DEFAULT_CONSERVATION)
    if band is None:
        return None
    lo, hi = (float(v) for v in band)
    return lo, hi


def problem(health: Health, conservative: bool, band: Sequence[float] | None, zero_allowed: bool = False) -> str | None:
    """Why the map cannot serve as evidence, or ``None`` when it is healthy.

    Parameters
    ----------
    conservative
        Whether the explainer conserves the logit (LRP); otherwise only the finite and
        all-zero checks apply.
    zero_allowed
        Whether an all-zero map is a possible answer: Grad-CAM's map is ReLU'd by definition,
        so it is zero wherever nothing speaks for the class (typically a class the model
        rejects); the metrics that need positive relevance are then undefined instead.
    band
        ``(lo, hi)`` for the conservation, or ``None`` to skip that check.
    """
    if not health.finite:
        kind = "NaN" if health.nan else "Inf"
        if health.nan and health.nan < health.nonfinite:
            kind = "NaN/Inf"
        return f"relevance is not finite ({kind} in {health.nonfinite} of {health.size} values)"
    z, total = health.target_logit, health.relevance_sum
    if health.all_zero and not health.near_zero and not zero_allowed:
        return f"the relevance map is all zero for a target logit of {z:.4g}"
    if not conservative or band is None:
        return None
    lo, hi = band
    if health.near_zero:
        tolerance = NEAR_ZERO * health.logit_scale * max(1.0 - lo, hi - 1.0)
        if abs(total - z) > tolerance:
            return (
                f"relevance sums to {total:.4g} for a target logit of {z:.4g}, near zero (logit scale "
                f"{health.logit_scale:.4g}): |sum - logit| = {abs(total - z):.4g} exceeds {tolerance:.4g}"
            )
        return None
    ratio = total / z
    if not lo <= ratio <= hi:
        return (
            f"relevance sums to {total:.4g} for a target logit of {z:.4g}: conservation {ratio:.3g} "
            f"outside [{lo:g}, {hi:g}]"
        )
    return None


def median(values: Sequence[float]) -> float | None:
    """Median of the finite values, ``None`` when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else None
