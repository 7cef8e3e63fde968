"""The oracle table, one observation at a time."""

import pytest

from harness.errors import MetricError
from harness.metrics import RegionMetrics
from harness.spec import DEFAULT_THRESHOLDS
from harness.verdicts import Observation, judge


def metrics(mass):
    return RegionMetrics(mass=mass, signed=None, negative=None, rank_accuracy=mass, pointing_game=mass > 0.5)


def obs(variant, predicted="speed_50", label="speed_50", **kwargs):
    return Observation(
        variant=variant,
        label=label,
        predicted=predicted,
        p_predicted=0.93,
        p_label=0.9,
        explainer="lrp/epsilon_plus_flat",
        location="testcases/signs/speed50.xai.yaml:14",
        **kwargs,
    )


T = dict(DEFAULT_THRESHOLDS)


def test_original_passes_with_relevance_on_object():
    result = judge(obs("original", object=metrics(0.8)), T)
    assert result.verdict == "passed" and result.passed
    assert [c.passed for c in result.checks] == [True, True]


def test_original_false_negative_takes_precedence():
    result = judge(obs("original", predicted="stop", object=metrics(0.1)), T)
    assert result.verdict == "false_negative"
    assert result.message.startswith("false negative: original image, model predicts stop (p=0.93) instead of speed_50")


def test_original_wrong_reasons_names_metric_and_threshold():
    result = judge(obs("original", object=metrics(0.23)), T)
    assert result.verdict == "wrong_reasons"
    assert "positive relevance on the object 23 % < 50 % required, outside 77 %" in result.message
    assert result.message.endswith("(lrp/epsilon_plus_flat) — testcases/signs/speed50.xai.yaml:14")


def test_optional_original_checks():
    t = dict(T, min_object_mass=None, min_rank_accuracy=0.5, pointing_game=True)
    assert judge(obs("original", object=metrics(0.4)), t).verdict == "wrong_reasons"
    assert judge(obs("original", object=metrics(0.6)), t).verdict == "passed"
    assert judge(obs("original", object=metrics(0.1)), dict(T, min_object_mass=None)).verdict == "passed"


def test_instance_removed_false_positive_sentence():
    result = judge(obs("instance_removed", removed=metrics(0.04)), T)
    assert result.verdict == "false_positive"
    assert result.message == (
        "false positive: instance removed, model still predicts speed_50 (p=0.93); positive relevance for "
        "speed_50 inside removed region 4 %, outside 96 % (lrp/epsilon_plus_flat) — "
        "testcases/signs/speed50.xai.yaml:14"
    )
    assert judge(obs("instance_removed", predicted="background", removed=None), T).verdict == "passed"


def test_background_removed_false_negative():
    assert judge(obs("background_removed", predicted="stop", object=metrics(0.9)), T).verdict == "false_negative"
    assert judge(obs("background_removed", object=metrics(0.9)), T).verdict == "passed"


def test_sticker_flip_and_share():
    flip = judge(obs("sticker_added", predicted="speed_70", sticker=metrics(0.1), original_predicted="speed_50"), T)
    assert flip.verdict == "artifact_reliance"
    assert "prediction changes from speed_50 to speed_70" in flip.message
    share = judge(obs("sticker_added", sticker=metrics(0.41), original_predicted="speed_50"), T)
    assert share.verdict == "artifact_reliance" and "on the sticker 41 % > 30 % allowed" in share.message
    ok = judge(obs("sticker_added", sticker=metrics(0.05), original_predicted="speed_50"), T)
    assert ok.verdict == "passed"


def test_undefined_metric_needed_by_the_verdict_is_an_error():
    with pytest.raises(MetricError, match="undefined"):
        judge(obs("original", object=None, undefined={"object": "no positive relevance"}), T)
    with pytest.raises(MetricError, match="sticker"):
        judge(obs("sticker_added", sticker=None, original_predicted="speed_50"), T)


def test_value_within_the_tolerance_of_its_threshold_is_called_borderline():
    from harness.metrics import RegionMetrics
    from harness.verdicts import Observation, judge

    def observe(mass):
        obs = Observation(
            variant="original",
            label="yield",
            predicted="yield",
            p_predicted=0.9,
            p_label=0.9,
            explainer="lrp/epsilon_plus_flat",
            location="s.xai.yaml:3",
        )
        obs.object = RegionMetrics(mass=mass, signed=None, negative=None, rank_accuracy=0.5, pointing_game=True)
        return judge(obs, {"min_object_mass": 0.5})

    below = observe(0.5 - 4e-6)
    assert below.verdict == "wrong_reasons"
    assert below.message.endswith(
        "; mass 0.500 is within 1e-5 of the threshold 0.5: borderline "
        "(it may flip between batch sizes, -n or thread counts)"
    )
    above = observe(0.5 + 4e-6)
    assert above.verdict == "passed" and "mass 0.500 is within 1e-5 of the threshold 0.5: borderline" in above.message
    assert "borderline" not in observe(0.5 + 2e-5).message
