"""Known answers for the Wilson interval and the per-class figures."""

from __future__ import annotations

import pyarrow as pa
import pytest

from harness.scan.stats import summarise, wilson
from harness.scan.worker import SCHEMA


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.277533),  # the classic 0/10 upper bound
        (5, 10, 0.236593, 0.763407),
        (10, 10, 0.722468, 1.0),
        (56, 100, 0.462281, 0.653280),
    ],
)
def test_wilson_known_answers(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-6)
    assert hi == pytest.approx(high, abs=1e-6)
    assert lo <= k / n <= hi


def test_wilson_without_trials_is_uninformative() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0..3"):
        wilson(4, 3)


def _table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def test_summary_counts_only_measured_rows() -> None:
    rows = [
        {"path": "a", "label": "yield", "predicted": "yield", "mass": 0.2, "mostly_outside": True},
        {"path": "b", "label": "yield", "predicted": "yield", "mass": 0.8, "mostly_outside": False},
        {"path": "c", "label": "yield", "predicted": "stop", "mass": 0.1, "mostly_outside": True},
        {"path": "d", "label": "yield", "error": "cannot decode image"},
        {"path": "e", "label": "yield", "predicted": "yield"},  # no region
        {"path": "f", "label": "stop", "predicted": "stop"},
    ]
    yield_summary, stop_summary = summarise(_table(rows))
    assert (yield_summary.images, yield_summary.errors, yield_summary.with_region) == (5, 1, 3)
    assert yield_summary.mostly_outside == 2
    assert yield_summary.share_outside == pytest.approx(2 / 3)
    assert (yield_summary.ci_low, yield_summary.ci_high) == pytest.approx(wilson(2, 3))
    assert yield_summary.predicted_as_label == 3
    assert yield_summary.median_mass == pytest.approx(0.2)
    assert "2 of 3 images" in yield_summary.sentence(0.5)
    assert stop_summary.share_outside is None and stop_summary.ci_low is None
    assert "no object regions" in stop_summary.sentence(0.5)
