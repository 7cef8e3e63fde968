"""Known-answer tests for the relevance metrics."""

import numpy as np
import pytest

from harness.errors import MetricError
from harness.metrics import (
    area_share,
    channel_sum,
    lift,
    negative_mass,
    pointing_game,
    positive_mass,
    rank_accuracy,
    region_metrics,
    signed_share,
)

R = np.array([[4.0, -2.0, 0.0], [1.0, 3.0, -1.0], [0.0, 2.0, 0.0]])
M = np.array([[True, True, False], [False, True, False], [False, False, False]])


def test_positive_mass_counts_only_positive_relevance():
    # R+ total = 4 + 1 + 3 + 2 = 10; inside M: 4 + 3 = 7
    assert positive_mass(R, M) == pytest.approx(0.7)
    assert positive_mass(R, ~M) == pytest.approx(0.3)


def test_negative_and_signed_shares():
    # negative total = 2 + 1 = 3; inside M: 2
    assert negative_mass(R, M) == pytest.approx(2 / 3)
    # signed: (4 - 2 + 3) / (4 + 2 + 1 + 3 + 1 + 2) = 5 / 13
    assert signed_share(R, M) == pytest.approx(5 / 13)


def test_negative_mass_is_none_without_negative_relevance():
    assert negative_mass(np.abs(R), M) is None


def test_rank_accuracy_takes_top_k_pixels():
    # |M| = 3; the three largest values are 4 (in M), 3 (in M), 2 (not in M)
    assert rank_accuracy(R, M) == pytest.approx(2 / 3)


def test_rank_accuracy_breaks_ties_by_lower_index():
    # |M| = 2 and four pixels tie for the top: the two lowest indices win (one in M).
    R2 = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    M2 = np.array([[False, True], [True, False], [False, False]])
    assert rank_accuracy(R2, M2) == pytest.approx(1 / 2)


@pytest.mark.parametrize("seed", range(20))
def test_rank_accuracy_equals_stable_sort_definition(seed):
    rng = np.random.default_rng(seed)
    # Few distinct values, so ties at the k-th place are common.
    relevance = rng.integers(-3, 4, size=(9, 11)).astype(np.float32)
    mask = rng.random((9, 11)) < rng.uniform(0.1, 0.9)
    mask[0, 0], mask[-1, -1] = True, False
    k = int(mask.sum())
    top = np.argsort(-relevance.ravel(), kind="stable")[:k]
    assert rank_accuracy(relevance, mask) == pytest.approx(mask.ravel()[top].sum() / k)


def test_pointing_game_with_and_without_tolerance():
    assert pointing_game(R, M) is True
    off = np.zeros((5, 5), dtype=bool)
    off[0, 0] = True
    peak = np.zeros((5, 5))
    peak[2, 2] = 1.0
    assert pointing_game(peak, off) is False
    assert pointing_game(peak, off, tolerance=3) is True


@pytest.mark.parametrize("mask", [np.zeros((3, 3), bool), np.ones((3, 3), bool)], ids=["empty", "full"])
def test_empty_or_full_mask_is_an_error(mask):
    with pytest.raises(MetricError, match="empty|whole image"):
        positive_mass(R, mask)


def test_no_positive_relevance_is_an_error_not_nan():
    with pytest.raises(MetricError, match="no positive relevance"):
        positive_mass(-np.abs(R), M)


def test_shape_mismatch_is_an_error():
    with pytest.raises(MetricError, match="shape"):
        positive_mass(R, np.ones((2, 2), bool))


def test_channel_sum_and_region_metrics_bundle():
    stacked = np.stack([R, R, R]) / 3.0
    assert np.allclose(channel_sum(stacked), R)
    metrics = region_metrics(R, M)
    assert metrics.mass == pytest.approx(0.7)
    assert metrics.rank_accuracy == pytest.approx(2 / 3)
    assert metrics.pointing_game is True


def test_non_finite_relevance_is_an_error_not_a_value():
    relevance = np.ones((4, 4), np.float32)
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    relevance[3, 3] = np.nan
    with pytest.raises(MetricError, match=r"not finite \(1 of 16 values"):
        positive_mass(relevance, mask)
    huge = np.full((4, 4), np.finfo(np.float64).max, np.float64)
    with pytest.raises(MetricError, match="not finite"):
        region_metrics(huge, mask)  # the sums overflow to Inf


def test_area_and_lift_known_answers():
    # R has 0.7 of its positive mass in M, which covers 3 of the 9 pixels.
    metrics = region_metrics(R, M)
    assert metrics.area == pytest.approx(3 / 9)
    assert metrics.lift == pytest.approx(0.7 / (3 / 9))
    assert area_share(np.eye(4, dtype=bool)) == pytest.approx(0.25)
    assert lift(0.4, 0.1) == pytest.approx(4.0)


def test_lift_judges_small_and_large_regions_alike():
    # Uniform relevance: every region holds exactly its share, whatever its size.
    uniform = np.ones((10, 10))
    for rows in (1, 5, 9):
        mask = np.zeros((10, 10), bool)
        mask[:rows] = True
        assert region_metrics(uniform, mask).lift == pytest.approx(1.0)


def test_lift_of_an_empty_or_full_region_is_an_error():
    with pytest.raises(MetricError, match="lift is undefined"):
        lift(0.5, 0.0)
    with pytest.raises(MetricError, match="lift is undefined"):
        lift(1.0, 1.0)


def test_shares_stay_in_range_when_values_span_sixteen_orders_of_magnitude():
    # Found by the property test: summing inside and total separately made the negative
    # share 1.0000000000000002 and the signed share -1.0000000000000002.
    relevance = np.full((6, 5), -3.0, np.float32)
    relevance[0, 0] = relevance[1, 1] = 0.0
    relevance[1, 0] = -1.8014399e16
    relevance[1, 2] = 1.0
    mask = np.ones((6, 5), bool)
    mask[0, 0] = False
    metrics = region_metrics(relevance, mask, 0)
    assert metrics.negative == 1.0 and metrics.signed == -1.0 and metrics.mass == 1.0
