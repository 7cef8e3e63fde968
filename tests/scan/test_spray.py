"""SpRAy on planted strategies: maps whose relevance lies in known places."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.scan.spray import spray


def _planted(groups: list[tuple[int, int, int]], per_group: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Maps of 16x16 with a 5x5 blob of random strength at each group's (row, col), plus noise."""
    rng = np.random.default_rng(seed)
    maps, truth = [], []
    for g, (r, c, _) in enumerate(groups):
        for _ in range(per_group):
            m = rng.normal(0, 0.05, (16, 16))
            m[r : r + 5, c : c + 5] += rng.uniform(0.5, 2.0)
            maps.append(m)
            truth.append(g)
    order = rng.permutation(len(maps))
    return np.asarray(maps)[order], np.asarray(truth)[order]


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    return sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(labels)


def test_two_planted_strategies_give_two_pure_clusters() -> None:
    maps, truth = _planted([(2, 2, 0), (9, 9, 0)], per_group=30)
    result = spray(maps)
    assert result.chosen_by == "eigengap"
    assert result.k == 2
    assert _purity(result.labels, truth) == 1.0
    assert sorted(np.bincount(result.labels)[1:]) == [30, 30]


def test_three_strategies_and_the_eigengap() -> None:
    maps, truth = _planted([(1, 1, 0), (1, 10, 0), (10, 5, 0)], per_group=20, seed=3)
    result = spray(maps)
    assert result.k == 3
    assert _purity(result.labels, truth) == 1.0
    # Three disconnected groups: three (near) zero eigenvalues, then the gap.
    assert result.eigenvalues[:3].max() < 1e-6
    assert int(np.argmax(result.gaps)) == 2


def test_clusters_are_numbered_by_size_and_deterministic() -> None:
    big, _ = _planted([(2, 2, 0)], per_group=30, seed=1)
    small, _ = _planted([(9, 9, 0)], per_group=10, seed=2)
    maps = np.concatenate([small, big])
    first, second = spray(maps, seed=5), spray(maps, seed=5)
    assert np.array_equal(first.labels, second.labels)
    assert (first.labels[10:] == 1).all() and (first.labels[:10] == 2).all()


def test_a_given_k_overrides_the_eigengap() -> None:
    maps, _ = _planted([(2, 2, 0), (9, 9, 0)], per_group=15)
    result = spray(maps, clusters=3)
    assert result.k == 3 and result.chosen_by == "given"
    assert set(np.unique(result.labels)) == {1, 2, 3}


def test_too_few_maps_or_a_bad_k_are_errors() -> None:
    with pytest.raises(HarnessError, match="at least 3"):
        spray(np.zeros((2, 4, 4)))
    with pytest.raises(HarnessError, match="clusters must lie in 1..4"):
        spray(np.random.default_rng(0).normal(size=(5, 4, 4)), clusters=5)


def test_maps_without_groups_give_one_cluster() -> None:
    # A blob sliding along a diagonal: a continuum of strategies, no separate groups.
    maps = np.zeros((60, 16, 16))
    for i in range(60):
        p = i * 11 / 59
        r = int(round(p))
        maps[i, r : r + 5, r : r + 5] = 1.0
    maps += np.random.default_rng(0).normal(0, 0.05, maps.shape)
    result = spray(maps)
    assert (result.k, result.chosen_by) == (1, "no eigengap")
    assert (result.labels == 1).all()
