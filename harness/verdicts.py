"""From observations (prediction + relevance metrics) to a verdict and its sentence.

| variant            | fails when                                  | verdict           |
|--------------------|---------------------------------------------|-------------------|
| original           | label not predicted                         | false_negative    |
| original           | relevance lift (or mass) on the object low  | wrong_reasons     |
| instance_removed   | label still predicted                       | false_positive    |
| background_removed | label not predicted                         | false_negative    |
| sticker_added      | prediction changes / sticker share > thr.   | artifact_reliance |

"Predicted" means top-1 by default; the thresholds ``top_k`` (the class is among the k
most probable) and ``min_p`` (with at least this probability) widen or tighten it for
every rule that asks whether a class is predicted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import MetricError
from harness.metrics import RegionMetrics

# Metric values are reproducible to this absolute tolerance across batch sizes, -n and
# thread counts (docs/reliability.md); a value this close to its threshold may flip.
REPRODUCIBLE_TOLERANCE = 1e-5
TOLERANCE_TEXT = "1e-5"

VERDICTS = ("passed", "false_positive", "false_negative", "artifact_reliance", "wrong_reasons", "regression", "error")
VARIANT_TEXT = {
    "original": "original image",
    "instance_removed": "instance removed",
    "background_removed": "background removed",
    "sticker_added": "sticker added",
    "absent": "negative case",
}


@dataclass
class Check:
    """One comparison of a metric with its threshold (the report lists them all)."""

    name: str
    metric: str
    value: float | bool | str | None
    threshold: float | bool | str | None
    op: str
    passed: bool
    source: str | None = None  # where the threshold came from: built-in, suite, case, variant, command line


@dataclass
class Observation:
    """What the harness measured for one item."""

    variant: str
    label: str
    predicted: str
    p_predicted: float
    p_label: float
    explainer: str
    location: str
    object: RegionMetrics | None = None  # label's relevance vs the object
    removed: RegionMetrics | None = None  # label's relevance vs the removed region
    sticker: RegionMetrics | None = None  # predicted class's relevance vs the sticker
    original_predicted: str | None = None
    p_original: float | None = None
    undefined: dict[str, str] = field(default_factory=dict)  # region -> why its metrics are missing
    # Every class's probability; without it only top-1 questions can be answered.
    probabilities: dict[str, float] = field(default_factory=dict)

    def need(self, region: str) -> RegionMetrics:
        """Metrics of ``region`` that a verdict depends on; undefined ones are an error."""
        metrics = getattr(self, region)
        if metrics is None:
            reason = self.undefined.get(region, "not computed")
            raise MetricError(
                f"{VARIANT_TEXT[self.variant]}: relevance on the {region} region is undefined "
                f"({reason}); the verdict cannot be decided"
            )
        return metrics


@dataclass
class Judgement:
    """The verdict of one item."""

    verdict: str
    message: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def checks_as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.checks]


def pct(value: float | None) -> str:
    """Percent with no decimals, as experts read it ("4 %")."""
    return "n/a" if value is None else f"{100.0 * value:.0f} %"


def _suffix(obs: Observation) -> str:
    return f" ({obs.explainer}) — {obs.location}"


def _mass(metrics: RegionMetrics | None) -> float | None:
    return None if metrics is None else metrics.mass


def _outside(metrics: RegionMetrics | None) -> str:
    return pct(None if metrics is None else 1 - metrics.mass)


def _default_prediction(t: dict[str, Any]) -> bool:
    """Whether "predicted" means plain top-1 (the talk's meaning, and the default)."""
    return (t.get("top_k") or 1) == 1 and not t.get("min_p")


def standing(obs: Observation, cls: str) -> tuple[int | None, float | None]:
    """Rank (1 = most probable) and probability of ``cls`` in this observation."""
    if obs.probabilities:
        p = obs.probabilities.get(cls)
        if p is None:
            return None, None
        if cls == obs.predicted:
            return 1, p
        # A class tied with the winner still ranks behind it.
        return max(2, 1 + sum(other > p for other in obs.probabilities.values())), p
    if cls == obs.predicted:
        return 1, obs.p_predicted
    return None, obs.p_label if cls == obs.label else None


def is_predicted(obs: Observation, cls: str, t: dict[str, Any]) -> bool:
    """Whether ``cls`` counts as predicted: among the ``top_k`` most probable classes and
    with probability at least ``min_p`` (defaults: top-1, no floor)."""
    if _default_prediction(t):
        return obs.predicted == cls
    rank, p = standing(obs, cls)
    return rank is not None and p is not None and rank <= (t.get("top_k") or 1) and p >= (t.get("min_p") or 0.0)


def criterion(t: dict[str, Any]) -> str:
    """``"top-3, p >= 0.2"``: what "predicted" means under ``t``."""
    text = f"top-{t.get('top_k') or 1}"
    return text + (f", p >= {t['min_p']:g}" if t.get("min_p") else "")


def _standing_text(obs: Observation, cls: str) -> str:
    rank, p = standing(obs, cls)
    return f"rank {rank if rank is not None else '?'}, p={p:.2f}" if p is not None else "rank ?"


def _predicted_check(obs: Observation, cls: str | None, t: dict[str, Any], name: str, want: bool) -> Check:
    """Whether ``cls`` is predicted (``want``) or not; plain top-1 keeps the classic
    comparison of class names, anything else records rank and probability."""
    hit = cls is not None and is_predicted(obs, cls, t)
    if _default_prediction(t):
        return Check(name, "predicted", obs.predicted, cls, "==" if want else "!=", hit == want)
    value = f"{cls}: {_standing_text(obs, cls)}" if cls is not None else None
    return Check(name, "predicted", value, criterion(t), "within" if want else "not within", hit == want)


def _p_label(obs: Observation) -> float:
    # The same number when the label wins; p_label otherwise (it may count under top_k).
    return obs.p_predicted if obs.predicted == obs.label else obs.p_label


def _label_still_predicted(obs: Observation, t: dict[str, Any]) -> str:
    """How the label counts as predicted, for the false-positive sentences."""
    if _default_prediction(t):
        return f"(p={_p_label(obs):.2f})"
    return f"({_standing_text(obs, obs.label)}; {criterion(t)} counts as predicted)"


def _instead(obs: Observation, t: dict[str, Any]) -> str:
    """Why the label does not count as predicted, for the false-negative sentences."""
    if _default_prediction(t):
        return f"model predicts {obs.predicted} (p={obs.p_predicted:.2f}) instead of {obs.label} (p={obs.p_label:.2f})"
    return (
        f"{obs.label} is not predicted ({_standing_text(obs, obs.label)}; needs {criterion(t)}), "
        f"model predicts {obs.predicted} (p={obs.p_predicted:.2f})"
    )


def _reasons_checks(obs: Observation, t: dict[str, Any]) -> list[Check]:
    """The original image's "right reasons" checks that ``t`` switches on."""
    keys = ("min_object_mass", "min_object_lift", "min_rank_accuracy")
    if not (any(t.get(k) is not None for k in keys) or t.get("pointing_game")):
        return []
    obj = obs.need("object")
    checks = []
    if t.get("min_object_mass") is not None:
        limit = t["min_object_mass"]
        checks.append(Check("relevance on object", "mass_object", obj.mass, limit, ">=", obj.mass >= limit))
    if t.get("min_object_lift") is not None:
        if obj.lift is None:
            raise MetricError(f"{VARIANT_TEXT[obs.variant]}: the object's lift was not computed")
        limit = t["min_object_lift"]
        checks.append(
            Check("relevance on object for its size", "lift_object", obj.lift, limit, ">=", obj.lift >= limit)
        )
    if t.get("min_rank_accuracy") is not None:
        limit = t["min_rank_accuracy"]
        checks.append(
            Check(
                "relevance rank accuracy", "rank_accuracy", obj.rank_accuracy, limit, ">=", obj.rank_accuracy >= limit
            )
        )
    if t.get("pointing_game"):
        checks.append(Check("pointing game", "pointing_game", obj.pointing_game, True, "==", obj.pointing_game))
    return checks


def _reasons_detail(first: Check, obj: RegionMetrics) -> str:
    if first.metric == "mass_object":
        return (
            f"positive relevance on the object {pct(obj.mass)} < {pct(float(first.threshold or 0))} required, "
            f"outside {pct(1 - obj.mass)}"
        )
    if first.metric == "lift_object":
        return (
            f"positive relevance on the object {pct(obj.mass)} is {obj.lift:.1f}× its share of the pixels "
            f"({pct(obj.area)}), < {first.threshold}× required"
        )
    if first.metric == "rank_accuracy":
        return f"relevance rank accuracy on the object {obj.rank_accuracy:.2f} < {first.threshold}"
    return "the most relevant pixel lies outside the object (pointing game)"


def _lift_text(obs: Observation) -> str:
    obj = obs.object
    if obj is None or obj.lift is None:
        return ""
    return f" ({obj.lift:.1f}× its share of the pixels, {pct(obj.area)})"


def _judge_original(obs: Observation, t: dict[str, Any]) -> Judgement:
    checks = [_predicted_check(obs, obs.label, t, "label predicted", True)]
    if not checks[0].passed:
        return Judgement(
            "false_negative",
            f"false negative: original image, {_instead(obs, t)}; positive relevance for {obs.label} on the "
            f"object {pct(_mass(obs.object))}" + _suffix(obs),
            checks,
        )
    checks += _reasons_checks(obs, t)
    failed = [c for c in checks[1:] if not c.passed]
    if failed:
        assert obs.object is not None
        return Judgement(
            "wrong_reasons",
            f"wrong reasons: original image, model predicts {obs.label} (p={_p_label(obs):.2f}) "
            f"but {_reasons_detail(failed[0], obs.object)}" + _suffix(obs),
            checks,
        )
    return Judgement(
        "passed",
        f"passed: original image, {obs.label} predicted (p={_p_label(obs):.2f}), "
        f"positive relevance on the object {pct(_mass(obs.object))}{_lift_text(obs)}" + _suffix(obs),
        checks,
    )


def _judge_instance_removed(obs: Observation, t: dict[str, Any]) -> Judgement:
    check = _predicted_check(obs, obs.label, t, "label not predicted without the object", False)
    where = (
        f"positive relevance for {obs.label} inside removed region {pct(_mass(obs.removed))}, "
        f"outside {_outside(obs.removed)}"
    )
    if not check.passed:
        how = _label_still_predicted(obs, t)
        return Judgement(
            "false_positive",
            f"false positive: instance removed, model still predicts {obs.label} {how}; {where}" + _suffix(obs),
            [check],
        )
    return Judgement(
        "passed",
        f"passed: instance removed, model predicts {obs.predicted} (p={obs.p_predicted:.2f}), "
        f"{obs.label} p={obs.p_label:.2f}; {where}" + _suffix(obs),
        [check],
    )


def _judge_background_removed(obs: Observation, t: dict[str, Any]) -> Judgement:
    check = _predicted_check(obs, obs.label, t, "label predicted without the background", True)
    where = f"positive relevance for {obs.label} on the object {pct(_mass(obs.object))}"
    if not check.passed:
        return Judgement(
            "false_negative",
            f"false negative: background removed, {_instead(obs, t)}, so it needs the context; {where}" + _suffix(obs),
            [check],
        )
    return Judgement(
        "passed",
        f"passed: background removed, {obs.label} still predicted (p={_p_label(obs):.2f}); {where}" + _suffix(obs),
        [check],
    )


def _judge_sticker(obs: Observation, t: dict[str, Any]) -> Judgement:
    reference = obs.original_predicted
    # "Unchanged" = the original's prediction is still predicted with the sticker (top-1
    # by default: the same class wins).
    checks = [_predicted_check(obs, reference, t, "prediction unchanged by the sticker", True)]
    limit = t.get("max_sticker_share")
    share = f"positive relevance for {obs.predicted} on the sticker {pct(_mass(obs.sticker))}"
    if checks[0].passed and limit is not None:
        sticker = obs.need("sticker")
        checks.append(Check("relevance on sticker", "mass_sticker", sticker.mass, limit, "<=", sticker.mass <= limit))
    elif limit is not None and obs.sticker is not None:
        checks.append(
            Check("relevance on sticker", "mass_sticker", obs.sticker.mass, limit, "<=", obs.sticker.mass <= limit)
        )
    if not checks[0].passed:
        how = (
            ""
            if _default_prediction(t)
            else f"; {reference} {_standing_text(obs, reference or '')}, needs {criterion(t)}"
        )
        return Judgement(
            "artifact_reliance",
            f"artifact reliance: sticker added, prediction changes from {reference} to {obs.predicted} "
            f"(p={obs.p_predicted:.2f}; {obs.label} p={obs.p_label:.2f}{how}); {share}" + _suffix(obs),
            checks,
        )
    if len(checks) > 1 and not checks[1].passed:
        return Judgement(
            "artifact_reliance",
            f"artifact reliance: sticker added, prediction stays {obs.predicted} but {share} > "
            f"{pct(limit)} allowed" + _suffix(obs),
            checks,
        )
    return Judgement(
        "passed",
        f"passed: sticker added, prediction stays {obs.predicted} (p={obs.p_predicted:.2f}); {share}" + _suffix(obs),
        checks,
    )


# Which thresholds each check's metric compares with (for its ``source``).
_THRESHOLD_KEYS = {
    "predicted": ("top_k", "min_p"),
    "mass_object": ("min_object_mass",),
    "lift_object": ("min_object_lift",),
    "rank_accuracy": ("min_rank_accuracy",),
    "pointing_game": ("pointing_game", "pointing_tolerance"),
    "mass_sticker": ("max_sticker_share",),
}


def check_source(metric: str, sources: dict[str, str]) -> str | None:
    """``"case"``, or ``"top_k: case, min_p: built-in"`` when a check's thresholds differ."""
    found = {key: sources[key] for key in _THRESHOLD_KEYS.get(metric, ()) if key in sources}
    if not found:
        return None
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return ", ".join(f"{key}: {source}" for key, source in found.items())


def _judge_absent(obs: Observation, t: dict[str, Any]) -> Judgement:
    """``expect: absent``: the image shows no such object, so predicting the label is a false positive."""
    check = _predicted_check(obs, obs.label, t, "label not predicted (expect: absent)", False)
    if not check.passed:
        how = _label_still_predicted(obs, t)
        return Judgement(
            "false_positive",
            f"false positive: negative case (no {obs.label} in the image), model predicts {obs.label} {how}"
            + _suffix(obs),
            [check],
        )
    return Judgement(
        "passed",
        f"passed: negative case, model predicts {obs.predicted} (p={obs.p_predicted:.2f}), "
        f"{obs.label} p={obs.p_label:.2f}" + _suffix(obs),
        [check],
    )


_JUDGES = {
    "absent": _judge_absent,
    "original": _judge_original,
    "instance_removed": _judge_instance_removed,
    "background_removed": _judge_background_removed,
    "sticker_added": _judge_sticker,
}


def judge(obs: Observation, thresholds: dict[str, Any], sources: dict[str, str] | None = None) -> Judgement:
    """Apply the oracle table to one observation; a value within the reproducibility
    tolerance of its threshold is called borderline in the message. ``sources`` (threshold
    name -> level) fills each check's ``source``."""
    judgement = _JUDGES[obs.variant](obs, thresholds)
    if sources:
        for check in judgement.checks:
            check.source = check_source(check.metric, sources)
    notes = [note for check in judgement.checks if (note := borderline(check)) is not None]
    if notes:
        judgement.message += "; " + "; ".join(notes)
    return judgement


def borderline(check: Check) -> str | None:
    """``"mass 0.500 is within 1e-5 of the threshold 0.5: borderline"`` or ``None``."""
    value, threshold = check.value, check.threshold
    if isinstance(value, bool) or isinstance(threshold, bool):
        return None
    if not isinstance(value, (int, float)) or not isinstance(threshold, (int, float)):
        return None
    if abs(float(value) - float(threshold)) > REPRODUCIBLE_TOLERANCE:
        return None
    name = check.metric.removeprefix("mass_").replace("_", " ")
    name = {"object": "mass", "sticker": "sticker share", "lift object": "lift"}.get(name, name)
    return (
        f"{name} {float(value):.3f} is within {TOLERANCE_TEXT} of the threshold {float(threshold):g}: borderline "
        f"(it may flip between batch sizes, -n or thread counts)"
    )
