"""From observations (prediction + relevance metrics) to a verdict and its sentence.

| variant            | fails when                                  | verdict           |
|--------------------|---------------------------------------------|-------------------|
| original           | label not predicted                         | false_negative    |
| original           | relevance mass on the object < threshold    | wrong_reasons     |
| instance_removed   | label still predicted                       | false_positive    |
| background_removed | label not predicted                         | false_negative    |
| sticker_added      | prediction changes / sticker share > thr.   | artifact_reliance |
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

VERDICTS = ("passed", "false_positive", "false_negative", "artifact_reliance", "wrong_reasons", "error")
VARIANT_TEXT = {
    "original": "original image",
    "instance_removed": "instance removed",
    "background_removed": "background removed",
    "sticker_added": "sticker added",
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


def _judge_original(obs: Observation, t: dict[str, Any]) -> Judgement:
    checks = [Check("label predicted", "predicted", obs.predicted, obs.label, "==", obs.predicted == obs.label)]
    if not checks[0].passed:
        return Judgement(
            "false_negative",
            f"false negative: original image, model predicts {obs.predicted} (p={obs.p_predicted:.2f}) "
            f"instead of {obs.label} (p={obs.p_label:.2f}); positive relevance for {obs.label} on the "
            f"object {pct(_mass(obs.object))}" + _suffix(obs),
            checks,
        )
    needs = t.get("min_object_mass") is not None or t.get("min_rank_accuracy") is not None or t.get("pointing_game")
    failed: list[Check] = []
    if needs:
        obj = obs.need("object")
        if t.get("min_object_mass") is not None:
            checks.append(
                Check(
                    "relevance on object",
                    "mass_object",
                    obj.mass,
                    t["min_object_mass"],
                    ">=",
                    obj.mass >= t["min_object_mass"],
                )
            )
        if t.get("min_rank_accuracy") is not None:
            checks.append(
                Check(
                    "relevance rank accuracy",
                    "rank_accuracy",
                    obj.rank_accuracy,
                    t["min_rank_accuracy"],
                    ">=",
                    obj.rank_accuracy >= t["min_rank_accuracy"],
                )
            )
        if t.get("pointing_game"):
            checks.append(Check("pointing game", "pointing_game", obj.pointing_game, True, "==", obj.pointing_game))
        failed = [c for c in checks[1:] if not c.passed]
    if failed:
        first = failed[0]
        if first.metric == "mass_object":
            detail = (
                f"positive relevance on the object {pct(obj.mass)} < {pct(t['min_object_mass'])} required, "
                f"outside {pct(1 - obj.mass)}"
            )
        elif first.metric == "rank_accuracy":
            detail = f"relevance rank accuracy on the object {obj.rank_accuracy:.2f} < {first.threshold}"
        else:
            detail = "the most relevant pixel lies outside the object (pointing game)"
        return Judgement(
            "wrong_reasons",
            f"wrong reasons: original image, model predicts {obs.label} (p={obs.p_predicted:.2f}) "
            f"but {detail}" + _suffix(obs),
            checks,
        )
    return Judgement(
        "passed",
        f"passed: original image, {obs.label} predicted (p={obs.p_predicted:.2f}), "
        f"positive relevance on the object {pct(_mass(obs.object))}" + _suffix(obs),
        checks,
    )


def _judge_instance_removed(obs: Observation, t: dict[str, Any]) -> Judgement:
    check = Check(
        "label not predicted without the object",
        "predicted",
        obs.predicted,
        obs.label,
        "!=",
        obs.predicted != obs.label,
    )
    where = (
        f"positive relevance for {obs.label} inside removed region {pct(_mass(obs.removed))}, "
        f"outside {_outside(obs.removed)}"
    )
    if not check.passed:
        return Judgement(
            "false_positive",
            f"false positive: instance removed, model still predicts {obs.label} "
            f"(p={obs.p_predicted:.2f}); {where}" + _suffix(obs),
            [check],
        )
    return Judgement(
        "passed",
        f"passed: instance removed, model predicts {obs.predicted} (p={obs.p_predicted:.2f}), "
        f"{obs.label} p={obs.p_label:.2f}; {where}" + _suffix(obs),
        [check],
    )


def _judge_background_removed(obs: Observation, t: dict[str, Any]) -> Judgement:
    check = Check(
        "label predicted without the background",
        "predicted",
        obs.predicted,
        obs.label,
        "==",
        obs.predicted == obs.label,
    )
    where = f"positive relevance for {obs.label} on the object {pct(_mass(obs.object))}"
    if not check.passed:
        return Judgement(
            "false_negative",
            f"false negative: background removed, model predicts {obs.predicted} "
            f"(p={obs.p_predicted:.2f}) instead of {obs.label} (p={obs.p_label:.2f}), so it needs "
            f"the context; {where}" + _suffix(obs),
            [check],
        )
    return Judgement(
        "passed",
        f"passed: background removed, {obs.label} still predicted (p={obs.p_predicted:.2f}); {where}" + _suffix(obs),
        [check],
    )


def _judge_sticker(obs: Observation, t: dict[str, Any]) -> Judgement:
    reference = obs.original_predicted
    checks = [
        Check(
            "prediction unchanged by the sticker",
            "predicted",
            obs.predicted,
            reference,
            "==",
            obs.predicted == reference,
        )
    ]
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
        return Judgement(
            "artifact_reliance",
            f"artifact reliance: sticker added, prediction changes from {reference} to {obs.predicted} "
            f"(p={obs.p_predicted:.2f}; {obs.label} p={obs.p_label:.2f}); {share}" + _suffix(obs),
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


_JUDGES = {
    "original": _judge_original,
    "instance_removed": _judge_instance_removed,
    "background_removed": _judge_background_removed,
    "sticker_added": _judge_sticker,
}


def judge(obs: Observation, thresholds: dict[str, Any]) -> Judgement:
    """Apply the oracle table to one observation; a value within the reproducibility
    tolerance of its threshold is called borderline in the message."""
    judgement = _JUDGES[obs.variant](obs, thresholds)
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
    name = {"object": "mass", "sticker": "sticker share"}.get(name, name)
    return (
        f"{name} {float(value):.3f} is within {TOLERANCE_TEXT} of the threshold {float(threshold):g}: borderline "
        f"(it may flip between batch sizes, -n or thread counts)"
    )
