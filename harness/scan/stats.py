"""The scan's figures per class: how many images hold their relevance mostly outside the object.

An image is *mostly outside* when the share of its positive relevance on the object (the
suites' ``mass``) is below ``min_object_mass`` (0.5 by default). The share of such images
among the class's images with a region is reported with a 95 % Wilson score interval,
which stays inside [0, 1] and is sensible for shares near 0 or 1 and small counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["ClassSummary", "summarise", "wilson"]

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial share; ``(0, 1)`` when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in 0..{trials}, got {successes}")
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # Rounding can leave the exact ends a hair outside [0, 1] (or the share outside the interval).
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


@dataclass(frozen=True)
class ClassSummary:
    """One class of a scan."""

    label: str
    images: int
    errors: int
    predicted_as_label: int
    with_region: int  # images whose object mass was measured
    mostly_outside: int
    share_outside: float | None
    ci_low: float | None
    ci_high: float | None
    mean_mass: float | None
    median_mass: float | None

    def sentence(self, threshold: float) -> str:
        """The figure as people say it."""
        if self.share_outside is None:
            return f"{self.label}: {self.images} images, no object regions, so no object mass (see the clusters)"
        return (
            f"{self.label}: {self.mostly_outside} of {self.with_region} images ({self.share_outside:.1%}, "
            f"95 % CI {self.ci_low:.1%}-{self.ci_high:.1%}) hold less than {threshold:.0%} of their "
            f"positive relevance on the object"
        )


def summarise(table: pa.Table) -> list[ClassSummary]:
    """One summary per label, in order of first appearance."""
    labels = table.column("label").to_pylist()
    errors = table.column("error").to_pylist()
    predicted = table.column("predicted").to_pylist()
    masses = table.column("mass").to_pylist()
    outside = table.column("mostly_outside").to_pylist()
    out = []
    for label in dict.fromkeys(labels):
        rows = [i for i, lab in enumerate(labels) if lab == label]
        measured = [i for i in rows if masses[i] is not None and errors[i] is None]
        values = np.asarray([masses[i] for i in measured], dtype=np.float64)
        k = sum(bool(outside[i]) for i in measured)
        n = len(measured)
        low, high = wilson(k, n) if n else (None, None)
        out.append(
            ClassSummary(
                label=label,
                images=len(rows),
                errors=sum(errors[i] is not None for i in rows),
                predicted_as_label=sum(predicted[i] == label for i in rows),
                with_region=n,
                mostly_outside=k,
                share_outside=k / n if n else None,
                ci_low=low,
                ci_high=high,
                mean_mass=float(values.mean()) if n else None,
                median_mass=float(np.median(values)) if n else None,
            )
        )
    return out
