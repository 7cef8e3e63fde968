"""Data model of the HTML report: items, cases, summary counts and run metadata.

The core harness hands over one JSON-serialisable *row* per test item (the ``("xai",
row)`` user property, see :mod:`harness.report.plugin`). This module turns those rows
into typed dataclasses, groups the variants of one case together and counts verdicts.
It knows nothing about HTML; :mod:`harness.report.render` feeds the result to the
template.
"""

from __future__ import annotations

import math
import platform
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .baseline_view import baseline_of

__all__ = [
    "IMAGE_KINDS",
    "METRICS",
    "OUTCOMES",
    "VARIANTS",
    "VERDICTS",
    "Case",
    "Check",
    "CountTable",
    "Disagreement",
    "Item",
    "Report",
    "RunMeta",
    "Summary",
    "build_report",
    "environment_versions",
    "explainer_disagreements",
    "error_item",
    "item_from_row",
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

_UNKNOWN = "(unknown)"


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


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _float(value: Any) -> float | None:
    # NaN and infinities would make the JSON island unparsable (and a NaN must never
    # read as a harmless number), so they become "no value".
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


#: A compared value: a number, or a class name / flag for checks on the prediction.
CheckValue = float | str | bool | None


def _check_value(value: Any) -> CheckValue:
    if isinstance(value, (str, bool)) or value is None:
        return value
    return _float(value)


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
            name=_text(data.get("name")),
            metric=_text(data.get("metric")),
            value=_check_value(data.get("value")),
            threshold=_check_value(data.get("threshold")),
            op=_text(data.get("op")),
            passed=_bool(data.get("passed")),
            source=_opt_text(data.get("source")),
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
    floats = {name: _float(row.get(name)) for name in _FLOAT_FIELDS}
    suite = _text(row.get("suite"))
    case_id = _text(row.get("case_id"))
    variant = _text(row.get("variant"))
    if row.get("sweep"):  # a swept variant's items differ by their value, shown as in the item id
        variant = f"{variant}-{_text(row.get('sweep'))}"
    nodeid = _text(nodeid or row.get("nodeid"))
    if not (suite or case_id):
        suite, case_id, variant = _split_nodeid(nodeid)
    verdict = _text(row.get("verdict")) or "error"
    raw_images = row.get("images")
    images = {
        _text(kind): _text(path)
        for kind, path in (raw_images.items() if isinstance(raw_images, Mapping) else ())
        if path
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
        line=_int(row.get("line")),
        case_id=case_id,
        description=_text(row.get("description")),
        variant=variant,
        model=_text(row.get("model")),
        explainer=_text(row.get("explainer")),
        device=_text(row.get("device")),
        label=_text(row.get("label")),
        predicted=_opt_text(row.get("predicted")),
        p_predicted=floats["p_predicted"],
        p_label=floats["p_label"],
        original_predicted=_opt_text(row.get("original_predicted")),
        mass_object=floats["mass_object"],
        mass_removed=floats["mass_removed"],
        mass_sticker=floats["mass_sticker"],
        rank_accuracy=floats["rank_accuracy"],
        pointing_game=_bool(row.get("pointing_game")),
        signed_object=floats["signed_object"],
        negative_object=floats["negative_object"],
        verdict=verdict,
        passed=bool(passed) if passed is not None else verdict == "passed",
        message=_text(row.get("message")),
        checks=checks,
        images=images,
        heatmap_scale=floats["heatmap_scale"],
        heatmap_class=_opt_text(row.get("heatmap_class")),
        longrepr=_text(longrepr or row.get("longrepr")) if verdict == "error" else "",
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


@dataclass(frozen=True)
class Disagreement:
    """One image (a case's variant under one model) on which the run's explainers
    reach different verdicts: ``verdicts`` maps each explainer to its verdict."""

    suite: str
    case_id: str
    variant: str
    model: str
    verdicts: dict[str, str]

    def sentence(self) -> str:
        """``explainers disagree: A says passed, B says wrong reasons on background removed``."""
        said = ", ".join(f"{name} says {verdict_label(verdict)}" for name, verdict in self.verdicts.items())
        return f"explainers disagree: {said} on {self.variant.replace('_', ' ')}"


def explainer_disagreements(items: Iterable[Item]) -> list[Disagreement]:
    """The images on which two or more explainers of the run disagree on the verdict
    (the rule of :func:`harness.agreement.verdict_disagreements`, which the terminal
    summary counts), explainers in name order."""
    from harness.agreement import verdict_disagreements

    rows = [
        {"suite": it.suite, "case_id": it.case_id, "variant": it.variant, "sweep": None, "model": it.model,
         "explainer": it.explainer, "verdict": it.verdict}
        for it in items
    ]  # fmt: skip
    return [
        Disagreement(d["suite"], d["case_id"], d["variant"], d["model"], dict(sorted(d["verdicts"].items())))
        for d in verdict_disagreements(rows)
    ]


@dataclass
class Case:
    """The variants of one case for one model and explainer, in canonical order."""

    key: str
    suite: str
    line: int | None
    case_id: str
    description: str
    label: str
    model: str
    explainer: str
    device: str
    items: list[Item]
    disagreements: list[Disagreement] = field(default_factory=list)  # its images the explainers judge apart

    @property
    def rank(self) -> int:
        """Best (lowest) item rank: a case with any failure sorts first."""
        return min(item.rank for item in self.items)

    @property
    def failed(self) -> int:
        """How many of its items are model failures."""
        return sum(1 for item in self.items if item.needs_review)

    @property
    def margin(self) -> float:
        """How far its failed checks miss their thresholds: the largest distance of a
        failed numeric check's value from its threshold (0.0 when none is numeric)."""
        worst = 0.0
        for item in self.items:
            if not item.needs_review:
                continue
            for check in item.checks:
                value, limit = check.value, check.threshold
                if check.passed is False and isinstance(value, float) and isinstance(limit, float):
                    worst = max(worst, abs(value - limit))
        return worst

    @property
    def location(self) -> str:
        """``suite:line`` where the case is defined (``suite`` when line unknown)."""
        return f"{self.suite}:{self.line}" if self.line is not None else self.suite


def _variant_order(variant: str) -> tuple[int, str]:
    try:
        return VARIANTS.index(variant), ""
    except ValueError:
        return len(VARIANTS), variant


def _group_cases(items: Iterable[Item]) -> list[Case]:
    # Not keyed by line: a variant written out in the YAML reports its own line.
    groups: dict[tuple[Any, ...], list[Item]] = {}
    orphans: list[Item] = []
    for item in items:
        if item.line is None and not item.model:
            orphans.append(item)
            continue
        key = (item.suite, item.case_id, item.model, item.explainer)
        groups.setdefault(key, []).append(item)
    # Items that crashed before their row existed only know their node id; put them
    # beside the case's other variants when that is unambiguous.
    by_name: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for key in groups:
        by_name.setdefault((key[0], key[1]), []).append(key)
    for item in orphans:
        candidates = by_name.get((item.suite, item.case_id), [])
        if len(candidates) == 1 and item.case_id:
            groups[candidates[0]].append(item)
        else:
            groups.setdefault((item.suite, item.case_id, "", "", item.key), []).append(item)

    cases = []
    for members in groups.values():
        members.sort(key=lambda it: _variant_order(it.variant))
        head = next((it for it in members if it.line is not None), members[0])
        lines = [it.line for it in members if it.line is not None]
        cases.append(
            Case(
                key="",
                suite=head.suite,
                line=min(lines) if lines else None,  # the case starts before its variants
                case_id=head.case_id,
                description=head.description,
                label=head.label,
                model=head.model,
                explainer=head.explainer,
                device=head.device,
                items=members,
            )
        )
    # Worst first: failures before errors before passes, then the most failed variants,
    # then the widest miss of a threshold; file order breaks ties.
    cases.sort(key=lambda c: (c.rank, -c.failed, -c.margin, c.suite, c.line if c.line is not None else 0, c.case_id))
    for index, case in enumerate(cases):
        case.key = f"c{index}"
    return cases


@dataclass
class CountTable:
    """Verdict counts broken down by one dimension (model, class or variant).

    Attributes
    ----------
    title
        Name of the dimension, e.g. ``"class"``.
    field
        Item field the table groups by (the page filters on it).
    verdicts
        Column order.
    rows
        ``(value, counts per verdict, total)`` per distinct value, sorted by value.
    """

    title: str
    field: str
    verdicts: list[str]
    rows: list[tuple[str, dict[str, int], int]]


def _count_table(title: str, field_name: str, items: Sequence[Item], verdicts: list[str]) -> CountTable:
    counts: dict[str, Counter[str]] = {}
    for item in items:
        value = getattr(item, field_name) or _UNKNOWN
        counts.setdefault(value, Counter())[item.group] += 1
    order = sorted(counts, key=_variant_order) if field_name == "variant" else sorted(counts)
    rows = [(value, {v: counts[value][v] for v in verdicts}, sum(counts[value].values())) for value in order]
    return CountTable(title=title, field=field_name, verdicts=verdicts, rows=rows)


@dataclass
class SuiteRow:
    """Counts of one suite file, with the name and description its header gives."""

    path: str
    name: str
    description: str
    counts: dict[str, int]
    total: int


def _suite_header(path: str, rootdir: str | None) -> tuple[str, str]:
    """``suite`` and ``description`` from a suite file's header (safe YAML); the file's
    name and nothing when it cannot be read."""
    import yaml

    default = (Path(path).name.removesuffix(".xai.yaml"), "")
    source = Path(path) if Path(path).is_absolute() or not rootdir else Path(rootdir) / path
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return default
    if not isinstance(data, dict):
        return default
    name, description = data.get("suite"), data.get("description")
    return (str(name) if name else default[0], str(description) if description else "")


def suite_rows(items: Sequence[Item], verdicts: list[str], rootdir: str | None = None) -> list[SuiteRow]:
    """One row per suite file, in path order."""
    counts: dict[str, Counter[str]] = {}
    for item in items:
        counts.setdefault(item.suite or _UNKNOWN, Counter())[item.group] += 1
    rows = []
    for path in sorted(counts):
        name, description = _suite_header(path, rootdir) if path != _UNKNOWN else (path, "")
        rows.append(SuiteRow(path, name, description, {v: counts[path][v] for v in verdicts},
                             sum(counts[path].values())))  # fmt: skip
    return rows


@dataclass
class Summary:
    """Verdict counts over the whole run and per model, class and variant."""

    total: int
    failed: int  # model failures: what the expert reviews
    by_verdict: dict[str, int]  # by Item.group: xfailed and xpassed apart from the verdicts
    tables: list[CountTable]
    errors: int = 0  # items that could not be evaluated (not model failures)
    expected: int = 0  # xfailed and xpassed items
    disagreements: int = 0  # images on which the explainers reach different verdicts
    suites: list[SuiteRow] = field(default_factory=list)

    @classmethod
    def of(cls, items: Sequence[Item]) -> Summary:
        """Count the items by group; known verdicts always appear, in order, then the
        xfail outcomes that occur, then anything else."""
        counter = Counter(item.group for item in items)
        present = [o for o in OUTCOMES if counter[o]]
        verdicts = list(VERDICTS) + present + sorted(set(counter) - set(VERDICTS) - set(OUTCOMES))
        return cls(
            total=len(items),
            errors=counter["error"],
            expected=sum(counter[o] for o in OUTCOMES),
            failed=sum(1 for item in items if item.needs_review),
            by_verdict={v: counter[v] for v in verdicts},
            tables=[
                _count_table("model", "model", items, verdicts),
                _count_table("class", "label", items, verdicts),
                _count_table("variant", "variant", items, verdicts),
            ],
        )


def environment_versions() -> dict[str, str | None]:
    """Versions of Python and the libraries that shape the results.

    Reads installed distribution metadata instead of importing the packages, so that
    rendering a report never pays for importing torch; a package that is missing
    gives ``None``.

    Returns
    -------
    dict
        ``{"python": ..., "harness": ..., "pytest": ..., "torch": ..., ...}``.
    """
    distributions = {
        "harness": ("xai-harness",),
        "pytest": ("pytest",),
        "torch": ("torch",),
        "torchvision": ("torchvision",),
        "zennit": ("zennit",),
        "numpy": ("numpy",),
        "opencv": ("opencv-python-headless", "opencv-python"),
    }
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, dists in distributions.items():
        versions[name] = None
        for dist in dists:
            try:
                versions[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        if versions[name] is None:
            module = sys.modules.get(name)
            found = getattr(module, "__version__", None)
            versions[name] = str(found) if found else None
    return versions


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).astimezone()
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.astimezone()
    return None


def _distinct(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if v})


@dataclass
class RunMeta:
    """What was run, when, where and with which versions."""

    title: str
    started: datetime | None
    finished: datetime | None
    duration_s: float | None
    command: str
    rootdir: str
    exitstatus: int | None
    interrupted: bool
    models: list[str]
    explainers: list[str]
    devices: list[str]
    versions: dict[str, str | None]
    baseline: dict[str, Any] | None = None  # the comparison with --xai-baseline: source, missing items

    @classmethod
    def from_mapping(cls, meta: Mapping[str, Any], items: Sequence[Item]) -> RunMeta:
        """Build run metadata from the caller's ``meta`` dict and the items.

        Parameters
        ----------
        meta
            Optional keys: ``title``, ``started`` and ``finished`` (epoch seconds,
            datetime or ISO string), ``duration_s``, ``command`` (str or list),
            ``rootdir``, ``exitstatus``, ``interrupted`` and ``versions`` (merged over
            :func:`environment_versions`).
        items
            The report's items; models, explainers and devices are read from them.
        """
        started = _timestamp(meta.get("started"))
        finished = _timestamp(meta.get("finished"))
        duration = _float(meta.get("duration_s"))
        if duration is None and started and finished:
            duration = (finished - started).total_seconds()
        command = meta.get("command", "")
        if isinstance(command, (list, tuple)):
            command = " ".join(_text(part) for part in command)
        versions = environment_versions()
        versions.update({_text(k): _opt_text(v) for k, v in dict(meta.get("versions") or {}).items()})
        return cls(
            title=_text(meta.get("title")) or "XAI test report",
            started=started,
            finished=finished,
            duration_s=duration,
            command=_text(command),
            rootdir=_text(meta.get("rootdir")),
            exitstatus=_int(meta.get("exitstatus")),
            interrupted=bool(meta.get("interrupted", False)),
            models=_distinct(item.model for item in items),
            explainers=_distinct(item.explainer for item in items),
            devices=_distinct(item.device for item in items),
            versions=versions,
            baseline=dict(meta["baseline"]) if isinstance(meta.get("baseline"), Mapping) else None,
        )


@dataclass
class Report:
    """Everything the template renders."""

    meta: RunMeta
    summary: Summary
    cases: list[Case]
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def items(self) -> list[Item]:
        """All items, case by case."""
        return [item for case in self.cases for item in case.items]


def build_report(rows: Iterable[Mapping[str, Any] | Item], meta: Mapping[str, Any] | None = None) -> Report:
    """Turn core rows into the report model.

    Parameters
    ----------
    rows
        Rows of the data contract, or already built :class:`Item` objects (for
        instance from :func:`error_item`). A row may carry ``nodeid`` and
        ``longrepr`` keys besides the contract's.
    meta
        Run metadata, see :meth:`RunMeta.from_mapping`.

    Returns
    -------
    Report
        Cases sorted failures first, then errors, then passed; within a rank by file
        and line.
    """
    items = [row if isinstance(row, Item) else item_from_row(row) for row in rows]
    seen: Counter[str] = Counter()
    for item in items:
        # Keys name review marks in the browser, so they must be unique in a report.
        seen[item.key] += 1
        if seen[item.key] > 1:
            item.key = f"{item.key}#{seen[item.key]}"
    summary = Summary.of(items)
    summary.suites = suite_rows(items, list(summary.by_verdict), _opt_text((meta or {}).get("rootdir")))
    disagreements = explainer_disagreements(items)
    summary.disagreements = len(disagreements)
    cases = _group_cases(items)
    by_image: dict[tuple[str, str, str], list[Disagreement]] = {}
    for found in disagreements:
        by_image.setdefault((found.suite, found.case_id, found.model), []).append(found)
    for case in cases:
        case.disagreements = [
            found
            for found in by_image.get((case.suite, case.case_id, case.model), [])
            if case.explainer in found.verdicts
        ]
    meta_ = RunMeta.from_mapping(meta or {}, items)
    return Report(meta=meta_, summary=summary, cases=cases, disagreements=disagreements)
