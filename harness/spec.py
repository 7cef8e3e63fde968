"""The YAML test-case schema: validation, defaults and where each value came from.

A suite file (``*.xai.yaml``) looks like::

    model: signs-shortcut
    explainer: lrp/epsilon_plus_flat
    defaults:
      label: speed_50
      thresholds: {min_object_mass: 0.4}
      variants:
        original: {}
        instance_removed: {fill: inpaint_telea}
        background_removed: {fill: grey}
        sticker_added: {size: 0.25, color: [0, 0, 0]}
    cases:
      - id: speed50_0007
        image: images/speed50_0007.png
        object: {mask: images/speed50_0007_mask.png}

Values resolve in the order built-in default < suite ``defaults`` < case < variant.
Validation happens per case, so one broken case fails alone.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from harness.errors import SpecError
from harness.health import DEFAULT_CONSERVATION
from harness.perturb import DEFAULT_VARIANTS, VARIANTS, VariantSettings
from harness.regions import Region
from harness.steps import JUDGES, STEP_KINDS, StepsSettings, step_settings
from harness.yamlio import line_of, load_marked, refuse_booleans

SUITE_SUFFIX = ".xai.yaml"

# Tags select cases with `-m` / `-k`: they must be words those expressions can name.
TAG_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_EXPRESSION_WORDS = frozenset({"and", "or", "not", "True", "False", "None"})
# Markers pytest itself acts on: a tag of that name would skip or xfail instead of
# labelling (the plugin refuses those of installed plugins too).
PYTEST_MARKERS = frozenset(
    {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "tryfirst", "trylast"}
)

# --------------------------------------------------------------------------- thresholds


class Thresholds(BaseModel):
    """Pass/fail thresholds; ``null`` switches a check off."""

    model_config = ConfigDict(extra="forbid")

    min_object_mass: float | None = Field(
        None,
        ge=0,
        le=1,
        description="original: share of positive relevance on the object below which the verdict is 'wrong reasons'",
    )
    max_sticker_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="sticker_added: share of positive relevance on the sticker above which the "
        "verdict is 'artifact reliance'",
    )
    min_rank_accuracy: float | None = Field(
        None, ge=0, le=1, description="original: optional minimum relevance rank accuracy on the object"
    )
    pointing_game: bool | None = Field(
        None, description="original: require the most relevant pixel to lie on the object"
    )
    pointing_tolerance: int | None = Field(
        None, ge=0, le=64, description="pixels by which the pointing game may miss the object"
    )
    conservation: tuple[float, float] | None = Field(
        None,
        description="[lo, hi]: an LRP explanation whose relevance sum / target logit lies outside this band is "
        "an error ('explanation unreliable'); null switches the check off (docs/reliability.md)",
    )
    min_object_lift: float | None = Field(
        None,
        ge=0,
        description="original: relevance mass on the object divided by the object's share of the pixels (1 = no "
        "more than its size) below which the verdict is 'wrong reasons'; judges small and large objects alike",
    )
    top_k: int | None = Field(
        None,
        ge=1,
        description="a class counts as predicted when it is among the k most probable classes (1: top-1)",
    )
    min_p: float | None = Field(
        None,
        ge=0,
        le=1,
        description="a class counts as predicted only with at least this probability (raise it when near-uniform "
        "outputs, e.g. on empty images, must not count)",
    )
    max_mass_drop: float | None = Field(
        None,
        ge=0,
        le=1,
        description="with --xai-baseline: an item whose share of positive relevance on the object fell by more than "
        "this against the baseline run is a 'regression' (docs/regression.md); null switches the check off",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_booleans(cls, info.field_name, value)

    @field_validator("conservation")
    @classmethod
    def _band(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (math.isfinite(value[0]) and math.isfinite(value[1]) and value[0] < value[1]):
            raise ValueError(f"conservation must be [lo, hi] with finite lo < hi (got {list(value)})")
        return value


# The size-aware reasons check is the default; the absolute mass check is there for a suite
# that sets it (benchmarks/measure_reasons.py measured both on the demo models).
MIN_OBJECT_LIFT = 2.0

DEFAULT_THRESHOLDS: dict[str, Any] = {
    "min_object_mass": None,
    "max_sticker_share": 0.3,
    "min_rank_accuracy": None,
    "pointing_game": False,
    "pointing_tolerance": 0,
    "conservation": DEFAULT_CONSERVATION,
    "min_object_lift": MIN_OBJECT_LIFT,
    "top_k": 1,
    "min_p": None,
    "max_mass_drop": 0.2,
}

# --------------------------------------------------------------------------- raw models

_VariantsField = Union[list[Any], dict[str, Any], None]  # noqa: UP007 - a runtime alias that pydantic reads


class Defaults(BaseModel):
    """Suite-level defaults applied to every case."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(
        None, min_length=1, description="expected class of every case unless the case says otherwise"
    )
    thresholds: Thresholds | None = None
    variants: _VariantsField = Field(None, description="variants to run and their settings")


class SuiteHeader(BaseModel):
    """Everything of a suite except the cases themselves."""

    model_config = ConfigDict(extra="forbid")

    suite: str | None = Field(None, description="a name for the suite (defaults to the file name)")
    description: str = ""
    model: str | None = Field(None, description="the model under test (a name in the model registry)")
    models: list[str] | None = Field(None, min_length=1, description="several models under test")
    explainer: str | list[str] = Field(
        "lrp/epsilon_plus_flat",
        description="explainer registry key, or a list of them (each item judged per explainer)",
    )
    defaults: Defaults = Field(default_factory=lambda: Defaults.model_validate({}))
    cases: list[Any] = Field(..., min_length=1, description="the test cases")

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        # The same model twice would give two items of one name, one of them lost in the results.
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"a model is listed twice (got {value})")
        return value

    @field_validator("explainer")
    @classmethod
    def _explainers(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError(f"give one or more distinct explainers (got {value})")
        return value


class SweepGlob(BaseModel):
    """Sweep values read from files: ``{glob: backgrounds/*.png, sample: 5, seed: 0}``."""

    model_config = ConfigDict(extra="forbid")

    glob: str = Field(..., min_length=1, description="file pattern relative to the YAML file (sorted matches)")
    sample: int | None = Field(None, ge=1, le=100_000, description="take this many of the matches, chosen by seed")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the sample")

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_booleans(cls, info.field_name, value)


class CaseModel(BaseModel):
    """One test case as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, description="unique within the suite; items are named id[variant]")
    image: str = Field(..., description="image path, relative to the YAML file")
    label: str | None = Field(None, min_length=1, description="expected class (overrides defaults.label)")
    description: str = ""
    object: list[Region] | None = Field(
        None,
        min_length=1,
        description="the annotated object: mask, polygon or box (or a list of them); required unless expect: absent",
    )
    expect: Literal["present", "absent"] = Field(
        "present",
        description="absent: the image shows no such object, and every variant fails if the label is predicted",
    )
    thresholds: Thresholds | None = None
    variants: _VariantsField = None
    overrides: dict[str, dict[str, Any]] | None = Field(
        None, description="change settings of single variants: {variant: {setting: value}}"
    )
    skip: bool | str = Field(False, description="skip the case (a string gives the reason)")
    xfail: bool | str = Field(False, description="expect the case to fail (a string gives the reason)")
    tags: list[str] = Field(default_factory=list, description="words that select the case with pytest -m / -k")

    @field_validator("tags")
    @classmethod
    def _tags_are_words(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not TAG_PATTERN.fullmatch(tag) or tag in _EXPRESSION_WORDS:
                raise ValueError(
                    f"tag {tag!r} is not a word pytest -m can select: use letters, digits, '_' and '-', "
                    f"starting with a letter (not and/or/not)"
                )
        return value

    @field_validator("object", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("id")
    @classmethod
    def _id_fits_a_node_id(cls, value: str) -> str:
        # The id becomes part of pytest node ids (file::...::id[variant]); these characters would
        # split it there, so --lf, -k and pasted ids would select the wrong items.
        bad = [part for part in ("::", "[", "]") if part in value]
        if bad or value != value.strip() or any(ord(ch) < 32 for ch in value):
            what = f"contains {' and '.join(repr(b) for b in bad)}" if bad else "has control characters or edge spaces"
            raise ValueError(
                f"case id {value!r} {what}; ids become pytest node ids: use letters, digits, '_', '-', '.'"
            )
        return value


# --------------------------------------------------------------------------- resolved specs


@dataclass
class VariantSpec:
    """A variant of a case with its settings and thresholds fully resolved."""

    name: str
    line: int
    settings: VariantSettings | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)
    errors: list[SpecError] = field(default_factory=list)
    # threshold name -> the level it came from: built-in, suite, case or variant
    threshold_sources: dict[str, str] = field(default_factory=dict)
    judge: str = ""  # the verdict rule when it is not the name (steps, or "absent" for negative cases)
    sweep: str | None = None  # this item's sweep value, as it appears in the item id

    @property
    def rule(self) -> str:
        """Which verdict rule judges this variant (see harness.verdicts)."""
        return self.judge or self.name


@dataclass
class CaseSpec:
    """A case ready to plan: paths are absolute, defaults merged."""

    suite_path: Path
    index: int
    case_id: str
    line: int
    variants: list[VariantSpec]
    image: Path | None = None
    label: str | None = None
    label_line: int | None = None
    description: str = ""
    regions: list[Region] = field(default_factory=list)
    skip: bool | str = False
    xfail: bool | str = False
    tags: list[str] = field(default_factory=list)
    tags_line: int | None = None
    errors: list[SpecError] = field(default_factory=list)
    expect: str = "present"

    @property
    def base_dir(self) -> Path:
        return self.suite_path.parent


@dataclass
class SuiteSpec:
    """A parsed suite: header values and cases (each possibly carrying its own errors)."""

    path: Path
    name: str
    models: list[str]
    explainer: str  # the first of explainers
    description: str = ""
    cases: list[CaseSpec] = field(default_factory=list)
    error: SpecError | None = None
    explainer_line: int | None = None  # where 'explainer' is written (None: the default)
    model_line: int | None = None
    explainers: list[str] = field(default_factory=list)  # every explainer of the suite, in order


# --------------------------------------------------------------------------- error text


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/list wrappers to reach a BaseModel class (for 'allowed keys')."""
    while True:
        origin = get_origin(annotation)
        if origin in (Union, list, tuple) or str(origin) == "types.UnionType":
            models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
            inner = [a for a in get_args(annotation) if get_origin(a) in (list,)]
            if models:
                return models[0]
            if inner:
                annotation = inner[0]
                continue
            return None
        return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _model_at(model: type[BaseModel], loc: Iterable[Any]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return current


def _format_loc(prefix: str, loc: Iterable[Any]) -> str:
    """``cases[3].object.mask`` from a loc already cleaned by :func:`_clean_loc`."""
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _clean_loc(raw: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the list index pydantic adds when a single mapping was wrapped into a list
    (``object: {box: ...}`` validates as ``object[0]``), by walking the raw data."""
    out: list[Any] = []
    node = raw
    for part in loc:
        if isinstance(part, int) and not isinstance(node, list):
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _errors_from_validation(
    exc: ValidationError,
    model: type[BaseModel],
    raw: Any,
    path: Path,
    prefix: str,
    root: Any,
    root_loc: tuple[Any, ...],
) -> list[SpecError]:
    """Turn pydantic errors into located, readable :class:`SpecError` objects."""
    out: list[SpecError] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # Pydantic reports union branches as extra loc parts ('list[...]', 'tuple[...]'): drop them.
        branch_names = ("str", "int", "float", "bool", "is-instance")
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in branch_names)))
        loc = _clean_loc(raw, loc)
        where = _format_loc(prefix, loc)
        line = line_of(root, root_loc + loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "?"
            message = f"unknown key {loc[-1]!r}; allowed keys: {allowed}"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = err["msg"]
            if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], (dict, list)):
                message += f" (got {err['input']!r})"
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        if any(e.field == where for e in out):
            continue  # union branches repeat the same complaint; the first is the clearest
        out.append(SpecError(path, line, where, message))
    return out


# --------------------------------------------------------------------------- variants


def _variant_entries(
    value: Any, where: str, path: Path, root: Any, root_loc: tuple[Any, ...]
) -> tuple[list[tuple[str, Any, tuple[Any, ...]]], list[SpecError]]:
    """Normalise the list / mapping forms of ``variants`` to (name, settings, loc) triples."""
    entries: list[tuple[str, Any, tuple[Any, ...]]] = []
    errors: list[SpecError] = []
    if isinstance(value, dict):
        for name, settings in value.items():
            entries.append((str(name), settings, root_loc + (name,)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                entries.append((item, {}, root_loc + (i,)))
            elif isinstance(item, dict) and len(item) == 1:
                ((name, settings),) = item.items()
                entries.append((str(name), settings, root_loc + (i, name)))
            else:
                errors.append(
                    SpecError(
                        path,
                        line_of(root, root_loc + (i,)),
                        f"{where}[{i}]",
                        f"expected a variant name or a one-key mapping name: settings; "
                        f"known variants: {', '.join(VARIANTS)}",
                    )
                )
    else:
        errors.append(
            SpecError(
                path, line_of(root, root_loc), where, "expected a list of variant names or a mapping name: settings"
            )
        )
    if isinstance(value, (dict, list)) and not value:
        # An empty list would silently drop the case: there would be no item to fail.
        errors.append(
            SpecError(
                path,
                line_of(root, root_loc),
                where,
                f"no variants: list at least one of {', '.join(VARIANTS)} (or leave the key out for all of them)",
            )
        )
    seen: set[str] = set()
    for name, _, loc in entries:
        if name in seen:
            errors.append(SpecError(path, line_of(root, loc), where, f"variant {name!r} is listed twice"))
        seen.add(name)
    return entries, errors


def _merge_thresholds(*levels: Thresholds | None) -> dict[str, Any]:
    merged = dict(DEFAULT_THRESHOLDS)
    for level in levels:
        if level is not None:
            merged.update(level.model_dump(exclude_unset=True))
    return merged


def _threshold_sources(levels: list[Thresholds | None]) -> dict[str, str]:
    """Where each merged threshold came from; ``levels`` as given to :func:`_merge_thresholds`
    (suite defaults, case, then the variant's levels)."""
    sources = dict.fromkeys(DEFAULT_THRESHOLDS, "built-in")
    for position, level in enumerate(levels):
        if level is not None:
            name = ("suite", "case")[position] if position < 2 else "variant"
            sources.update(dict.fromkeys(level.model_dump(exclude_unset=True), name))
    return sources


def _resolve_variants(
    case_raw: Any,
    case: CaseModel | None,
    defaults: Defaults,
    suite_raw: Any,
    path: Path,
    case_loc: tuple[Any, ...],
    where: str,
) -> tuple[list[VariantSpec], list[SpecError]]:
    errors: list[SpecError] = []
    default_entries: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    if defaults.variants is not None:
        entries, errs = _variant_entries(
            defaults.variants, "defaults.variants", path, suite_raw, ("defaults", "variants")
        )
        errors += errs
        default_entries = {name: (settings, loc) for name, settings, loc in entries}
    else:
        default_entries = {name: ({}, ()) for name in DEFAULT_VARIANTS}

    case_variants = case_raw.get("variants") if isinstance(case_raw, dict) else None
    if case_variants is not None:
        entries, errs = _variant_entries(case_variants, f"{where}.variants", path, suite_raw, case_loc + ("variants",))
        errors += errs
        chosen = [(name, settings, loc) for name, settings, loc in entries]
    else:
        # Variants inherited from the defaults are reported at the case's line.
        chosen = [(name, {}, ()) for name in default_entries]

    overrides = case_raw.get("overrides") if isinstance(case_raw, dict) else None
    if isinstance(overrides, dict):
        names = {name for name, _, _ in chosen}
        for name in overrides:
            if name not in names:
                errors.append(
                    SpecError(
                        path,
                        line_of(suite_raw, case_loc + ("overrides", name)),
                        f"{where}.overrides.{name}",
                        f"overrides a variant the case does not run; its variants: {', '.join(sorted(names))}",
                    )
                )

    case_line = line_of(suite_raw, case_loc) or 0
    specs: list[VariantSpec] = []
    for name, settings_raw, loc in chosen:
        line = line_of(suite_raw, loc) if loc else case_line
        field_name = f"{where}.variants.{name}" if case_variants is not None else f"defaults.variants.{name}"
        sources: list[tuple[Any, tuple[Any, ...], str]] = [
            (*default_entries.get(name, ({}, ())), f"defaults.variants.{name}"),
            (settings_raw if case_variants is not None else {}, loc, field_name),
        ]
        if isinstance(overrides, dict) and name in overrides:
            sources.append((overrides[name], case_loc + ("overrides", name), f"{where}.overrides.{name}"))
        resolver = _Resolver(path, suite_raw, name, line or case_line, field_name)
        levels: list[Thresholds | None] = [defaults.thresholds, case.thresholds if case else None]
        specs += resolver.resolve(sources, levels)
    return specs, errors


_Source = tuple[Any, tuple[Any, ...], str]  # (raw settings, their loc in the YAML, their field name)


class _Resolver:
    """Resolves one named variant of one case: its settings (or steps), thresholds and sweep.

    A built-in name merges its settings level by level (defaults < case < overrides); a
    variant of one's own is a ``judge`` and ``steps`` (the case may replace either), and
    an override sets a setting in every step that has it. A sweep makes one spec per value.
    """

    def __init__(self, path: Path, suite_raw: Any, name: str, line: int, field_name: str) -> None:
        self.path, self.suite_raw, self.name, self.line, self.field = path, suite_raw, name, line, field_name
        self.problems: list[SpecError] = []
        self.steps_at: tuple[Any, ...] = ()  # where the steps were written (for their errors' line)

    def error(self, loc: tuple[Any, ...] | None, where: str, message: str) -> None:
        line = line_of(self.suite_raw, loc) if loc else None
        self.problems.append(SpecError(self.path, line or self.line, where, message))

    def resolve(self, sources: list[_Source], levels: list[Thresholds | None]) -> list[VariantSpec]:
        spec = VariantSpec(name=self.name, line=self.line)
        compound = self.name not in VARIANTS
        merged: dict[str, Any] = {}  # built-in: its settings; steps: judge and steps
        overrides: list[_Source] = []
        sweep: _Source | None = None
        image_at: tuple[str, int] = (f"{self.field}.image", self.line)
        swept = any(isinstance(raw, dict) and "sweep" in raw for raw, _, label in sources if ".overrides." not in label)
        for source, source_loc, label in sources:
            if source is None:
                continue
            if not isinstance(source, dict):
                self.error(source_loc, label, "expected a mapping of settings (or {})")
                continue
            source = dict(source)
            raw_thresholds = source.pop("thresholds", None)
            if raw_thresholds is not None:
                try:
                    levels.append(Thresholds.model_validate(raw_thresholds))
                except ValidationError as exc:
                    self.problems += _errors_from_validation(
                        exc,
                        Thresholds,
                        raw_thresholds,
                        self.path,
                        f"{label}.thresholds",
                        self.suite_raw,
                        source_loc + ("thresholds",),
                    )
            is_override = ".overrides." in label
            if "sweep" in source and not is_override:
                sweep = (source.pop("sweep"), source_loc + ("sweep",), f"{label}.sweep")
            if compound and is_override:
                overrides.append((source, source_loc, label))
            elif compound:
                for key in source:
                    if key not in ("judge", "steps"):
                        self.error(
                            source_loc + (key,),
                            f"{label}.{key}",
                            f"unknown key {key!r}; allowed keys: judge, steps, sweep, thresholds",
                        )
                if "steps" in source:
                    self.steps_at = source_loc + ("steps",)
                merged.update({k: v for k, v in source.items() if k in ("judge", "steps")})
            else:
                kind = VARIANTS[self.name]
                merged.update(source)
                if "image" in source:
                    image_at = (f"{label}.image", line_of(self.suite_raw, source_loc + ("image",)) or self.line)
                try:
                    kind.settings.model_validate(source)
                except ValidationError as exc:
                    refused = _errors_from_validation(
                        exc, kind.settings, source, self.path, label, self.suite_raw, source_loc
                    )
                    # A setting the sweep supplies (fill: image, the images swept) is checked per value.
                    self.problems += [e for e in refused if not (swept and e.field == label)]
        parsed = self._steps(merged, overrides) if compound else None
        values: list[tuple[str | None, Any]] = [(None, None)]
        key = ""
        if sweep is not None and not self.problems:
            found = self._sweep_values(sweep, parsed)
            if found is not None:
                key, values = found
        out: list[VariantSpec] = []
        for tag, value in values:
            if self.problems:
                break
            settings: VariantSettings | None
            if parsed is not None:
                steps = [
                    (step, {**raw, key: value} if tag is not None and key in step_settings(step).model_fields else raw)
                    for step, raw in parsed
                ]
                settings = self._validate_steps(steps, tag, sweep)
            else:
                settings = self._builtin({**merged, key: value} if tag is not None else merged, image_at, tag, sweep)
            out.append(replace(spec, settings=settings, sweep=tag, errors=[]))
        if self.problems or not out:
            spec.errors += self.problems
            return [spec]
        judge = str(merged.get("judge", "")) if compound else ""
        for one in out:
            one.thresholds = _merge_thresholds(*levels)
            one.threshold_sources = _threshold_sources(levels)
            one.judge = judge
        return out

    # ------------------------------------------------------------ built-in variants

    def _builtin(
        self, merged: dict[str, Any], image_at: tuple[str, int], tag: str | None, sweep: _Source | None
    ) -> VariantSettings | None:
        kind = VARIANTS[self.name]
        if tag is not None and sweep is not None:  # a sweep value's problem is reported at the sweep
            image_at = (sweep[2], line_of(self.suite_raw, sweep[1]) or self.line)
        try:
            settings = kind.settings.model_validate(merged)
        except ValidationError as exc:
            if tag is not None and sweep is not None:
                self.error(sweep[1], sweep[2], f"value {tag!r}: {_messages(exc)}")
                return None
            # Each level was valid alone, their combination is not (e.g. fill: image from the case,
            # no image anywhere): report it where the variant is.
            self.problems += [
                SpecError(self.path, self.line, self.field, e.message)
                for e in _errors_from_validation(exc, kind.settings, merged, self.path, "", self.suite_raw, ())
            ]
            return None
        problem = _image_problem(self.path, self.name, settings)
        if problem is not None:
            self.problems.append(SpecError(self.path, image_at[1], image_at[0], problem))
            return None
        return settings

    # ------------------------------------------------------------ variants made of steps

    def _steps(self, merged: dict[str, Any], overrides: list[_Source]) -> list[tuple[str, dict[str, Any]]] | None:
        """The steps as written (each with the case's overrides), checked for shape; settings not yet validated."""
        judge = merged.get("judge")
        steps = merged.get("steps")
        if "steps" not in merged:
            self.error(
                None,
                self.field,
                f"unknown variant {self.name!r}; allowed values: {', '.join(VARIANTS)}, "
                f"or a variant of your own made of steps ({', '.join(STEP_KINDS)}) with a judge",
            )
            return None
        if judge not in JUDGES:
            got = "" if judge is None else f" (got {judge!r})"
            self.error(
                None,
                f"{self.field}.judge",
                f"a variant made of steps needs 'judge': the rule that decides it, one of {', '.join(JUDGES)}{got}",
            )
        if not isinstance(steps, list) or not steps:
            self.error(
                self.steps_at, f"{self.field}.steps", f"expected a non-empty list of steps ({', '.join(STEP_KINDS)})"
            )
            return None
        parsed: list[tuple[str, dict[str, Any]]] = []
        for i, item in enumerate(steps):
            where = f"{self.field}.steps[{i}]"
            if not (isinstance(item, dict) and len(item) == 1 and next(iter(item)) in STEP_KINDS):
                self.error(
                    self.steps_at + (i,),
                    where,
                    f"expected a one-key mapping step: settings; steps: {', '.join(STEP_KINDS)}",
                )
                continue
            ((step, settings),) = item.items()
            if settings is None:
                settings = {}
            if not isinstance(settings, dict):
                self.error(self.steps_at + (i,), f"{where}.{step}", "expected a mapping of settings (or {})")
                continue
            parsed.append((step, dict(settings)))
        for source, source_loc, label in overrides:
            for key, value in source.items():
                takers = [s for s, _ in parsed if key in step_settings(s).model_fields]
                if not takers:
                    self.error(
                        source_loc + (key,),
                        f"{label}.{key}",
                        f"no step of {self.name!r} has a setting {key!r} (its steps: "
                        f"{', '.join(s for s, _ in parsed)})",
                    )
                for step, settings in parsed:
                    if step in takers:
                        settings[key] = value
        return None if self.problems else parsed

    def _validate_steps(
        self, parsed: list[tuple[str, dict[str, Any]]], tag: str | None, sweep: _Source | None
    ) -> StepsSettings | None:
        validated: list[tuple[str, VariantSettings]] = []
        for i, (step, raw) in enumerate(parsed):
            model = step_settings(step)
            where = f"{self.field}.steps[{i}].{step}"
            at = self.steps_at + (i, step) if self.steps_at else None
            try:
                settings = model.model_validate(raw)
            except ValidationError as exc:
                if tag is not None and sweep is not None:
                    self.error(sweep[1], sweep[2], f"value {tag!r}: {_messages(exc)}")
                else:
                    found = _errors_from_validation(exc, model, raw, self.path, where, self.suite_raw, at or ())
                    self.problems += [SpecError(self.path, e.line or self.line, e.field, e.message) for e in found]
                continue
            problem = _image_problem(self.path, STEP_KINDS[step], settings)
            if problem is not None:
                if tag is not None and sweep is not None and sweep[2].endswith(".image"):
                    self.error(sweep[1], sweep[2], problem)  # the swept file, not the step, is missing
                else:
                    self.error(at, f"{where}.image", problem)
                continue
            validated.append((step, settings))
        if self.problems:
            return None
        return StepsSettings(steps=tuple(validated))

    # ------------------------------------------------------------ sweeps

    def _sweep_values(
        self, sweep: _Source, parsed: list[tuple[str, dict[str, Any]]] | None
    ) -> tuple[str, list[tuple[str | None, Any]]] | None:
        """The swept setting and its values, each with the label it gives the item id."""
        raw, loc, where = sweep
        if not (isinstance(raw, dict) and len(raw) == 1):
            self.error(loc, where, "expected a mapping of one setting to its values, e.g. {position: [top_left, ...]}")
            return None
        ((key, spec),) = raw.items()
        key = str(key)
        fields = (
            [f for step, _ in parsed for f in step_settings(step).model_fields]
            if parsed is not None
            else list(VARIANTS[self.name].settings.model_fields)
        )
        if key not in fields:
            self.error(loc + (key,), f"{where}.{key}", f"{self.name!r} has no setting {key!r} to sweep")
            return None
        values = self._values(spec, loc + (key,), f"{where}.{key}")
        if values is None:
            return None
        out: list[tuple[str | None, Any]] = []
        seen: dict[str, Any] = {}
        for value in values:
            tag = sweep_label(value)
            if tag in seen:
                self.error(loc, where, f"two values give the same item name {tag!r} ({seen[tag]!r}, {value!r})")
                return None
            seen[tag] = value
            out.append((tag, value))
        return key, out

    def _values(self, spec: Any, loc: tuple[Any, ...], where: str) -> list[Any] | None:
        if isinstance(spec, list) and spec:
            return list(spec)
        if isinstance(spec, dict):
            try:
                found = SweepGlob.model_validate(spec)
            except ValidationError as exc:
                self.problems += _errors_from_validation(exc, SweepGlob, spec, self.path, where, self.suite_raw, loc)
                return None
            base = self.path.parent
            try:
                files = sorted(p.relative_to(base).as_posix() for p in base.glob(found.glob) if p.is_file())
            except (ValueError, NotImplementedError, OSError) as exc:
                self.error(loc, f"{where}.glob", f"cannot use pattern {found.glob!r}: {exc}")
                return None
            if not files:
                self.error(loc, f"{where}.glob", f"no file matches {found.glob!r} (looked in {base})")
                return None
            if found.sample is not None and found.sample < len(files):
                files = sorted(random.Random(found.seed).sample(files, found.sample))
            return files
        self.error(loc, where, "expected a non-empty list of values, or {glob: PATTERN, sample: N, seed: S}")
        return None


def _messages(exc: ValidationError) -> str:
    """The errors of one validation in one line, each with its setting's name."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return "; ".join(parts)


def _image_problem(path: Path, kind: str, settings: VariantSettings) -> str | None:
    """Why the image file a variant's settings name cannot be read (a background only with fill: image)."""
    image = getattr(settings, "image", None)
    if image and not (kind == "background_removed" and getattr(settings, "fill", None) != "image"):
        return file_problem(path.parent, image, "image")
    return None


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def sweep_label(value: Any) -> str:
    """A short, readable part of an item id for one sweep value: the value itself, a file's stem."""
    if isinstance(value, str) and ("/" in value or Path(value).suffix.lower() in _IMAGE_SUFFIXES):
        text = Path(value).stem
    elif isinstance(value, (list, tuple)):
        text = "_".join(str(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "value"


# --------------------------------------------------------------------------- loading


def _case_id_guess(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)
        image = raw.get("image")
        if isinstance(image, str) and image:
            return Path(image).stem
    return f"case{index}"


def _resolve_case(raw: Any, index: int, header: SuiteHeader, suite_raw: Any, path: Path) -> CaseSpec:
    loc = ("cases", index)
    where = f"cases[{index}]"
    line = line_of(suite_raw, loc) or 1
    case_id = _case_id_guess(raw, index)
    errors: list[SpecError] = []
    model: CaseModel | None = None
    if not isinstance(raw, dict):
        errors.append(SpecError(path, line, where, "a case must be a mapping with keys id, image, object, ..."))
    else:
        try:
            model = CaseModel.model_validate(raw)
        except ValidationError as exc:
            errors += _errors_from_validation(exc, CaseModel, raw, path, where, suite_raw, loc)
    variants, variant_errors = _resolve_variants(raw, model, header.defaults, suite_raw, path, loc, where)
    errors += variant_errors
    case = CaseSpec(suite_path=path, index=index, case_id=case_id, line=line, variants=variants, errors=errors)
    if model is None:
        return case
    case.case_id = model.id
    case.description = model.description
    case.label = model.label or header.defaults.label
    case.label_line = line_of(suite_raw, loc + ("label",)) if model.label else line_of(suite_raw, ("defaults", "label"))
    case.regions = model.object or []
    case.expect = model.expect
    if model.expect == "absent":
        for variant in variants:
            variant.judge = "absent"
    elif model.object is None:
        errors.append(
            SpecError(
                path,
                line,
                f"{where}.object",
                "required field is missing (only an 'expect: absent' case may leave out the object)",
            )
        )
    case.skip, case.xfail, case.tags = model.skip, model.xfail, model.tags
    case.tags_line = line_of(suite_raw, loc + ("tags",)) if model.tags else None
    if case.label is None:
        errors.append(SpecError(path, line, f"{where}.label", "no label: give 'label' in the case or in defaults"))
    image_problem = file_problem(path.parent, model.image, "image")
    if image_problem is None:
        case.image = (path.parent / model.image).resolve()
    else:
        # Not resolved (a loop cannot be), but still the path the author meant.
        case.image = Path(os.path.abspath(path.parent / model.image))
        errors.append(SpecError(path, line_of(suite_raw, loc + ("image",)), f"{where}.image", image_problem))
    for r_index, region in enumerate(model.object or []):
        mask_problem = file_problem(path.parent, region.mask, "mask") if region.mask is not None else None
        if mask_problem is not None:
            single = isinstance(raw.get("object"), dict)
            field_name = f"{where}.object.mask" if single else f"{where}.object[{r_index}].mask"
            region_loc = loc + (("object",) if single else ("object", r_index))
            errors.append(SpecError(path, line_of(suite_raw, region_loc + ("mask",)), field_name, mask_problem))
    return case


def file_problem(base: Path, name: str, what: str) -> str | None:
    """Why ``base / name`` is not a readable file, or ``None`` when it is one."""
    target = base / name
    try:
        target.resolve(strict=True)
    except FileNotFoundError:
        return f"{what} file not found: {name} (looked in {base})"
    except RuntimeError:
        return f"{what} path is a symlink loop: {name} (looked in {base})"
    except OSError as exc:
        return f"cannot open {what} {name}: {exc.strerror or exc} (looked in {base})"
    if not target.is_file():
        return f"{what} path is not a file: {name} (looked in {base})"
    return None


def _read_text(path: Path) -> str:
    # Decoded here, not by read_text, so a decoding error keeps the bytes (for its line).
    return path.read_bytes().decode("utf-8")


def load_suite(path: str | Path, text: str | None = None) -> SuiteSpec:
    """Parse and validate a suite file.

    YAML syntax errors and header errors are returned in ``SuiteSpec.error`` (the
    suite cannot be split into cases then); each case carries its own errors.
    """
    path = Path(path)
    name = path.name[: -len(SUITE_SUFFIX)] if path.name.endswith(SUITE_SUFFIX) else path.stem
    suite = SuiteSpec(path=path, name=name, models=[], explainer="lrp/epsilon_plus_flat")
    try:
        raw = load_marked(_read_text(path) if text is None else text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        suite.error = SpecError(path, mark.line + 1 if mark else None, "", f"YAML syntax error: {problem}")
        return suite
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        suite.error = SpecError(
            path,
            line,
            "",
            f"cannot read file: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
            f"at offset {exc.start}); save the suite as UTF-8",
        )
        return suite
    except (OSError, RuntimeError) as exc:
        suite.error = SpecError(path, None, "", f"cannot read file: {exc}")
        return suite
    if not isinstance(raw, dict):
        suite.error = SpecError(path, 1, "", "a suite must be a mapping with keys model, explainer, defaults, cases")
        return suite
    try:
        header = SuiteHeader.model_validate(raw)
    except ValidationError as exc:
        errors = _errors_from_validation(exc, SuiteHeader, raw, path, "", raw, ())
        suite.error = (
            errors[0]
            if len(errors) == 1
            else SpecError(path, errors[0].line, errors[0].field, "; ".join(e.format() for e in errors))
        )
        return suite
    if header.model and header.models:
        suite.error = SpecError(path, line_of(raw, ("models",)), "models", "give either 'model' or 'models', not both")
        return suite
    suite.name = header.suite or name
    suite.description = header.description
    suite.models = header.models or ([header.model] if header.model else [])
    suite.explainers = [header.explainer] if isinstance(header.explainer, str) else list(header.explainer)
    suite.explainer = suite.explainers[0]
    suite.explainer_line = line_of(raw, ("explainer",)) if "explainer" in raw else None
    suite.model_line = (
        line_of(raw, ("models",) if "models" in raw else ("model",)) if ("models" in raw or "model" in raw) else None
    )
    seen: dict[str, int] = {}
    for index, case_raw in enumerate(header.cases):
        case = _resolve_case(case_raw, index, header, raw, path)
        if case.case_id in seen:
            case.errors.append(
                SpecError(
                    path,
                    case.line,
                    f"cases[{index}].id",
                    f"duplicate case id {case.case_id!r} (first used by cases[{seen[case.case_id]}])",
                )
            )
            case.case_id = f"{case.case_id}~{index}"
        else:
            seen[case.case_id] = index
        suite.cases.append(case)
    return suite


def check_labels(suite: SuiteSpec, classes: list[str], model_name: str) -> None:
    """Add an error to every case whose label is not one of the model's classes."""
    for case in suite.cases:
        if case.label is not None and case.label not in classes:
            case.errors.append(
                SpecError(
                    suite.path,
                    case.label_line or case.line,
                    f"cases[{case.index}].label",
                    f"unknown class {case.label!r} for model {model_name!r}; allowed values: {', '.join(classes)}",
                )
            )


def suite_json_schema() -> dict[str, Any]:
    """JSON Schema of a suite file (for editors); variant settings are listed per name."""
    schema = SuiteHeader.model_json_schema()
    schema["$defs"] = schema.get("$defs", {})
    schema["$defs"]["CaseModel"] = CaseModel.model_json_schema(ref_template="#/$defs/{model}")
    for sub in list(schema["$defs"]["CaseModel"].pop("$defs", {}).items()):
        schema["$defs"][sub[0]] = sub[1]
    schema["properties"]["cases"] = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/CaseModel"}}
    # The loader wraps one region in a list before validating (the field's before
    # validator), so ``object: {mask: ...}``, the documented form, is valid too.
    case_object = schema["$defs"]["CaseModel"]["properties"]["object"]
    case_object["anyOf"] = [{"$ref": "#/$defs/Region"}, *case_object.get("anyOf", [])]
    sweep_schema = {
        "type": "object",
        "description": "one item per value of one setting: {setting: [values]} or {setting: {glob, sample, seed}}",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": {"anyOf": [{"type": "array", "minItems": 1}, {"$ref": "#/$defs/SweepGlob"}]},
    }
    glob = SweepGlob.model_json_schema()
    glob.pop("$defs", None)
    schema["$defs"]["SweepGlob"] = glob
    variant_props = {}
    for name, kind in VARIANTS.items():
        sub = kind.settings.model_json_schema(ref_template="#/$defs/{model}")
        for key, value in sub.pop("$defs", {}).items():
            schema["$defs"][key] = value
        sub.setdefault("properties", {})["thresholds"] = {"$ref": "#/$defs/Thresholds"}
        sub["properties"]["sweep"] = sweep_schema
        schema["$defs"][kind.settings.__name__] = sub
        variant_props[name] = {"anyOf": [{"$ref": f"#/$defs/{kind.settings.__name__}"}, {"type": "null"}]}
    steps_schema = {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                step: {"anyOf": [{"$ref": f"#/$defs/{VARIANTS[kind].settings.__name__}"}, {"type": "null"}]}
                for step, kind in STEP_KINDS.items()
            },
            "additionalProperties": False,
        },
    }
    schema["$defs"]["StepsVariant"] = {
        "type": "object",
        "description": "a variant of your own: steps applied in order, judged by one of the built-in variants' rules",
        "properties": {
            "judge": {"enum": list(JUDGES), "description": "the verdict rule"},
            "steps": steps_schema,
            "sweep": sweep_schema,
            "thresholds": {"$ref": "#/$defs/Thresholds"},
        },
        "additionalProperties": False,
    }
    own_variant = {"anyOf": [{"$ref": "#/$defs/StepsVariant"}, {"type": "null"}]}
    variants_schema = {
        "anyOf": [
            {"type": "object", "properties": variant_props, "additionalProperties": own_variant},
            {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "string", "description": "a built-in variant or one defined in defaults"},
                        {
                            "type": "object",
                            "properties": variant_props,
                            "additionalProperties": own_variant,
                            "maxProperties": 1,
                        },
                    ]
                },
            },
            {"type": "null"},
        ]
    }
    schema["$defs"]["Defaults"]["properties"]["variants"] = variants_schema
    schema["$defs"]["CaseModel"]["properties"]["variants"] = variants_schema
    schema["title"] = "xai-harness suite"
    return schema
