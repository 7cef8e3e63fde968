"""Agreement of two maps: rank correlation (ties averaged) and top-10 % overlap, known answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.agreement import agreement_columns, rank_correlation, ranks, top_mask, top_overlap


def test_ranks_average_ties() -> None:
    np.testing.assert_array_equal(ranks(np.array([3.0, 0.0, 0.0, 5.0, 0.0])), [4.0, 2.0, 2.0, 5.0, 2.0])


def test_rank_correlation_known_answers() -> None:
    a = np.arange(20, dtype=float).reshape(4, 5)
    assert rank_correlation(a, a**3) == pytest.approx(1.0)  # monotone: same order
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, np.ones_like(a)) is None  # a constant map has no order
    # Spearman by hand with ties: ranks [1.5, 1.5, 3, 4] and [1, 2, 3, 4] -> Pearson of the ranks.
    ra, rb = np.array([1.5, 1.5, 3, 4]), np.array([1.0, 2, 3, 4])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    expected = (ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb))
    assert rank_correlation(np.array([0.0, 0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0, 9.0])) == pytest.approx(expected)


def test_rank_correlation_equals_scipy_on_random_maps_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = np.maximum(rng.normal(size=(16, 16)), 0)  # half zeros, like a ReLU'd Grad-CAM map
        b = rng.normal(size=(16, 16)) + a
        assert rank_correlation(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)


def test_top_overlap_known_answer() -> None:
    a = np.arange(100, dtype=float).reshape(10, 10)  # top 10 %: pixels 90..99
    b = a.copy()
    b.flat[90:95] = -1  # b's top 10: 85..89 and 95..99 -> shares 5 of 15 distinct pixels
    assert top_mask(a).sum() == 10 and top_mask(a)[90:].all()
    assert top_overlap(a, a) == 1.0
    assert top_overlap(a, b) == pytest.approx(5 / 15)
    # Ties at the boundary go to the lower pixel index: a constant map's top is its first 10 pixels.
    assert top_mask(np.zeros((10, 10)))[:10].all()


def test_columns_and_refusals() -> None:
    a = np.arange(100, dtype=float).reshape(10, 10)
    assert agreement_columns(a, a) == {"agreement_rank": pytest.approx(1.0), "agreement_top10": 1.0}
    bad = a.copy()
    bad[0, 0] = np.nan
    assert agreement_columns(a, bad) == {"agreement_rank": None, "agreement_top10": None}
    with pytest.raises(ValueError, match="different"):
        top_overlap(a, a[:5])


def test_verdict_disagreements_group_rows_by_image() -> None:
    from harness.agreement import verdict_disagreements

    def row(case: str, variant: str, explainer: str, verdict: str, sweep: str | None = None) -> dict[str, Any]:
        return {
            "suite": "s.xai.yaml",
            "case_id": case,
            "variant": variant,
            "sweep": sweep,
            "model": "m",
            "explainer": explainer,
            "verdict": verdict,
        }

    rows: list[dict[str, Any]] = [
        row("a", "original", "lrp/epsilon_plus_flat", "passed"),
        row("a", "original", "cam/gradcam", "wrong_reasons"),
        row("a", "sticker_added", "lrp/epsilon_plus_flat", "artifact_reliance"),
        row("a", "sticker_added", "cam/gradcam", "artifact_reliance"),
        row("b", "original", "lrp/epsilon_plus_flat", "passed", sweep="1"),
        row("b", "original", "cam/gradcam", "passed", sweep="2"),  # another image: no pair
        {"suite": "s.xai.yaml", "case_id": "", "variant": "", "explainer": "", "verdict": "error"},
    ]
    assert verdict_disagreements(rows) == [
        {
            "suite": "s.xai.yaml",
            "case_id": "a",
            "variant": "original",
            "sweep": None,
            "model": "m",
            "verdicts": {"lrp/epsilon_plus_flat": "passed", "cam/gradcam": "wrong_reasons"},
        }
    ]
