"""Judge one item from the engine's results: metrics, verdict, result row, pictures."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import health as health_checks
from harness import render
from harness.baseline import Match, compare, match_columns
from harness.errors import HarnessError, MetricError
from harness.imageio import write_rgb
from harness.metrics import RegionMetrics, region_metrics
from harness.render import heatmap_scale
from harness.verdicts import Judgement, Observation, judge

if TYPE_CHECKING:  # the results table (xdist controller) needs the columns, not torch
    from harness.engine import Engine, ImageKey


@dataclass
class ItemContext:
    """Everything about an item that does not come from the model."""

    suite: str  # path relative to rootdir
    line: int
    case_id: str
    description: str
    variant: str
    model: str
    explainer: str
    label: str
    thresholds: dict[str, Any]
    key: ImageKey
    original_key: ImageKey | None = None
    nodeid: str = ""
    # threshold name -> where it came from (built-in, suite, case, variant, command line)
    threshold_sources: dict[str, str] = field(default_factory=dict)
    judge: str = ""  # the verdict rule when it is not the variant's name (steps; "absent" for negative cases)
    sweep: str | None = None  # a swept variant's value
    model_slot: int | None = None  # the model's role: its position in the models the suite runs under
    baseline: Match | None = None  # with --xai-baseline: the item's row in the baseline run, if any

    @property
    def rule(self) -> str:
        return self.judge or self.variant

    @property
    def location(self) -> str:
        return f"{self.suite}:{self.line}"


class UnreliableExplanation(HarnessError):
    """The item's explanation cannot serve as evidence; carries the health columns so
    that the error row still records what was measured."""

    def __init__(self, message: str, columns: dict[str, Any]) -> None:
        super().__init__(message)
        self.columns = columns


@dataclass
class Evaluation:
    """Observation and judgement of one item, plus the row for tables and the report."""

    observation: Observation
    judgement: Judgement
    row: dict[str, Any] = field(default_factory=dict)


RESULT_COLUMNS = [
    "suite",
    "line",
    "case_id",
    "variant",
    "sweep",
    "model",
    "explainer",
    "label",
    "predicted",
    "p_predicted",
    "p_label",
    "mass_object",
    "mass_removed",
    "mass_sticker",
    "verdict",
    "passed",
    "original_predicted",
    "signed_object",
    "negative_object",
    "rank_accuracy",
    "pointing_game",
    "object_area",
    "object_lift",
    "predicted_explained",
    "mass_object_predicted",
    "target_logit",
    "relevance_sum",
    "conservation",
    "relevance_finite",
    "device",
    "description",
    "message",
    "nodeid",
]


def row_properties(row: dict[str, Any]) -> list[tuple[str, Any]]:
    """An item's user properties for ``row``: the whole row under ``"xai"``, what the
    results table and the HTML report read (JUnit XML shows it flattened, one
    ``xai.<column>`` property per value: :mod:`harness.junit`)."""
    return [("xai", row)]


def base_row(ctx: ItemContext, device: str) -> dict[str, Any]:
    """A row with the item's identity and empty measurements (used for errors too)."""
    row: dict[str, Any] = {column: None for column in RESULT_COLUMNS}
    row.update(
        suite=ctx.suite,
        line=ctx.line,
        case_id=ctx.case_id,
        description=ctx.description,
        variant=ctx.variant,
        sweep=ctx.sweep,
        model=ctx.model,
        explainer=ctx.explainer,
        label=ctx.label,
        device=device,
        nodeid=ctx.nodeid,
        checks=[],
        images={},
        heatmap_scale=None,
        thresholds=dict(ctx.thresholds),
        threshold_sources=dict(ctx.threshold_sources),
        model_slot=ctx.model_slot,
    )
    if ctx.baseline is not None:
        row.update(match_columns(ctx.baseline))
    return row


def _safe(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "x"
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def evaluate(ctx: ItemContext, engine: Engine, assets_dir: Path | None, writer: Any = None) -> Evaluation:
    """Compute metrics and the verdict of one item; write its pictures under ``assets_dir``.

    Raises
    ------
    HarnessError
        If the image could not be produced, its explanation is unhealthy
        (:class:`UnreliableExplanation`) or a metric is undefined or not finite: an error
        of the case, never a silent pass. Anything unexpected is raised as a
        HarnessError too, so it stays this item's error.
    """
    try:
        return _evaluate(ctx, engine, assets_dir, writer)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - one item's failure must stay its own
        from harness.engine import describe

        raise HarnessError(f"evaluating the item failed: {describe(exc)}") from exc


def _evaluate(ctx: ItemContext, engine: Engine, assets_dir: Path | None, writer: Any) -> Evaluation:
    if ctx.original_key is not None:
        # Planned before the sticker image: asking for it first puts both in one batch.
        engine.result(ctx.original_key)
    result = engine.result(ctx.key)
    if result.error is not None:
        raise result.error
    assert result.variant is not None and result.probs is not None and result.predicted is not None
    model = engine.model(ctx.model)
    classes = model.classes
    label_index = classes.index(ctx.label)
    variant = result.variant
    override = engine.conservation_override
    if override is not None:
        ctx = replace(
            ctx,
            thresholds={**ctx.thresholds, "conservation": None if override == "off" else list(override)},
            threshold_sources={**ctx.threshold_sources, "conservation": "command line"},
        )
    health = _check_health(ctx, result, classes)
    tolerance = int(ctx.thresholds.get("pointing_tolerance") or 0)
    obs = Observation(
        variant=ctx.rule,
        label=ctx.label,
        predicted=classes[result.predicted],
        p_predicted=_finite(float(result.probs[result.predicted]), "probability of the predicted class"),
        p_label=_finite(float(result.probs[label_index]), "probability of the label"),
        explainer=ctx.explainer,
        location=ctx.location,
        probabilities={name: float(p) for name, p in zip(classes, result.probs)},
    )
    assert result.relevance_label is not None
    # Metrics are computed softly: one that is undefined (no positive relevance, e.g.
    # for a class the model rejects) only becomes an error if the verdict needs it.
    obs.object = _soft(obs, "object", result.relevance_label, variant.object_mask, tolerance)
    if variant.removed_mask is not None:  # every removed region, also of a variant made of steps
        obs.removed = _soft(obs, "removed", result.relevance_label, variant.removed_mask, tolerance)
    if ctx.rule == "sticker_added" and variant.sticker_mask is not None:
        assert result.relevance_predicted is not None, "planned with predicted_relevance"
        obs.sticker = _soft(obs, "sticker", result.relevance_predicted, variant.sticker_mask, tolerance)
        assert ctx.original_key is not None
        original = engine.result(ctx.original_key)
        if original.error is not None:
            raise HarnessError(f"the original image, needed to compare the prediction, failed: {original.error}")
        predicted, probs = engine.prediction(ctx.original_key)
        assert predicted is not None and probs is not None
        obs.original_predicted = classes[predicted]
        obs.p_original = float(probs[predicted])
    judgement = judge(obs, ctx.thresholds, ctx.threshold_sources)
    compared: dict[str, Any] = {}
    if ctx.baseline is not None:
        current = {"mass_object": _m(obs.object, "mass"), "mass_sticker": _m(obs.sticker, "mass")}
        current["p_label"] = obs.p_label
        judgement, compared = compare(ctx.baseline, ctx.rule, judgement, current, ctx.thresholds, ctx.threshold_sources)
    # Where the prediction differs from the label, the planned second pass explains the
    # predicted class too: what the model saw instead (the sticker rule judges it itself).
    extra = None
    if ctx.rule != "sticker_added" and result.predicted != label_index:
        # A map that is not finite is no picture of what the model saw: left out.
        if result.relevance_predicted is not None and np.isfinite(result.relevance_predicted).all():
            extra = result.relevance_predicted

    row = base_row(ctx, str(model.device))
    row.update(
        predicted=obs.predicted,
        p_predicted=obs.p_predicted,
        p_label=obs.p_label,
        mass_object=_m(obs.object, "mass"),
        mass_removed=_m(obs.removed, "mass"),
        mass_sticker=_m(obs.sticker, "mass"),
        signed_object=_m(obs.object, "signed"),
        negative_object=_m(obs.object, "negative"),
        rank_accuracy=_m(obs.object, "rank_accuracy"),
        pointing_game=_m(obs.object, "pointing_game"),
        object_area=_m(obs.object, "area"),
        object_lift=_m(obs.object, "lift"),
        original_predicted=obs.original_predicted,
        verdict=judgement.verdict,
        passed=judgement.passed,
        message=judgement.message,
        checks=judgement.checks_as_dicts(),
        **health.columns(),
        **compared,
    )
    # The heatmap shows the relevance the verdict is about: the predicted class for
    # stickers (what drew the flip), the label otherwise.
    shown = result.relevance_predicted if ctx.rule == "sticker_added" else result.relevance_label
    assert shown is not None
    row["heatmap_scale"] = heatmap_scale(shown)
    row["heatmap_class"] = obs.predicted if ctx.rule == "sticker_added" else ctx.label
    if extra is not None:
        row["predicted_explained"] = obs.predicted
        predicted_object = _soft(obs, "predicted object", extra, variant.object_mask, tolerance)
        row["mass_object_predicted"] = _m(predicted_object, "mass")
        row["heatmap_predicted_scale"] = heatmap_scale(extra)
    if assets_dir is not None:
        row["images"] = write_pictures(assets_dir, ctx, variant, shown, writer, extra)
    return Evaluation(obs, judgement, row)


def _finite(value: float, what: str) -> float:
    if not np.isfinite(value):
        raise HarnessError(f"{what} is not finite ({value})")
    return value


def _check_health(ctx: ItemContext, result: Any, classes: list[str]) -> health_checks.Health:
    """The health of the map this item shows and judges (the predicted class's for a
    sticker, the label's otherwise); raises :class:`UnreliableExplanation` when it, or
    any other map the item reads, cannot serve as evidence."""
    label_health = result.health_label
    shown = result.health_predicted if ctx.rule == "sticker_added" else label_health
    assert label_health is not None and shown is not None
    conservative = ctx.explainer.startswith("lrp/")
    problem = health_checks.problem(
        shown, conservative, health_checks.band_of(ctx.thresholds), zero_allowed=ctx.explainer.startswith("cam/")
    )
    whose = ""
    if shown is not label_health:
        whose = f"the explanation of {classes[result.predicted]} (the predicted class): "
        if problem is None and not label_health.finite:
            # The label's map feeds the object metrics of the row: it must be finite too.
            problem = health_checks.problem(label_health, False, None)
            shown, whose = label_health, f"the explanation of {ctx.label} (the label): "
    if problem is not None:
        raise UnreliableExplanation(f"explanation unreliable: {whose}{problem} ({ctx.explainer})", shown.columns())
    return shown


def _soft(obs: Observation, name: str, relevance: np.ndarray, mask: np.ndarray, tolerance: int) -> RegionMetrics | None:
    try:
        return region_metrics(relevance, mask, tolerance)
    except MetricError as exc:
        obs.undefined[name] = str(exc)
        return None


def _m(metrics: RegionMetrics | None, name: str) -> Any:
    return None if metrics is None else getattr(metrics, name)


def write_pictures(
    assets_dir: Path,
    ctx: ItemContext,
    variant: Any,
    relevance: np.ndarray,
    writer: Any = None,
    predicted_relevance: np.ndarray | None = None,
) -> dict[str, str]:
    """Write input, annotated input, heatmap and overlay PNGs (and ``heatmap_predicted``,
    the predicted class's heatmap, when given); return their absolute paths.

    With ``writer`` the rendering and encoding run on that executor (OpenCV releases
    the GIL), off the items' critical path; the caller must wait for it before the
    files are read.
    """
    paths = _picture_paths(assets_dir, ctx)
    if predicted_relevance is None:
        del paths["heatmap_predicted"]
    if writer is not None:
        writer.submit(_render_and_write, paths, variant, relevance, predicted_relevance)
    else:
        _render_and_write(paths, variant, relevance, predicted_relevance)
    return {kind: str(path) for kind, path in paths.items()}


def _picture_paths(assets_dir: Path, ctx: ItemContext) -> dict[str, Path]:
    folder = (assets_dir / _safe(ctx.model) / _safe(Path(ctx.suite).name)).resolve()
    stem = f"{_safe(ctx.case_id)}__{ctx.variant}" + (f"-{_safe(ctx.sweep)}" if ctx.sweep else "")
    kinds = ("input", "annotated", "heatmap", "overlay", "heatmap_predicted")
    paths = {kind: folder / f"{stem}_{kind}.png" for kind in kinds}
    # The heatmap's relevance and masks, from which the report colours a case's maps on one scale.
    paths["heatmap_data"] = folder / f"{stem}_heatmap.npz"
    return paths


def _render_and_write(
    paths: dict[str, Path], variant: Any, relevance: np.ndarray, predicted: np.ndarray | None = None
) -> None:
    pictures = {
        "input": variant.image,
        "annotated": render.annotate(variant.image, variant.object_mask, variant.removed_mask, variant.sticker_mask),
        "heatmap": render.heatmap_image(relevance, variant.object_mask, variant.sticker_mask),
        "overlay": render.overlay(variant.image, relevance),
    }
    if predicted is not None:
        pictures["heatmap_predicted"] = render.heatmap_image(predicted, variant.object_mask, variant.sticker_mask)
    for kind, image in pictures.items():
        write_rgb(paths[kind], image)
    render.save_heatmap_data(paths["heatmap_data"], relevance, variant.object_mask, variant.sticker_mask, predicted)
