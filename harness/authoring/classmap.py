"""Mapping annotation class names onto the model's class names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.authoring.drafts import CaseDraft
from harness.errors import HarnessError


@dataclass
class ClassMap:
    """Renames annotation classes and decides which of them become cases.

    Parameters
    ----------
    mapping
        Annotation class -> model class. A value of ``None`` drops that class.
    classes
        The model's class names, or ``None`` when unknown (then nothing is dropped
        for being unknown).
    keep_unknown
        Keep cases whose (mapped) class is not one of ``classes``.
    """

    mapping: dict[str, str | None] = field(default_factory=dict)
    classes: list[str] | None = None
    keep_unknown: bool = False

    def target(self, name: str) -> str | None:
        """Model class for an annotation class, or ``None`` to drop it."""
        if name in self.mapping:
            return self.mapping[name]
        return name

    def apply(self, cases: Iterable[CaseDraft]) -> tuple[list[CaseDraft], list[str]]:
        """Rename labels; return the kept cases and one warning per dropped class."""
        kept: list[CaseDraft] = []
        dropped: Counter[str] = Counter()
        unknown: Counter[str] = Counter()
        for case in cases:
            source = case.source_label if case.source_label is not None else case.label
            if source is None:
                kept.append(case)
                continue
            mapped = self.target(source)
            if mapped is None:
                dropped[source] += 1
                continue
            if self.classes is not None and mapped not in self.classes and not self.keep_unknown:
                unknown[f"{source!r}" + (f" -> {mapped!r}" if mapped != source else "")] += 1
                continue
            case.source_label, case.label = source, mapped
            kept.append(case)
        warnings = [f"skipped {n} annotation(s) of class {name!r} (mapped to nothing)" for name, n in dropped.items()]
        warnings += [
            f"skipped {n} annotation(s) of class {name}: not a class of the model "
            "(map it with --map NAME=CLASS, or keep it with --keep-unknown)"
            for name, n in unknown.items()
        ]
        return kept, warnings


def parse_map_args(pairs: Iterable[str]) -> dict[str, str | None]:
    """``["dog=canine", "cat="]`` -> ``{"dog": "canine", "cat": None}`` (empty drops the class)."""
    out: dict[str, str | None] = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip():
            raise HarnessError(f"--map expects SOURCE=TARGET, got {pair!r}")
        out[source.strip()] = target.strip() or None
    return out


def read_map_file(path: str | Path) -> dict[str, str | None]:
    """A YAML mapping ``annotation class: model class`` (``null`` drops the class)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessError(f"cannot read class map {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a class map is a mapping 'annotation class: model class'")
    return {str(k): (None if v is None else str(v)) for k, v in raw.items()}
