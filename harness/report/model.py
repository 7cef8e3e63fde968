"""Data model of the HTML report: cases, summary counts and run metadata.

Items (:mod:`harness.report.items`, one per test item) are grouped here into the
variants of one case, and counted per verdict, suite and model. It knows nothing about
HTML; :mod:`harness.report.render` feeds the result to the template. The item names are
re-exported, so ``harness.report.model`` stays the one import for the whole model.
"""

from __future__ import annotations

import platform
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .items import (
    IMAGE_KINDS,
    METRICS,
    OUTCOMES,
    UNKNOWN,
    VARIANTS,
    VERDICT_HELP,
    VERDICTS,
    Check,
    Item,
    as_float,
    as_int,
    error_item,
    item_from_row,
    opt_text,
    text,
    verdict_label,
)

__all__ = [
    "IMAGE_KINDS",
    "METRICS",
    "OUTCOMES",
    "VARIANTS",
    "VERDICTS",
    "VERDICT_HELP",
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
        value = getattr(item, field_name) or UNKNOWN
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
        counts.setdefault(item.suite or UNKNOWN, Counter())[item.group] += 1
    rows = []
    for path in sorted(counts):
        name, description = _suite_header(path, rootdir) if path != UNKNOWN else (path, "")
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
        duration = as_float(meta.get("duration_s"))
        if duration is None and started and finished:
            duration = (finished - started).total_seconds()
        command = meta.get("command", "")
        if isinstance(command, (list, tuple)):
            command = " ".join(text(part) for part in command)
        versions = environment_versions()
        versions.update({text(k): opt_text(v) for k, v in dict(meta.get("versions") or {}).items()})
        return cls(
            title=text(meta.get("title")) or "XAI test report",
            started=started,
            finished=finished,
            duration_s=duration,
            command=text(command),
            rootdir=text(meta.get("rootdir")),
            exitstatus=as_int(meta.get("exitstatus")),
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
    summary.suites = suite_rows(items, list(summary.by_verdict), opt_text((meta or {}).get("rootdir")))
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
