"""The report's comparison with a baseline run (``--xai-baseline``): the summary line
and, for every item whose outcome changed, the baseline's figures beside the current
ones (and the baseline's overlay picture when its file is still there).

The core puts the comparison into each row (``regression_status``, ``baseline_*``,
``delta_*``, see :mod:`harness.baseline`); the report plugin adds the baseline items
this run did not have (``meta["baseline"]``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.baseline import BASELINE_COLUMNS, STATUSES, summary_line

if TYPE_CHECKING:
    from .model import Item, Report
    from .render import AssetWriter

__all__ = ["BaselineSection", "Changed", "baseline_of", "baseline_section"]

# Most consequential first: what now fails, then what got better, then failures that changed kind.
_ORDER = {"regressed": 0, "improved": 1, "unchanged": 2}


def baseline_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison columns of a row that has them (an empty dict without a baseline)."""
    if row.get("regression_status") is None:
        return {}
    out = {name: row.get(name) for name in BASELINE_COLUMNS}
    for name, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[name] = None
    return out


@dataclass
class Figure:
    """One measured value, before and now."""

    name: str
    before: str
    now: str
    delta: str = ""
    worse: bool = False


@dataclass
class Changed:
    """An item whose outcome changed against the baseline, for the side-by-side table."""

    item: Item
    status: str
    baseline_model: str
    baseline_verdict: str
    current_verdict: str  # what the oracle said now (the item's verdict may be "regression")
    figures: list[Figure]
    baseline_image: str | None = None
    current_image: str | None = None


@dataclass
class BaselineSection:
    """What the template shows about the baseline."""

    source: str
    line: str
    counts: dict[str, int]
    missing: int
    missing_examples: list[str] = field(default_factory=list)
    changed: list[Changed] = field(default_factory=list)
    # What the oracle says now of the regressed items (their verdict is "regression").
    regressed_now: dict[str, int] = field(default_factory=dict)


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{100 * float(value):.0f} %"


def _points(value: Any) -> str:
    return "" if not isinstance(value, (int, float)) else f"{100 * float(value):+.0f} points"


def _figures(item: Item, data: Mapping[str, Any]) -> list[Figure]:
    rows = [
        ("relevance on object", data.get("baseline_mass_object"), item.mass_object, data.get("delta_mass_object")),
        ("relevance on sticker", data.get("baseline_mass_sticker"), item.mass_sticker, data.get("delta_mass_sticker")),
        (f"probability of {item.label or 'the label'}", data.get("baseline_p_label"), item.p_label, None),
    ]
    out = []
    for name, before, now, delta in rows:
        if before is None and now is None:
            continue
        if delta is None and isinstance(before, (int, float)) and isinstance(now, (int, float)):
            delta = float(now) - float(before)
        # Less relevance on the object, more on the sticker, a lower probability: worse.
        sign = 1 if "sticker" in name else -1
        worse = isinstance(delta, (int, float)) and sign * float(delta) > 0.005
        out.append(Figure(name, _pct(before), _pct(now), _points(delta), worse))
    return out


def _changed(item: Item) -> bool:
    data = item.baseline
    status = data.get("regression_status")
    if status in ("regressed", "improved"):
        return True
    # Unchanged in outcome, but one failure became another.
    before, now = data.get("baseline_verdict"), data.get("oracle_verdict")
    return status == "unchanged" and bool(before) and bool(now) and before != now


def baseline_section(report: Report, assets: AssetWriter) -> BaselineSection | None:
    """The section, or ``None`` when the run was not compared with a baseline."""
    meta: Mapping[str, Any] = report.meta.baseline or {}
    items: Sequence[Item] = [item for item in report.items if item.baseline]
    if not meta and not items:
        return None
    counts = Counter(str(item.baseline.get("regression_status")) for item in items)
    missing = int(meta.get("missing") or 0)
    changed = []
    for item in sorted(items, key=lambda it: (_ORDER.get(str(it.baseline.get("regression_status")), 3), it.key)):
        if not _changed(item):
            continue
        data = item.baseline
        hint = f"{item.case_id}-{item.variant}"
        before = data.get("baseline_heatmap")
        now = item.images.get("overlay")
        changed.append(
            Changed(
                item=item,
                status=str(data.get("regression_status")),
                baseline_model=str(data.get("baseline_model") or "?"),
                baseline_verdict=str(data.get("baseline_verdict") or "?"),
                current_verdict=str(data.get("oracle_verdict") or item.verdict),
                figures=_figures(item, data),
                baseline_image=assets.url(str(before), f"{hint}-baseline") if before else None,
                current_image=assets.url(now, f"{hint}-overlay") if now else None,
            )
        )
    oracle_now = Counter(
        str(item.baseline.get("oracle_verdict"))
        for item in items
        if item.baseline.get("regression_status") == "regressed" and item.baseline.get("oracle_verdict")
    )
    return BaselineSection(
        regressed_now=dict(sorted(oracle_now.items())),
        source=str(meta.get("source") or ""),
        line=summary_line(counts, missing),
        counts={status: counts[status] for status in STATUSES},
        missing=missing,
        missing_examples=[str(x) for x in meta.get("missing_examples") or []],
        changed=changed,
    )
