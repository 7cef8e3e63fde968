"""Writing suites as text: a header with every default spelled out, one block per case,
and appending to an existing suite without re-dumping (so its comments survive)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.authoring.drafts import TODO_KEY, TODO_TEXT, CaseDraft, RegionDraft, relative_to_suite, unique_ids
from harness.authoring.yamltext import comment_lines, flow, scalar, wrapped_flow_list
from harness.errors import HarnessError
from harness.imageio import write_rgb
from harness.perturb import VARIANTS
from harness.spec import DEFAULT_THRESHOLDS, Thresholds
from harness.yamlio import MarkedDict, MarkedList, load_marked

MASK_FOLDER = "masks"


@dataclass
class SuiteHead:
    """What goes above ``cases:`` in a new suite."""

    model: str | None
    explainer: str = "lrp/epsilon_plus_flat"
    name: str | None = None
    description: str = ""
    label: str | None = None
    schema: str | None = None
    origin: str = "xai-harness"


@dataclass
class WriteResult:
    """What :func:`write_suite` did."""

    path: Path
    ids: list[str]
    appended: bool
    masks: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- header


def _choices(annotation: Any) -> list[Any]:
    """Allowed literal values of a settings field (unwrapping Optional/Union)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    out: list[Any] = []
    for arg in typing.get_args(annotation):
        out += _choices(arg)
    return out


def _field_line(key: str, value: Any, note: str | None, indent: int) -> str:
    text = f"{' ' * indent}{key}: {flow(value)}"
    return f"{text:<34} # {note}" if note else text


def _variant_lines(indent: int) -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    for name, kind in VARIANTS.items():
        fields = kind.settings.model_fields
        if not fields:
            lines.append(f"{pad}{name}: {{}}".ljust(34) + f" # {kind.description}")
            continue
        lines.append(f"{pad}{name}:".ljust(34) + f" # {kind.description}")
        for key, info in fields.items():
            note = info.description or ""
            choices = _choices(info.annotation)
            if choices and not any(str(c) in note for c in choices):
                note = (note + "; " if note else "") + "one of " + ", ".join(str(c) for c in choices)
            lines.append(_field_line(key, info.default, note or None, indent + 2))
    return lines


def _threshold_lines(indent: int) -> list[str]:
    lines = []
    for key, info in Thresholds.model_fields.items():
        lines.append(_field_line(key, DEFAULT_THRESHOLDS.get(key), info.description, indent))
    return lines


def render_header(head: SuiteHead) -> str:
    """The top of a new suite: model, explainer and every default written out."""
    lines: list[str] = []
    if head.schema:
        lines.append(f"# yaml-language-server: $schema={head.schema}")
    lines += [
        f"# Written by `{head.origin}`. Every default is spelled out so it can be seen and edited;",
        "# delete what you do not need. Check the file with: python -m harness validate <this file>",
    ]
    if head.name:
        lines.append(f"suite: {scalar(head.name)}")
    if head.description:
        lines.append(f"description: {scalar(head.description)}")
    lines.append(
        f"model: {scalar(head.model)}"
        if head.model
        else "model: null  # TODO: the model under test (a name in the model registry)"
    )
    lines.append(f"explainer: {scalar(head.explainer)}")
    lines.append("defaults:")
    if head.label:
        lines.append(f"  label: {scalar(head.label)}")
    lines.append("  thresholds:")
    lines += _threshold_lines(4)
    lines.append("  variants:")
    lines += _variant_lines(4)
    lines.append("cases:")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- cases


def _region_value(region: RegionDraft, suite_dir: Path, mask_paths: dict[int, Path]) -> dict[str, Any]:
    if region.kind == "mask":
        out: dict[str, Any] = {"mask": relative_to_suite(region.value, suite_dir)}
        if region.mask_value is not None:
            out["mask_value"] = int(region.mask_value)
        return out
    if region.kind == "mask_array":
        return {"mask": relative_to_suite(mask_paths[id(region)], suite_dir)}
    if region.kind == "polygon":
        return {"polygon": [[float(x), float(y)] for x, y in region.value]}
    if region.kind == "box":
        return {"box": [float(v) for v in region.value]}
    return {TODO_KEY: TODO_TEXT}


def _region_lines(key_prefix: str, value: dict[str, Any], indent: int) -> list[str]:
    """``{polygon: [...]}`` as one line, or wrapped when the polygon is long."""
    one_line = f"{key_prefix}{flow(value)}"
    if len(one_line) <= 100 or "polygon" not in value:
        return [one_line]
    wrapped = wrapped_flow_list(value["polygon"], f"{key_prefix}{{polygon: ", indent + 4, width=100)
    wrapped[-1] += "}"
    return wrapped


def render_case(case: CaseDraft, case_id: str, suite_dir: Path, mask_paths: dict[int, Path], indent: int = 2) -> str:
    """One case as a block-sequence item at ``indent`` (the column of its ``-``)."""
    pad = " " * indent
    inner = " " * (indent + 2)
    lines = comment_lines(case.comment, indent)
    lines.append(f"{pad}- id: {scalar(case_id)}")
    lines.append(f"{inner}image: {scalar(relative_to_suite(case.image, suite_dir))}")
    if case.label is not None:
        lines.append(f"{inner}label: {scalar(case.label)}")
    if case.description:
        lines.append(f"{inner}description: {scalar(case.description)}")
    values = [_region_value(r, suite_dir, mask_paths) for r in case.regions]
    if case.needs_annotation:
        lines.append(
            f"{inner}# TODO: annotate the object: replace the placeholder below by "
            "{mask: file.png}, {polygon: [[x, y], ...]} or {box: [x0, y0, x1, y1]}"
        )
    if len(values) == 1:
        lines += _region_lines(f"{inner}object: ", values[0], indent + 2)
    else:
        lines.append(f"{inner}object:")
        for value in values:
            lines += _region_lines(f"{inner}  - ", value, indent + 4)
    if case.tags:
        lines.append(f"{inner}tags: {flow(list(case.tags))}")
    for key in ("skip", "xfail"):
        value = getattr(case, key)
        if value:
            lines.append(f"{inner}{key}: {scalar(value)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files


def _existing_cases(text: str, path: Path) -> tuple[MarkedDict, list[str]]:
    try:
        raw = load_marked(text)
    except yaml.YAMLError as exc:
        raise HarnessError(
            f"{path}: cannot append to a suite with a YAML syntax error ({exc}); "
            f"run `python -m harness validate {path}`"
        ) from None
    if not isinstance(raw, MarkedDict) or "cases" not in raw:
        raise HarnessError(f"{path}: cannot append: the file is not a suite with a 'cases:' list")
    cases = raw["cases"]
    if cases is not None and not isinstance(cases, MarkedList):
        raise HarnessError(f"{path}: cannot append: 'cases' is not a list")
    ids = [str(c.get("id")) for c in (cases or []) if isinstance(c, dict) and c.get("id") is not None]
    return raw, ids


def _insertion_point(raw: MarkedDict, lines: list[str], path: Path) -> tuple[int, int]:
    """(line index to insert before, indent of the case items) for appending to ``cases``."""
    cases_line = raw.key_lines["cases"]
    after_colon = lines[cases_line - 1].split(":", 1)[1].split("#", 1)[0].strip()
    if after_colon.startswith("["):
        raise HarnessError(
            f"{path}:{cases_line}: cannot append to a flow-style 'cases: [...]' list; "
            "write the cases as a block list ('- id: ...' lines)"
        )
    cases = raw["cases"]
    indent = 2
    if cases:
        first = lines[cases.item_lines[0] - 1]
        indent = len(first) - len(first.lstrip(" "))
    later = [line for key, line in raw.key_lines.items() if line > cases_line]
    if not later:
        return len(lines), indent
    stop = min(later) - 1
    # Comments and blank lines right above the next key belong to that key.
    while stop > cases_line and (not lines[stop - 1].strip() or lines[stop - 1].lstrip().startswith("#")):
        stop -= 1
    return stop, indent


def _save_masks(cases: list[CaseDraft], ids: list[str], suite_dir: Path) -> dict[int, Path]:
    paths: dict[int, Path] = {}
    for case, case_id in zip(cases, ids):
        arrays = [r for r in case.regions if r.kind == "mask_array"]
        for n, region in enumerate(arrays):
            name = f"{case_id}.png" if len(arrays) == 1 else f"{case_id}_{n}.png"
            target = suite_dir / MASK_FOLDER / name
            write_rgb(target, np.asarray(region.value, dtype=np.uint8) * 255)
            paths[id(region)] = target
    return paths


def write_suite(path: str | Path, cases: list[CaseDraft], head: SuiteHead, *, overwrite: bool = False) -> WriteResult:
    """Write ``cases`` into a new suite, or append them to an existing one.

    An existing suite keeps its text byte for byte; the new cases are inserted as text
    at the end of its ``cases:`` list. Ids are sanitised and made unique against the
    ids already in the file. Mask arrays are saved as ``masks/<id>.png`` beside the suite.

    Raises
    ------
    HarnessError
        The existing file cannot be appended to (syntax error, no block ``cases:`` list),
        or the result does not parse back with the expected number of cases.
    """
    path = Path(path)
    suite_dir = path.parent.resolve()
    existing = path.read_text(encoding="utf-8") if path.is_file() and not overwrite else None
    taken: list[str] = []
    raw: MarkedDict | None = None
    if existing is not None:
        raw, taken = _existing_cases(existing, path)
    ids = unique_ids([c.id for c in cases], taken)
    lines = existing.splitlines(keepends=True) if existing is not None else []
    if raw is not None:
        at, indent = _insertion_point(raw, [ln.rstrip("\n") for ln in lines], path)
    else:
        at, indent = 0, 2
    mask_paths = _save_masks(cases, ids, suite_dir)
    block = "".join(render_case(c, i, suite_dir, mask_paths, indent) for c, i in zip(cases, ids))
    if existing is None:
        text = render_header(head) + block
        before = 0
    else:
        if lines and not lines[-1].endswith("\n") and at == len(lines):
            lines[-1] += "\n"
        text = "".join(lines[:at]) + block + "".join(lines[at:])
        before = len(raw["cases"] or []) if raw is not None else 0
    check = load_marked(text)
    if not isinstance(check, dict) or len(check.get("cases") or []) != before + len(cases):
        raise HarnessError(f"{path}: writing the cases would not give a valid list of cases; file left unchanged")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return WriteResult(path=path, ids=ids, appended=existing is not None, masks=list(mask_paths.values()))
