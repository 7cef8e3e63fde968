"""Spectral Relevance Analysis (SpRAy, Lapuschkin et al. 2019): the strategies of a class.

The downsized heatmaps of one class are clustered spectrally: a symmetric k-nearest-
neighbour graph over the maps, the normalised graph Laplacian, its smallest eigenvalues
(the *eigengap* after the k-th says the graph falls apart into k groups) and k-means on
the row-normalised eigenvectors (Ng, Jordan and Weiss). Each cluster is one way the
model decides on the class; an expert looks at the mean map and a few members and
names the suspicious ones. Written with numpy and scipy: no scikit-learn needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from harness.errors import HarnessError

__all__ = ["SprayResult", "normalise_maps", "spray"]

# Below this many maps the dense eigensolver is exact and fast; above it ARPACK.
_DENSE_LIMIT = 1500
# The neighbour whose distance sets a map's local scale (Zelnik-Manor and Perona's choice).
_SCALE_NEIGHBOUR = 7


@dataclass(frozen=True)
class SprayResult:
    """Clusters of one class's heatmaps.

    ``labels`` numbers the clusters 1..k by decreasing size (ties: smallest first
    member); ``eigenvalues`` are the smallest eigenvalues of the normalised Laplacian,
    ascending, and ``gaps`` their successive differences; ``k`` follows the largest gap
    unless it was given, or is 1 when no gap stands out.
    """

    labels: np.ndarray
    k: int
    eigenvalues: np.ndarray
    gaps: np.ndarray
    neighbours: int
    chosen_by: str  # "eigengap", "no eigengap" (one cluster: no gap stands out) or "given"


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Flatten (N, h, w) maps and scale each to unit L2 norm (all-zero maps stay zero),
    so that clusters group where relevance lies, not how much of it there is."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)


def _knn_affinity(x: np.ndarray, neighbours: int) -> sparse.csr_matrix:
    """Symmetric kNN graph with self-tuning Gaussian weights (Zelnik-Manor and Perona):
    i and j are linked when either is among the other's ``neighbours`` nearest maps,
    with weight ``exp(-d² / (s_i s_j))``, ``s_i`` the distance to i's 7th nearest map.
    Local scales keep a tight strategy and a diffuse one equally connected, weaken the
    links a small group must make to others, and plain 0/1 links would split a group
    into its near-duplicates."""
    n = len(x)
    squared = (x * x).sum(axis=1)
    rows, cols, dists = [], [], []
    # Distances in blocks: an N x N matrix of a large class would not fit in memory.
    block = max(1, 4_000_000 // max(n, 1))
    for start in range(0, n, block):
        stop = min(n, start + block)
        d = np.maximum(squared[start:stop, None] + squared[None, :] - 2.0 * x[start:stop] @ x.T, 0.0)
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf
        # Stable sort: ties go to the lower index, whatever the block size.
        nearest = np.argsort(d, axis=1, kind="stable")[:, :neighbours]
        rows.append(np.repeat(np.arange(start, stop), neighbours))
        cols.append(nearest.ravel())
        dists.append(np.take_along_axis(d, nearest, axis=1).ravel())
    r, c, d2 = np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)
    scale = np.sqrt(d2.reshape(n, neighbours)[:, min(_SCALE_NEIGHBOUR, neighbours) - 1])
    scale = np.where(scale > 0, scale, max(float(scale.max()), 1e-12))
    weights = np.exp(-d2 / (scale[r] * scale[c]))
    graph = sparse.csr_matrix((weights, (r, c)), shape=(n, n))
    return graph.maximum(graph.T).tocsr()


def _smallest_laplacian_eigen(affinity: sparse.csr_matrix, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues (ascending) and eigenvectors of
    L = I - D^-1/2 W D^-1/2, from the largest of the normalised affinity."""
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    scaled = sparse.diags(inv_sqrt) @ affinity @ sparse.diags(inv_sqrt)
    n = scaled.shape[0]
    if n <= _DENSE_LIMIT or count >= n - 1:
        values, vectors = np.linalg.eigh(scaled.toarray())
        values, vectors = values[::-1][:count], vectors[:, ::-1][:, :count]
    else:
        # A fixed start vector keeps ARPACK deterministic.
        start = np.full(n, 1.0 / np.sqrt(n))
        values, vectors = sparse_linalg.eigsh(scaled, k=count, which="LA", v0=start)
        order = np.argsort(-values)
        values, vectors = values[order], vectors[:, order]
    return np.clip(1.0 - values, 0.0, 2.0), vectors


def _kmeans(points: np.ndarray, k: int, seed: int, restarts: int = 10, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; the best of ``restarts`` by inertia."""
    rng = np.random.default_rng(seed)
    best, best_inertia = np.zeros(len(points), int), np.inf
    for _ in range(restarts):
        centres = [points[int(rng.integers(len(points)))]]
        for _ in range(1, k):
            d2 = np.min(((points[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
            total = d2.sum()
            pick = int(rng.choice(len(points), p=d2 / total)) if total > 0 else int(rng.integers(len(points)))
            centres.append(points[pick])
        c = np.asarray(centres)
        labels = np.zeros(len(points), int)
        for step in range(iterations):
            d2 = ((points[:, None, :] - c[None]) ** 2).sum(-1)
            new = np.argmin(d2, axis=1)
            if step and np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = points[labels == j]
                if len(members):
                    c[j] = members.mean(axis=0)
        inertia = float(((points - c[labels]) ** 2).sum())
        if inertia < best_inertia - 1e-12:
            best, best_inertia = labels, inertia
    return best


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Clusters 1..k by decreasing size; equal sizes by their first member."""
    found = np.unique(labels)
    order = sorted(found, key=lambda c: (-int((labels == c).sum()), int(np.flatnonzero(labels == c)[0])))
    mapping = {int(old): new for new, old in enumerate(order, start=1)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64)


def spray(
    maps: np.ndarray,
    max_clusters: int = 8,
    clusters: int | None = None,
    neighbours: int | None = None,
    seed: int = 0,
    min_gap_ratio: float = 2.0,
) -> SprayResult:
    """Cluster heatmaps (N, h, w) spectrally; the number of clusters by the eigengap.

    Parameters
    ----------
    maps
        Downsized relevance maps of one class (colour channels already summed).
    max_clusters
        Largest k the eigengap may choose.
    clusters
        Use this k instead of the eigengap.
    neighbours
        Neighbours per map in the kNN graph; default 10 (scikit-learn's default for a
        kNN affinity), capped at N - 1.
    seed
        Seed of k-means (the result is deterministic for a given seed).
    min_gap_ratio
        The largest gap must be this many times the median of the other gaps (up to
        ``max_clusters``); otherwise the spectrum rises evenly, there is no group
        structure, and the result is one cluster (``chosen_by = "no eigengap"``).

    Raises
    ------
    HarnessError
        Fewer than 3 maps, or a ``clusters`` value that does not fit.
    """
    n = len(maps)
    if n < 3:
        raise HarnessError(f"SpRAy needs at least 3 heatmaps of the class, got {n}")
    if clusters is not None and not 1 <= clusters < n:
        raise HarnessError(f"clusters must lie in 1..{n - 1} for {n} heatmaps, got {clusters}")
    x = normalise_maps(maps)
    k_nn = neighbours or 10
    k_nn = max(1, min(k_nn, n - 1))
    affinity = _knn_affinity(x, k_nn)
    top = max(2, min(max(max_clusters, clusters or 1) + 1, n - 1))
    values, vectors = _smallest_laplacian_eigen(affinity, top)
    gaps = np.diff(values)
    if clusters is None:
        # gaps[i] = lambda_{i+2} - lambda_{i+1}: the gap after i + 1 clusters.
        window = gaps[: max(1, min(max_clusters, len(gaps)))]
        best = int(np.argmax(window))
        others = np.delete(window, best)
        if len(others) and window[best] < min_gap_ratio * float(np.median(others)):
            # An evenly rising spectrum has no cluster structure: one group, said so.
            k, chosen_by = 1, "no eigengap"
        else:
            k, chosen_by = best + 1, "eigengap"
    else:
        k, chosen_by = clusters, "given"
    if k == 1:
        labels = np.ones(n, dtype=np.int64)
    else:
        degree = np.asarray(affinity.sum(axis=1)).ravel()
        embedding = vectors[:, :k] / np.sqrt(np.maximum(degree, 1e-12))[:, None]
        norms = np.linalg.norm(embedding, axis=1, keepdims=True)
        embedding = np.divide(embedding, norms, out=np.zeros_like(embedding), where=norms > 0)
        labels = _renumber(_kmeans(embedding, k, seed))
    return SprayResult(labels=labels, k=k, eigenvalues=values, gaps=gaps, neighbours=k_nn, chosen_by=chosen_by)
