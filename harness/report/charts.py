"""Overview charts: how each checked metric is distributed over passing and failing
items, with the thresholds drawn over it (inline SVG, nothing loaded from anywhere).

An expert judging a threshold needs to see where the passing and the failing items
lie relative to it; the chart mirrors them (passing above the axis, model failures
below) in the same bins, and marks every distinct threshold with where it came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from .model import Item

__all__ = ["MetricChart", "metric_charts", "svg"]

BINS = 20
_W, _H, _PAD = 420, 150, 28


@dataclass
class MetricChart:
    """One checked metric over the run."""

    name: str
    metric: str
    low: float
    high: float
    passed: list[int]  # items that passed, per bin
    failed: list[int]  # model failures, per bin
    thresholds: list[tuple[float, str]] = field(default_factory=list)  # value, where it came from

    def bin_of(self, value: float) -> int:
        if self.high <= self.low:
            return 0
        return min(BINS - 1, max(0, int((value - self.low) / (self.high - self.low) * BINS)))


def metric_charts(items: Sequence[Item]) -> list[MetricChart]:
    """A chart per (check name, metric) with numeric values and thresholds; items that
    are neither passed nor model failures (errors, xfails, skips) are left out."""
    values: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    limits: dict[tuple[str, str], dict[float, set[str]]] = {}
    for item in items:
        if item.group != "passed" and not item.needs_review:
            continue
        for check in item.checks:
            value, threshold = check.value, check.threshold
            if not (isinstance(value, float) and isinstance(threshold, float)):
                continue
            key = (check.name or check.metric, check.metric)
            values.setdefault(key, []).append((value, item.group == "passed"))
            limits.setdefault(key, {}).setdefault(threshold, set()).add(check.source or "level not recorded")
    charts = []
    for key, pairs in values.items():
        numbers = [v for v, _ in pairs] + list(limits[key])
        low, high = min(numbers), max(numbers)
        if math.isclose(low, high):
            low, high = low - 0.5, high + 0.5
        margin = (high - low) * 0.04  # a threshold at the edge stays visible
        low, high = low - margin, high + margin
        chart = MetricChart(key[0], key[1], low, high, [0] * BINS, [0] * BINS)
        for value, passed in pairs:
            (chart.passed if passed else chart.failed)[chart.bin_of(value)] += 1
        chart.thresholds = sorted((t, ", ".join(sorted(s))) for t, s in limits[key].items())
        charts.append(chart)
    return sorted(charts, key=lambda c: c.name)


def _num(value: float) -> str:
    return f"{value:.3g}"


def svg(chart: MetricChart) -> Markup:
    """The chart as an inline SVG element (every text escaped)."""
    peak = max(chart.passed + chart.failed + [1])
    width, half = (_W - 2 * _PAD) / BINS, (_H - 2 * _PAD) / 2
    axis = _PAD + half

    def x(value: float) -> float:
        return _PAD + (value - chart.low) / (chart.high - chart.low) * (_W - 2 * _PAD)

    parts = [
        f'<svg class="metric-chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(chart.name)}: '
        f'passing items above the axis, model failures below, thresholds dashed">',
        f'<line x1="{_PAD}" y1="{axis}" x2="{_W - _PAD}" y2="{axis}" class="axis"/>',
    ]
    for i in range(BINS):
        left = _PAD + i * width
        for count, up, cls in ((chart.passed[i], True, "bar-pass"), (chart.failed[i], False, "bar-fail")):
            if not count:
                continue
            height = count / peak * half
            top = axis - height if up else axis
            parts.append(
                f'<rect class="{cls}" x="{left + 0.5:.1f}" y="{top:.1f}" width="{width - 1:.1f}" '
                f'height="{height:.1f}"><title>{count} {"passing" if up else "failing"} item(s)</title></rect>'
            )
    for value, source in chart.thresholds:
        px = x(value)
        parts.append(
            f'<line class="threshold" x1="{px:.1f}" y1="{_PAD - 6}" x2="{px:.1f}" y2="{_H - _PAD + 6}">'
            f"<title>threshold {_num(value)} from {escape(source)}</title></line>"
        )
        # Anchored inward near an edge, so the label is never cut off.
        anchor = "start" if px < _W * 0.3 else "end" if px > _W * 0.7 else "middle"
        parts.append(
            f'<text class="threshold-label" x="{px:.1f}" y="{_PAD - 9}" text-anchor="{anchor}">'
            f"{_num(value)} ({escape(source)})</text>"
        )
    parts += [
        f'<text x="{_PAD}" y="{_H - 6}" class="tick">{_num(chart.low)}</text>',
        f'<text x="{_W - _PAD}" y="{_H - 6}" class="tick" text-anchor="end">{_num(chart.high)}</text>',
        f'<text x="4" y="{axis - 4}" class="side">pass</text>',
        f'<text x="4" y="{axis + 12}" class="side">fail</text>',
        "</svg>",
    ]
    return Markup("".join(parts))
