"""What JUnit XML shows of an item: one plain ``xai.<column>`` property per value.

An item's user properties hold its whole row under ``"xai"`` (a dict, which the
results table and the HTML report read, also across xdist). pytest's JUnit writer
turns every property into ``str(value)``, so the row would be one long dict repr.
:class:`JunitProperties` shows the JUnit writer, and only it, the row's values as
``xai.verdict=false_positive``, ``xai.mass_object=0.73``: plain strings and numbers,
each once, no ``None``; the report keeps its property list untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

__all__ = ["JunitProperties", "junit_properties"]

#: The row under this property is flattened.
ROW_PROPERTY = "xai"
# Row keys JUnit already says (the test's name) or that are prose for the report.
_LEFT_OUT = frozenset({"nodeid", "description", "longrepr"})


def _text(value: Any) -> str | None:
    """A property value as CI tools read it; ``None`` for no value or a container."""
    if value is None or isinstance(value, (dict, list, tuple, set)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value).lower()
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return _text(value.item())
    return str(value)


def _flatten(prefix: str, data: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for key, value in data.items():
        if key in _LEFT_OUT:
            continue
        if isinstance(value, Mapping):
            # One level of nesting is still a plain value each (thresholds, threshold_sources).
            for inner, sub in value.items():
                text = _text(sub)
                if text is not None:
                    yield f"{prefix}{key}.{inner}", text
            continue
        text = _text(value)
        if text is not None:
            yield f"{prefix}{key}", text


def junit_properties(properties: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """The user properties as JUnit XML should show them.

    A dict property (the ``xai`` row, ``xai_sanity``) becomes one ``name.key`` property
    per scalar value (``images`` and ``checks``, lists and dicts of dicts, are left
    out: the report shows them); a plain property named like a key of the row would
    repeat it (JUnit shows the row's value under ``xai.<key>``) and is dropped; any other
    property keeps its value. Each name appears once (the first wins).
    """
    properties = [(str(name), value) for name, value in properties]
    row = next((value for name, value in reversed(properties) if name == ROW_PROPERTY), None)
    row_keys = set(row) if isinstance(row, Mapping) else set()
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(name: str, text: str) -> None:
        if name not in seen:
            seen.add(name)
            out.append((name, text))

    for name, value in properties:
        if name in row_keys:
            continue
        if isinstance(value, Mapping):
            if name == ROW_PROPERTY and value is not row:
                continue  # an older row of the same item
            for key, text in _flatten(f"{name}.", value):
                if not key.startswith(f"{name}.images.") and not key.startswith(f"{name}.checks."):
                    add(key, text)
        else:
            add(name, str(value))
    return out


class JunitProperties:
    """Shows the JUnit writer (and the hooks that run with it) :func:`junit_properties`
    of a teardown report, the one it reads properties from, and gives the report its
    own list back afterwards. Registered only where ``--junitxml`` writes (not in an
    xdist worker: the controller writes, from reports whose rows xdist brought back)."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Any:
        if report.when != "teardown" or not any(isinstance(value, Mapping) for _, value in report.user_properties):
            return (yield)
        original = report.user_properties
        report.user_properties = list[tuple[str, object]](junit_properties(original))
        try:
            return (yield)
        finally:
            report.user_properties = original
