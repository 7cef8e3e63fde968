"""SpRAy over a finished scan: the clusters of one class with what an expert looks at.

For every cluster: its size, the mean of its members' maps (each over its own peak, so
that every image counts alike), the members closest to that mean (representatives),
and, where regions exist, the members' mean object mass and share mostly outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from harness.errors import HarnessError

from .spray import SprayResult, normalise_maps, spray

__all__ = ["Cluster", "ClassClusters", "cluster_class"]


@dataclass(frozen=True)
class Cluster:
    number: int  # 1..k, by decreasing size
    rows: np.ndarray  # table rows of the members
    mean_map: np.ndarray  # (s, s), members' maps over their peaks, averaged
    representatives: list[int]  # table rows, closest to the mean first
    mean_p_label: float
    predicted_as_label: float  # share
    mean_mass: float | None
    share_outside: float | None


@dataclass(frozen=True)
class ClassClusters:
    label: str
    result: SprayResult
    clusters: list[Cluster]
    sampled: int  # maps clustered (the class may have had more)
    of: int


def cluster_class(
    table: pa.Table,
    maps: np.ndarray,
    label: str,
    max_clusters: int = 8,
    clusters: int | None = None,
    max_maps: int = 5000,
    representatives: int = 6,
    seed: int = 0,
) -> ClassClusters:
    """Cluster the maps of ``label``'s error-free rows (a seeded sample of ``max_maps``
    when there are more: the eigensolver's memory grows with the square of N)."""
    labels = table.column("label").to_pylist()
    errors = table.column("error").to_pylist()
    peaks = table.column("heatmap_peak").to_pylist()
    rows = np.asarray(
        [i for i, lab in enumerate(labels) if lab == label and errors[i] is None and peaks[i]], dtype=np.int64
    )
    if len(rows) < 3:
        raise HarnessError(f"class {label!r}: {len(rows)} usable heatmaps; SpRAy needs at least 3")
    total = len(rows)
    if total > max_maps:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_maps, replace=False))
    own = np.asarray(maps[rows], dtype=np.float32)  # stored over each map's peak already
    result = spray(own, max_clusters=max_clusters, clusters=clusters, seed=seed)
    unit = normalise_maps(own)
    p_label = np.asarray(table.column("p_label").to_pylist(), dtype=object)
    predicted = table.column("predicted").to_pylist()
    mass = table.column("mass").to_pylist()
    outside = table.column("mostly_outside").to_pylist()
    out = []
    for number in range(1, result.k + 1):
        members = np.flatnonzero(result.labels == number)
        mean_map = own[members].mean(axis=0)
        centre = unit[members].mean(axis=0)
        closeness = unit[members] @ centre
        ranked = members[np.argsort(-closeness, kind="stable")][:representatives]
        member_rows = rows[members]
        measured = [int(r) for r in member_rows if mass[r] is not None]
        out.append(
            Cluster(
                number=number,
                rows=member_rows,
                mean_map=mean_map,
                representatives=[int(rows[i]) for i in ranked],
                mean_p_label=float(np.mean([p_label[r] for r in member_rows])),
                predicted_as_label=float(np.mean([predicted[r] == label for r in member_rows])),
                mean_mass=float(np.mean([mass[r] for r in measured])) if measured else None,
                share_outside=float(np.mean([bool(outside[r]) for r in measured])) if measured else None,
            )
        )
    return ClassClusters(label=label, result=result, clusters=out, sampled=len(rows), of=total)
