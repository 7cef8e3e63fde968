"""Small YAML text builders: flow-style values that stay readable and parse back exactly."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml


def scalar(value: Any) -> str:
    """One scalar in YAML flow syntax, quoted only where YAML needs it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} into a suite")
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(round(value, 2)) if abs(value) >= 1 else repr(round(value, 4))
    if isinstance(value, Path):
        value = value.as_posix()
    # Dumped inside a flow list so PyYAML quotes characters that are special in flow
    # context (",", "[", "{"), which a top-level scalar dump would leave plain.
    text = yaml.safe_dump([str(value)], default_flow_style=True, width=10**9, allow_unicode=True).strip()
    return text[1:-1]


def flow(value: Any) -> str:
    """A value (mappings, sequences, scalars) in one line of YAML flow syntax."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def wrapped_flow_list(items: list[Any], first_prefix: str, indent: int, width: int = 100) -> list[str]:
    """A long flow list (a polygon's points) over several lines.

    Continuation lines are indented by ``indent`` spaces, which must be deeper than the
    enclosing block key for YAML to read them as part of the same value.
    """
    parts = [flow(v) for v in items]
    lines: list[str] = []
    current = first_prefix + "["
    for i, part in enumerate(parts):
        piece = part + ("," if i < len(parts) - 1 else "]")
        if len(current) + len(piece) + 1 > width and not current.endswith("["):
            lines.append(current.rstrip())
            current = " " * indent
        elif not current.endswith("[") and not current.endswith(" "):
            current += " "
        current += piece
    lines.append(current)
    return lines


def comment_lines(text: str | None, indent: int) -> list[str]:
    """``# ...`` lines at ``indent`` for a (possibly multi-line) comment."""
    if not text:
        return []
    pad = " " * indent
    return [f"{pad}# {line}".rstrip() for line in text.splitlines()]
