"""Agreement of two explanations of one image (two explainers, or a model and its randomised twin).

Both figures read the relevance maps summed over colour channels, signed, at the model's
input resolution:

* ``agreement_rank`` — Spearman's rank correlation of the pixel values (ties get their
  average rank, so the flat zero area of a ReLU'd Grad-CAM map counts as one tie);
  1 = same order, 0 = unrelated, -1 = reversed; undefined (``None``) when a map is constant.
* ``agreement_top10`` — intersection over union of the two maps' top 10 % pixels (ties at
  the boundary broken by pixel index, so the figure is deterministic); 1 = the same pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

TOP_FRACTION = 0.10


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (flattened), ties sharing their average rank."""
    _, inverse, counts = np.unique(np.ravel(values), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)
    return (ends - (counts - 1) / 2.0)[inverse]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho of two maps of one shape; ``None`` when either is constant."""
    _check(a, b)
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if denominator == 0.0:
        return None
    return float(np.clip(float(ra @ rb) / denominator, -1.0, 1.0))


def top_mask(values: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Boolean mask (flattened) of the ``ceil(fraction * size)`` largest values."""
    flat = np.ravel(values)
    count = max(1, math.ceil(fraction * flat.size))
    order = np.argsort(-flat, kind="stable")  # equal values: the lower pixel index first
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:count]] = True
    return mask


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Intersection over union of the top ``fraction`` pixels of two maps of one shape."""
    _check(a, b)
    ma, mb = top_mask(a, fraction), top_mask(b, fraction)
    return float((ma & mb).sum() / (ma | mb).sum())


def agreement_columns(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The results-table columns for maps ``a`` and ``b`` (non-finite maps: ``None``)."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return {"agreement_rank": None, "agreement_top10": None}
    return {"agreement_rank": rank_correlation(a, b), "agreement_top10": top_overlap(a, b)}


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b) or np.size(a) == 0:
        raise ValueError(f"maps of different or empty shapes: {np.shape(a)} and {np.shape(b)}")


def verdict_disagreements(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Images on which the explainers of a run disagree on the verdict.

    ``rows`` are results rows (any order); rows of one image are those with the same suite,
    case, variant, sweep value and model. Returns one entry per image judged by two or more
    explainers with more than one verdict among them: its identity and ``verdicts``
    (explainer -> verdict), in the rows' order (for the report's per-case line).
    """
    groups: dict[tuple[Any, ...], dict[str, str]] = {}
    for row in rows:
        if not row.get("explainer") or not row.get("variant"):
            continue  # a suite-level error row belongs to no image
        key = tuple(row.get(k) for k in ("suite", "case_id", "variant", "sweep", "model"))
        groups.setdefault(key, {})[str(row["explainer"])] = str(row.get("verdict"))
    return [
        {"suite": key[0], "case_id": key[1], "variant": key[2], "sweep": key[3], "model": key[4], "verdicts": verdicts}
        for key, verdicts in groups.items()
        if len(verdicts) > 1 and len(set(verdicts.values())) > 1
    ]
