"""Known answers of the explanation health rules (harness.health)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.health import DEFAULT_CONSERVATION, NEAR_ZERO, band_of, measure, median, problem

BAND = (0.5, 2.0)


def _map(total: float, size: int = 12) -> np.ndarray:
    values = np.full(size, total / size, np.float64)
    return values.reshape(3, 2, 2)


def test_measure_records_the_row_columns() -> None:
    health = measure(np.array([4.0, -2.0]), 0, _map(3.0))
    assert health.columns() == pytest.approx(
        {"target_logit": 4.0, "relevance_sum": 3.0, "conservation": 0.75, "relevance_finite": True}
    )
    assert health.logit_scale == 4.0 and not health.near_zero


@pytest.mark.parametrize(
    ("total", "healthy"),
    [(2.0, True), (1.0 - 1e-9, False), (8.0, True), (8.0 + 1e-6, False), (-1.0, False), (400.0, False)],
)
def test_ratio_band_edges(total: float, healthy: bool) -> None:
    text = problem(measure(np.array([4.0, 1.0]), 0, _map(total)), True, BAND)
    assert (text is None) == healthy, text


def test_negative_logit_uses_the_same_ratio() -> None:
    # R / z = (-6) / (-4) = 1.5: same sign, inside the band.
    assert problem(measure(np.array([-4.0, 1.0]), 0, _map(-6.0)), True, BAND) is None
    text = problem(measure(np.array([-4.0, 1.0]), 0, _map(6.0)), True, BAND)
    assert text == "relevance sums to 6 for a target logit of -4: conservation -1.5 outside [0.5, 2]"


def test_near_zero_logit_is_judged_in_absolute_terms() -> None:
    # Logit 0.01 of a scale 10: the ratio 30 means nothing; |R - z| <= 0.1 * 10 * max(0.5, 1) = 1.
    logits = np.array([0.01, 10.0])
    assert problem(measure(logits, 0, _map(0.3)), True, BAND) is None
    assert problem(measure(logits, 0, _map(-0.98)), True, BAND) is None
    text = problem(measure(logits, 0, _map(1.2)), True, BAND)
    assert text is not None and "near zero" in text and "exceeds 1" in text
    assert NEAR_ZERO == 0.1


def test_all_zero_map() -> None:
    text = problem(measure(np.array([3.0, 1.0]), 0, np.zeros((3, 2, 2))), False, None)
    assert text == "the relevance map is all zero for a target logit of 3"
    # A zero logit explained by a zero map is what conservation demands.
    assert problem(measure(np.array([0.0, 5.0]), 0, np.zeros((3, 2, 2))), True, BAND) is None


def test_non_finite_maps_whatever_the_explainer() -> None:
    values = _map(1.0)
    values[0, 0, 0] = np.nan
    values[1, 0, 0] = np.inf
    health = measure(np.array([1.0, 0.0]), 0, values)
    assert health.columns()["relevance_finite"] is False and health.conservation is None
    assert problem(health, False, None) == "relevance is not finite (NaN/Inf in 2 of 12 values)"
    values[1, 0, 0] = 0.0
    assert (
        problem(measure(np.array([1.0, 0.0]), 0, values), True, BAND)
        == "relevance is not finite (NaN in 1 of 12 values)"
    )


def test_gradient_and_switched_off_band_skip_conservation() -> None:
    blown = measure(np.array([1.0, 0.0]), 0, _map(100.0))
    assert problem(blown, True, BAND) is not None
    assert problem(blown, False, BAND) is None
    assert problem(blown, True, None) is None


def test_band_from_thresholds_and_median() -> None:
    assert band_of({}) == DEFAULT_CONSERVATION
    assert band_of({"conservation": [0.2, 3]}) == (0.2, 3.0)
    assert band_of({"conservation": None}) is None
    assert median([1.0, 3.0, float("nan"), 2.0]) == 2.0 and median([]) is None


# ----------------------------------------------------------------------------- properties

finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)
logit_rows = arrays(np.float32, st.integers(2, 6), elements=st.floats(-1e4, 1e4, width=32))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    logits=logit_rows,
    values=arrays(np.float32, (3, 4, 4), elements=finite_or_not),
    conservative=st.booleans(),
    band=st.one_of(st.none(), st.tuples(st.floats(-10, 1), st.floats(1.01, 20))),
)
def test_a_map_is_judged_healthy_only_when_every_rule_holds(
    logits: np.ndarray, values: np.ndarray, conservative: bool, band: tuple[float, float] | None
) -> None:
    health = measure(logits, 0, values)
    text = problem(health, conservative, band)
    if text is not None:
        return
    assert np.isfinite(values).all()
    assert not (health.all_zero and not health.near_zero)
    if conservative and band is not None:
        lo, hi = band
        if health.near_zero:
            assert abs(health.relevance_sum - health.target_logit) <= NEAR_ZERO * health.logit_scale * max(
                1 - lo, hi - 1
            )
        else:
            assert lo <= health.relevance_sum / health.target_logit <= hi


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    relevance=arrays(np.float32, (6, 5), elements=finite_or_not),
    mask=arrays(np.bool_, (6, 5)),
    tolerance=st.integers(0, 3),
)
def test_metrics_are_finite_and_in_range_or_an_error(relevance: np.ndarray, mask: np.ndarray, tolerance: int) -> None:
    from harness.errors import MetricError
    from harness.metrics import region_metrics

    try:
        metrics = region_metrics(relevance, mask, tolerance)
    except MetricError:
        return
    assert np.isfinite(relevance).all() and mask.any() and not mask.all()
    assert 0.0 <= metrics.mass <= 1.0 and 0.0 <= metrics.rank_accuracy <= 1.0
    assert metrics.signed is None or -1.0 - 1e-9 <= metrics.signed <= 1.0 + 1e-9
    assert metrics.negative is None or 0.0 <= metrics.negative <= 1.0
