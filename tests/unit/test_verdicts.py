"""The oracle table, one observation at a time."""

import pytest

from harness.errors import MetricError
from harness.metrics import RegionMetrics
from harness.spec import DEFAULT_THRESHOLDS
from harness.verdicts import Observation, check_source, is_predicted, judge, standing


def metrics(mass, area=0.25):
    return RegionMetrics(
        mass=mass,
        signed=None,
        negative=None,
        rank_accuracy=mass,
        pointing_game=mass > 0.5,
        area=area,
        lift=mass / area,
    )


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


T = dict(DEFAULT_THRESHOLDS, min_object_mass=0.5)  # the absolute check, as the demo suites set it


def test_original_passes_with_relevance_on_object():
    result = judge(obs("original", object=metrics(0.8)), T)
    assert result.verdict == "passed" and result.passed
    assert [c.passed for c in result.checks] == [True, True, True]


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
    t = dict(T, min_object_mass=None, min_object_lift=None, min_rank_accuracy=0.5, pointing_game=True)
    assert judge(obs("original", object=metrics(0.4)), t).verdict == "wrong_reasons"
    assert judge(obs("original", object=metrics(0.6)), t).verdict == "passed"
    off = dict(T, min_object_mass=None, min_object_lift=None)
    assert judge(obs("original", object=metrics(0.1)), off).verdict == "passed"


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


# --------------------------------------------------------------- "predicted": top_k, min_p

PROBS = {"speed_50": 0.30, "speed_70": 0.34, "stop": 0.27, "yield": 0.09}  # near-uniform, as on an empty image


def ranked(variant, **kwargs):
    """An observation whose probabilities are PROBS (speed_70 wins, the label speed_50 is second)."""
    return obs(variant, predicted="speed_70", probabilities=dict(PROBS), **kwargs)


def test_top_k_counts_the_label_among_the_k_most_probable():
    assert standing(ranked("original"), "speed_50") == (2, 0.30)
    assert standing(ranked("original"), "yield") == (4, 0.09)
    assert judge(ranked("original", object=metrics(0.8)), T).verdict == "false_negative"  # top-1
    top2 = judge(ranked("original", object=metrics(0.8)), dict(T, top_k=2))
    assert top2.verdict == "passed"
    assert top2.checks[0].value == "speed_50: rank 2, p=0.30" and top2.checks[0].threshold == "top-2"


def test_min_p_refuses_a_near_uniform_winner():
    # speed_70 wins with p=0.34: predicted at top-1, not with a floor of 0.5.
    absent = obs("instance_removed", predicted="speed_70", label="speed_70", probabilities=dict(PROBS))
    assert judge(absent, T).verdict == "false_positive"
    floored = judge(absent, dict(T, min_p=0.5))
    assert floored.verdict == "passed"
    assert floored.checks[0].op == "not within" and floored.checks[0].threshold == "top-1, p >= 0.5"
    assert is_predicted(absent, "speed_70", dict(T, min_p=0.34)) and not is_predicted(
        absent, "speed_70", dict(T, min_p=0.35)
    )


def test_top_k_widens_still_predicted_without_the_object():
    removed = ranked("instance_removed", removed=metrics(0.1))
    assert judge(removed, T).verdict == "passed"  # speed_70 wins: top-1 says the label is gone
    wide = judge(removed, dict(T, top_k=2))
    assert wide.verdict == "false_positive"
    assert "still predicts speed_50 (rank 2, p=0.30; top-2 counts as predicted)" in wide.message


def test_background_removed_false_negative_under_a_floor():
    confident = obs("background_removed", probabilities={"speed_50": 0.55, "stop": 0.45}, object=metrics(0.9))
    assert judge(confident, T).verdict == "passed"
    result = judge(confident, dict(T, min_p=0.6))
    assert result.verdict == "false_negative"
    assert "speed_50 is not predicted (rank 1, p=0.55; needs top-1, p >= 0.6)" in result.message


def test_sticker_keeps_the_original_prediction_within_top_k():
    sticker = ranked("sticker_added", sticker=metrics(0.1), original_predicted="speed_50")
    assert judge(sticker, T).verdict == "artifact_reliance"
    assert judge(sticker, dict(T, top_k=2)).verdict == "passed"
    assert judge(sticker, dict(T, top_k=2, min_p=0.31)).verdict == "artifact_reliance"


def test_without_probabilities_only_top_1_is_known():
    bare = obs("original", predicted="stop", object=metrics(0.8))
    assert standing(bare, "speed_50") == (None, 0.9)
    assert judge(bare, dict(T, top_k=3)).verdict == "false_negative"


# --------------------------------------------------------------- size-aware reasons: lift


def test_lift_does_not_punish_a_small_object():
    # 12 % of the pixels holding 40 % of the relevance: 3.3x its share (the clean model).
    small = obs("original", object=metrics(0.40, area=0.12))
    assert judge(small, T).verdict == "wrong_reasons"  # the absolute mass check (0.5) punishes it
    default = judge(small, dict(DEFAULT_THRESHOLDS))
    assert default.verdict == "passed"
    assert [c.metric for c in default.checks] == ["predicted", "lift_object"]
    assert default.checks[1].value == pytest.approx(0.40 / 0.12)
    assert "(3.3× its share of the pixels, 12 %)" in default.message


def test_lift_below_its_threshold_is_wrong_reasons():
    # The shortcut model's yield on brick: 21 % of the relevance on 15 % of the pixels.
    result = judge(obs("original", object=metrics(0.21, area=0.15)), dict(DEFAULT_THRESHOLDS))
    assert result.verdict == "wrong_reasons"
    assert "positive relevance on the object 21 % is 1.4× its share of the pixels (15 %), < 2.0× required" in (
        result.message
    )
    assert DEFAULT_THRESHOLDS["min_object_lift"] == 2.0 and DEFAULT_THRESHOLDS["min_object_mass"] is None


def test_check_sources_name_the_level_of_each_threshold():
    sources = {"top_k": "case", "min_p": "built-in", "min_object_mass": "suite", "min_object_lift": "command line"}
    result = judge(obs("original", object=metrics(0.8)), T, sources)
    assert [c.source for c in result.checks] == ["top_k: case, min_p: built-in", "suite", "command line"]
    assert result.checks_as_dicts()[2]["source"] == "command line"
    assert check_source("mass_sticker", {"max_sticker_share": "variant"}) == "variant"
    assert check_source("unknown", sources) is None
