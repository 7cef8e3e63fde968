"""Items of the HTML report: one per test item, typed from the core's rows.

The core harness hands over one JSON-serialisable *row* per test item (the ``("xai",
row)`` user property, see :mod:`harness.report.plugin`). This module turns a row into an
:class:`Item` with its checks, and knows the verdicts, variants and metrics the page
shows; :mod:`harness.report.model` groups items into cases and counts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .baseline_view import baseline_of

__all__ = [
    "IMAGE_KINDS",
    "METRICS",
    "OUTCOMES",
    "UNKNOWN",
    "VARIANTS",
    "VERDICTS",
    "VERDICT_HELP",
    "Check",
    "Item",
    "as_float",
    "as_int",
    "error_item",
    "item_from_row",
    "opt_text",
    "text",
    "verdict_label",
]

#: Verdicts in the order the summary shows them; ``passed`` first, ``error`` last.
VERDICTS: tuple[str, ...] = (
    "passed",
    "false_positive",
    "false_negative",
    "artifact_reliance",
    "wrong_reasons",
    "error",
)

#: One sentence per verdict for the legend; written for domain experts.
VERDICT_HELP: dict[str, str] = {
    "passed": "The model behaved as the case expects.",
    "false_positive": (
        "The object was removed, yet the model still predicts the class "
        "(it decides from something else: a 'Clever Hans' shortcut)."
    ),
    "false_negative": (
        "The class is not predicted: on the unmodified image, or once the background "
        "is removed (the model needs the context)."
    ),
    "artifact_reliance": ("A sticker changed the prediction or drew much of the relevance."),
    "wrong_reasons": ("The prediction is right, but too little relevance lies on the object."),
    "error": (
        "The case could not be evaluated (an input or authoring error, or a crash): not a "
        "model failure; the error text says what to fix."
    ),
    "regression": (
        "Passed in the baseline run and fails now, or lost more relevance on the object than "
        "max_mass_drop allows (--xai-baseline)."
    ),
    "xfailed": "Marked xfail in the suite (a known problem) and the verdict failed as expected.",
    "xpassed": (
        "Marked xfail in the suite, yet the verdict passed: the known problem may be gone "
        "(with xfail_strict the run fails on it)."
    ),
}

#: pytest outcomes that set an item apart from the verdict counts: the suite said the
#: verdict would fail (xfail), so the item is neither a new model failure nor a pass.
OUTCOMES: tuple[str, ...] = ("xfailed", "xpassed")
_GROUP_LABEL = {"xfailed": "expected failure", "xpassed": "unexpected pass"}

#: Canonical order of the variants inside a case.
VARIANTS: tuple[str, ...] = (
    "original",
    "instance_removed",
    "background_removed",
    "sticker_added",
)

#: Image kinds the core writes for an item.
IMAGE_KINDS: tuple[str, ...] = ("input", "annotated", "heatmap", "overlay")

#: Numeric row fields the page can sort by, with their display names.
METRICS: dict[str, str] = {
    "mass_object": "relevance on object",
    "mass_removed": "relevance on removed region",
    "mass_sticker": "relevance on sticker",
    "rank_accuracy": "rank accuracy",
    "signed_object": "signed relevance on object",
    "negative_object": "negative relevance on object",
    "p_predicted": "probability of prediction",
    "p_label": "probability of expected class",
}

_FLOAT_FIELDS = (
    "p_predicted",
    "p_label",
    "mass_object",
    "mass_removed",
    "mass_sticker",
    "rank_accuracy",
    "signed_object",
    "negative_object",
    "heatmap_scale",
)

# Failures an expert judges come first, then errors (the engineer's business), then
# everything that passed.
_RANK_FAILED, _RANK_ERROR, _RANK_PASSED, _RANK_SKIPPED = 0, 1, 2, 3

UNKNOWN = "(unknown)"


def verdict_label(verdict: str) -> str:
    """Return the human label of a verdict, e.g. ``"false positive"``.

    Parameters
    ----------
    verdict
        Verdict name as used in rows (``"false_positive"``).

    Returns
    -------
    str
        The name with underscores replaced by spaces.
    """
    return _GROUP_LABEL.get(verdict) or verdict.replace("_", " ")


def text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def opt_text(value: Any) -> str | None:
    return None if value is None else text(value)


def as_float(value: Any) -> float | None:
    # NaN and infinities would make the JSON island unparsable (and a NaN must never
    # read as a harmless number), so they become "no value".
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


#: A compared value: a number, or a class name / flag for checks on the prediction.
CheckValue = float | str | bool | None


def _check_value(value: Any) -> CheckValue:
    if isinstance(value, (str, bool)) or value is None:
        return value
    return as_float(value)


@dataclass(frozen=True)
class Check:
    """One metric compared with its threshold.

    Attributes
    ----------
    name
        Name of the check, e.g. ``"relevance on object"``.
    metric
        Row field or metric key the check reads.
    value, threshold
        Measured value and the limit (numbers; class names or flags for checks on
        the prediction); ``None`` when undefined.
    op
        Comparison that must hold, e.g. ``"<="``, ``">="``, ``"=="`` or ``"!="``.
    passed
        Whether the check held; ``None`` when unknown.
    """

    name: str
    metric: str
    value: CheckValue
    threshold: CheckValue
    op: str
    passed: bool | None
    source: str | None = None  # where the threshold came from (built-in, suite, case, variant, command line)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        """Build a check from its row dictionary, tolerating missing keys."""
        return cls(
            name=text(data.get("name")),
            metric=text(data.get("metric")),
            value=_check_value(data.get("value")),
            threshold=_check_value(data.get("threshold")),
            op=text(data.get("op")),
            passed=as_bool(data.get("passed")),
            source=opt_text(data.get("source")),
        )


@dataclass
class Item:
    """One test item: a case in one variant, with its verdict and images.

    ``images`` maps an image kind to a file path when built from a row; the renderer
    replaces the paths with URLs.
    """

    key: str
    nodeid: str
    suite: str
    line: int | None
    case_id: str
    description: str
    variant: str
    model: str
    explainer: str
    device: str
    label: str
    predicted: str | None
    p_predicted: float | None
    p_label: float | None
    original_predicted: str | None
    mass_object: float | None
    mass_removed: float | None
    mass_sticker: float | None
    rank_accuracy: float | None
    pointing_game: bool | None
    signed_object: float | None
    negative_object: float | None
    verdict: str
    passed: bool
    message: str
    checks: list[Check] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    heatmap_scale: float | None = None
    heatmap_class: str | None = None
    longrepr: str = ""
    outcome: str = ""  # "xfailed" or "xpassed" when the suite marked the case xfail
    baseline: dict[str, Any] = field(default_factory=dict)  # comparison with --xai-baseline (baseline_view)

    @property
    def group(self) -> str:
        """What the item counts as: its pytest outcome when expected to fail, else its verdict."""
        return self.outcome if self.outcome in OUTCOMES else self.verdict

    @property
    def rank(self) -> int:
        """Sort rank: failures 0, errors 1, passed (and xfail either way) 2, skipped 3.

        A verdict this module does not know counts as a failure: an expert had better
        look at it than miss it.
        """
        if self.outcome in OUTCOMES:
            return _RANK_PASSED
        if self.verdict == "passed":
            return _RANK_PASSED
        if self.verdict == "skipped":
            return _RANK_SKIPPED
        if self.verdict == "error":
            return _RANK_ERROR
        return _RANK_FAILED

    @property
    def needs_review(self) -> bool:
        """Whether the expert judges this item: model failures only. An error says
        nothing about the model (the input needs fixing), and an xfail was already
        judged when it was marked."""
        return self.rank == _RANK_FAILED


_NODEID = re.compile(r"^(?P<path>[^:]*)(?:::(?P<name>.*?))?(?:\[(?P<param>.*)\])?$")


def _split_nodeid(nodeid: str) -> tuple[str, str, str]:
    """Split ``"suite.yaml::case[variant]"`` into suite, case id and variant."""
    match = _NODEID.match(nodeid)
    if match is None:  # pragma: no cover - the pattern matches every string
        return nodeid, "", ""
    name = match.group("name") or ""
    # Nested test classes give "A::B::case"; the case is the last part.
    name = name.rsplit("::", 1)[-1]
    return match.group("path") or "", name, match.group("param") or ""


def item_from_row(row: Mapping[str, Any], nodeid: str = "", longrepr: str = "") -> Item:
    """Build an :class:`Item` from a core row, tolerating missing or odd values.

    Parameters
    ----------
    row
        The ``xai`` row of the data contract.
    nodeid
        pytest node id of the item, when known.
    longrepr
        Failure text of the item; kept for errors only, where the verdict sentence
        alone does not explain what went wrong.

    Returns
    -------
    Item
        The item; its ``key`` is the node id, or ``suite::case_id[variant]``.
    """
    floats = {name: as_float(row.get(name)) for name in _FLOAT_FIELDS}
    suite = text(row.get("suite"))
    case_id = text(row.get("case_id"))
    variant = text(row.get("variant"))
    if row.get("sweep"):  # a swept variant's items differ by their value, shown as in the item id
        variant = f"{variant}-{text(row.get('sweep'))}"
    nodeid = text(nodeid or row.get("nodeid"))
    if not (suite or case_id):
        suite, case_id, variant = _split_nodeid(nodeid)
    verdict = text(row.get("verdict")) or "error"
    raw_images = row.get("images")
    images = {
        text(kind): text(path) for kind, path in (raw_images.items() if isinstance(raw_images, Mapping) else ()) if path
    }
    raw_checks = row.get("checks")
    checks = [
        Check.from_dict(check)
        for check in (raw_checks if isinstance(raw_checks, Sequence) else ())
        if isinstance(check, Mapping)
    ]
    passed = row.get("passed")
    return Item(
        key=nodeid or f"{suite}::{case_id}[{variant}]",
        nodeid=nodeid,
        suite=suite,
        line=as_int(row.get("line")),
        case_id=case_id,
        description=text(row.get("description")),
        variant=variant,
        model=text(row.get("model")),
        explainer=text(row.get("explainer")),
        device=text(row.get("device")),
        label=text(row.get("label")),
        predicted=opt_text(row.get("predicted")),
        p_predicted=floats["p_predicted"],
        p_label=floats["p_label"],
        original_predicted=opt_text(row.get("original_predicted")),
        mass_object=floats["mass_object"],
        mass_removed=floats["mass_removed"],
        mass_sticker=floats["mass_sticker"],
        rank_accuracy=floats["rank_accuracy"],
        pointing_game=as_bool(row.get("pointing_game")),
        signed_object=floats["signed_object"],
        negative_object=floats["negative_object"],
        verdict=verdict,
        passed=bool(passed) if passed is not None else verdict == "passed",
        message=text(row.get("message")),
        checks=checks,
        images=images,
        heatmap_scale=floats["heatmap_scale"],
        heatmap_class=opt_text(row.get("heatmap_class")),
        longrepr=text(longrepr or row.get("longrepr")) if verdict == "error" else "",
        baseline=baseline_of(row),
    )


def error_item(nodeid: str, longrepr: str, message: str = "") -> Item:
    """Build an ``error`` item for a node that has no ``xai`` row.

    Parameters
    ----------
    nodeid
        pytest node id (a file for collection errors).
    longrepr
        pytest's failure text.
    message
        Verdict sentence; defaults to the last non-empty line of ``longrepr``, which
        is where pytest puts the exception.

    Returns
    -------
    Item
        An item with verdict ``"error"``; suite, case id and variant are parsed from
        the node id.
    """
    if not message:
        lines = [line.strip() for line in longrepr.splitlines() if line.strip()]
        message = lines[-1] if lines else "error without a report from the harness"
    return item_from_row(
        {"verdict": "error", "passed": False, "message": message},
        nodeid=nodeid,
        longrepr=longrepr or message,
    )
