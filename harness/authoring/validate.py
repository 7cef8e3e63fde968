"""Checking suites without running a model: schema, files, masks, geometry, labels.

Everything pytest would only find out when a case runs, and that needs no weights, is
checked here, and every problem is reported as ``file:line: field: message``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.authoring.drafts import TODO_KEY
from harness.errors import HarnessError, ModelError, SpecError
from harness.imageio import read_rgb, read_rgba
from harness.models import Registry, resize_mask
from harness.regions import Region, check_usable, rasterize, read_mask
from harness.spec import PYTEST_MARKERS, SUITE_SUFFIX, CaseSpec, SuiteSpec, file_problem, load_suite
from harness.steps import STEP_KINDS, StepsSettings
from harness.yamlio import line_of, load_marked


@dataclass
class Report:
    """Outcome of validating several suites."""

    suites: int = 0
    cases: int = 0
    errors: list[SpecError] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.suites} suites, {self.cases} cases, {len(self.errors)} errors"


def find_suites(paths: Iterable[str | Path]) -> tuple[list[Path], list[SpecError]]:
    """Suite files named by ``paths``; folders are searched recursively for ``*.xai.yaml``."""
    found: list[Path] = []
    errors: list[SpecError] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            suites = sorted(path.rglob(f"*{SUITE_SUFFIX}"))
            if not suites:
                errors.append(SpecError(path, None, "", f"no *{SUITE_SUFFIX} files in this folder"))
            found += suites
        elif path.is_file():
            found.append(path)
        else:
            errors.append(SpecError(path, None, "", "no such file or folder"))
    return found, errors


class _Checker:
    """Checks of one suite; collects located errors."""

    def __init__(self, suite: SuiteSpec, raw: Any, registry: Registry | None, override: Sequence[str]) -> None:
        self.suite = suite
        self.raw = raw
        self.registry = registry
        self.override = bool(override)
        self.models = list(override) or suite.models
        self.errors: list[SpecError] = []

    def error(self, loc: Sequence[Any], where: str, message: str, line: int | None = None) -> None:
        self.errors.append(SpecError(self.suite.path, line or line_of(self.raw, loc) or 1, where, message))

    # ------------------------------------------------------------------ suite level

    def check_header(self) -> dict[str, list[str]]:
        """Explainer and models; returns the class list of each usable model."""
        from harness.attribution import canonical_name  # torch import, only when validating

        for name in self.suite.explainers or [self.suite.explainer]:
            try:
                canonical_name(name)
            except HarnessError as exc:
                self.error(("explainer",), "explainer", str(exc))
        if not self.models:
            self.error(("model",), "model", "no model under test: give 'model' in the suite or --model NAME")
        classes: dict[str, list[str]] = {}
        if self.registry is None:
            return classes
        key = "models" if "models" in self.raw else "model"
        for name in self.models:
            try:
                classes[name] = self.registry.get(name).classes
            except ModelError as exc:
                self.error((key,), "--model" if self.override else key, str(exc))
        return classes

    # ------------------------------------------------------------------ case level

    def case_raw(self, case: CaseSpec) -> Any:
        cases = self.raw.get("cases")
        return cases[case.index] if isinstance(cases, list) and case.index < len(cases) else None

    def check_case(self, case: CaseSpec, classes: dict[str, list[str]]) -> None:
        raw = self.case_raw(case)
        loc = ("cases", case.index)
        where = f"cases[{case.index}]"
        placeholder = isinstance(raw, dict) and isinstance(raw.get("object"), dict) and TODO_KEY in raw["object"]
        for err in case.errors:
            if placeholder and err.field.startswith(f"{where}.object"):
                continue
            self.errors.append(err)
        for variant in case.variants:
            self.errors += variant.errors
        if placeholder:
            self.error(
                loc + ("object",),
                f"{where}.object",
                "not annotated yet: replace the placeholder by {mask: ...}, {polygon: ...} or {box: ...}",
            )
        self.check_label(case, raw, classes)
        for tag in case.tags:
            if tag in PYTEST_MARKERS:
                self.error(
                    loc + ("tags",),
                    f"{where}.tags",
                    f"tag {tag!r} is the name of a pytest marker that changes how tests run; choose another "
                    f"word (use the case's own 'skip:' / 'xfail:' keys for those)",
                )
        image = self.check_image(case, raw, loc, where)
        if image is not None and case.regions and not placeholder:
            self.check_regions(case, raw, image.shape[:2], classes)
        self.check_variant_files(case, raw)

    def check_label(self, case: CaseSpec, raw: Any, classes: dict[str, list[str]]) -> None:
        in_case = isinstance(raw, dict) and "label" in raw
        defaults = self.raw.get("defaults")
        # A case that failed the schema has no resolved label but still deserves the check.
        label = case.label or (
            raw.get("label") if in_case else defaults.get("label") if isinstance(defaults, dict) else None
        )
        if not isinstance(label, str):
            return
        loc = ("cases", case.index, "label") if in_case else ("defaults", "label")
        for model, names in classes.items():
            if label not in names:
                self.error(
                    loc,
                    f"cases[{case.index}].label" if in_case else "defaults.label",
                    f"unknown class {label!r} for model {model!r}; allowed values: {', '.join(names)}",
                )

    def check_image(self, case: CaseSpec, raw: Any, loc: tuple[Any, ...], where: str) -> np.ndarray | None:
        if case.image is None:
            # The case failed the schema, so load_suite did not look at its files.
            value = raw.get("image") if isinstance(raw, dict) else None
            problem = file_problem(self.suite.path.parent, value, "image") if isinstance(value, str) and value else None
            if problem is not None:
                self.error(loc + ("image",), f"{where}.image", problem)
            return None
        if any(err.field == f"{where}.image" for err in case.errors):
            return None  # load_suite reported it
        try:
            return read_rgb(case.image)
        except HarnessError as exc:
            self.error(loc + ("image",), f"{where}.image", str(exc))
        except Exception as exc:  # noqa: BLE001 - an unreadable image is one problem among others
            self.error(loc + ("image",), f"{where}.image", f"cannot read image {case.image}: {exc}")
        return None

    def _region_loc(self, raw: Any, case: CaseSpec, index: int) -> tuple[tuple[Any, ...], str]:
        single = isinstance(raw, dict) and isinstance(raw.get("object"), dict)
        if single:
            return ("cases", case.index, "object"), f"cases[{case.index}].object"
        return ("cases", case.index, "object", index), f"cases[{case.index}].object[{index}]"

    def check_regions(self, case: CaseSpec, raw: Any, shape: tuple[int, int], classes: dict[str, list[str]]) -> None:
        height, width = shape
        usable = True
        for index, region in enumerate(case.regions):
            loc, where = self._region_loc(raw, case, index)
            problem = self.region_problem(region, case.base_dir, height, width)
            if problem is not None:
                key, message = problem
                if message:
                    self.error(loc + (key,), f"{where}.{key}", message)
                usable = False
        if not usable:
            return
        obj_loc, obj_where = ("cases", case.index, "object"), f"cases[{case.index}].object"
        try:
            mask = rasterize(case.regions, shape, case.base_dir)
            check_usable(mask)
        except HarnessError as exc:
            self.error(obj_loc, obj_where, str(exc))
            return
        for model in classes:
            size = self.registry.get(model).preprocessing.size if self.registry else None
            if size is None:
                continue
            try:
                check_usable(
                    resize_mask(mask, self.registry.get(model).preprocessing),  # type: ignore[union-attr]
                    f"object region at {model!r}'s input size {size[1]}x{size[0]}",
                )
            except HarnessError as exc:
                self.error(obj_loc, obj_where, str(exc))

    @staticmethod
    def region_problem(region: Region, base: Path, height: int, width: int) -> tuple[str, str] | None:
        """(key, message) of the first problem of one region, or ``None``.

        An empty message means a problem that ``load_suite`` has already reported.
        """
        if region.mask is not None:
            if file_problem(base, region.mask, "mask") is not None:
                return "mask", ""
            try:
                labels = read_mask(base / region.mask, (height, width))
            except HarnessError as exc:
                return "mask", str(exc)
            inside = labels == region.mask_value if region.mask_value is not None else labels > 0
            if not inside.any():
                what = (
                    f"no pixel equals mask_value {region.mask_value}"
                    if region.mask_value is not None
                    else "the mask is empty (all pixels 0)"
                )
                return ("mask_value" if region.mask_value is not None else "mask"), f"{region.mask}: {what}"
            return None
        corners = region.polygon if region.polygon is not None else [region.box[:2], region.box[2:]]  # type: ignore[index]
        points = np.asarray(corners, dtype=float)
        key = "polygon" if region.polygon is not None else "box"
        outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
        if outside.any():
            x, y = points[int(np.argmax(outside))]
            return key, (
                f"point ({x:g}, {y:g}) lies outside the {width}x{height} image (x in 0..{width}, y in 0..{height})"
            )
        if not rasterize([region], (height, width), base).any():
            return key, f"the {key} covers no pixel"
        return None

    def check_variant_files(self, case: CaseSpec, raw: Any) -> None:
        """Background and sticker images named in the variant settings must be readable."""
        seen: set[tuple[str, str]] = set()
        for variant in case.variants:
            # A variant made of steps names its files in its steps; a sweep gives each value its own spec.
            parts = (
                [(STEP_KINDS[step], settings) for step, settings in variant.settings.steps]
                if isinstance(variant.settings, StepsSettings)
                else [(variant.name, variant.settings)]
            )
            for kind, settings in parts:
                image = getattr(settings, "image", None) if settings is not None else None
                if not image or (variant.name, image) in seen:
                    continue
                if kind == "background_removed" and getattr(settings, "fill", None) != "image":
                    continue
                seen.add((variant.name, image))
                path = case.base_dir / image
                where, line = self._setting_location(raw, case, variant.name, "image")
                try:
                    read_rgba(path) if kind == "sticker_added" else read_rgb(path)
                except Exception as exc:  # noqa: BLE001 - reported, then the next file is checked
                    self.error((), where, f"{variant.name} image: {exc}", line=line)

    def _setting_location(self, raw: Any, case: CaseSpec, variant: str, key: str) -> tuple[str, int]:
        """Where a variant setting was written: in the case, else in defaults."""
        places = ((raw, ("cases", case.index, "variants")), (self.raw.get("defaults"), ("defaults", "variants")))
        for owner, base in places:
            variants = owner.get("variants") if isinstance(owner, dict) else None
            entries: list[tuple[Any, tuple[Any, ...]]] = []
            if isinstance(variants, dict):
                entries = [(variants.get(variant), base + (variant,))]
            elif isinstance(variants, list):
                entries = [
                    (item.get(variant), base + (i, variant))
                    for i, item in enumerate(variants)
                    if isinstance(item, dict) and variant in item
                ]
            for settings, loc in entries:
                if isinstance(settings, dict) and key in settings:
                    return _field_name(loc + (key,)), line_of(self.raw, loc + (key,)) or case.line
        return f"cases[{case.index}].variants.{variant}.{key}", case.line


def _field_name(loc: Sequence[Any]) -> str:
    """``("cases", 2, "variants", "sticker_added")`` -> ``cases[2].variants.sticker_added``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate_suite(
    path: str | Path, registry: Registry | None = None, model_override: Sequence[str] = ()
) -> tuple[int, list[SpecError]]:
    """Check one suite; returns (number of cases, errors in file order)."""
    suite = load_suite(path)
    if suite.error is not None:
        return 0, [suite.error]
    raw = load_marked(Path(path).read_text(encoding="utf-8"))
    checker = _Checker(suite, raw, registry, model_override)
    classes = checker.check_header()
    for case in suite.cases:
        checker.check_case(case, classes)
    unique: dict[tuple[Any, ...], SpecError] = {}
    for err in checker.errors:
        # Inherited defaults repeat the same mistake in every case: report it once.
        unique.setdefault((err.line, err.field, err.message), err)
    return len(suite.cases), sorted(unique.values(), key=lambda e: (e.line or 0, e.field))


def validate_paths(
    paths: Iterable[str | Path], registry: Registry | None = None, model_override: Sequence[str] = ()
) -> Report:
    """Validate every suite named by ``paths`` (files, or folders searched for suites)."""
    suites, errors = find_suites(paths)
    report = Report(errors=errors)
    for path in suites:
        try:
            cases, found = validate_suite(path, registry, model_override)
        except Exception as exc:  # noqa: BLE001 - every file is reported, never a traceback
            cases, found = 0, [SpecError(path, None, "", f"cannot validate this file: {type(exc).__name__}: {exc}")]
        report.suites += 1
        report.cases += cases
        report.errors += found
    return report


# --------------------------------------------------------------------------- the registry pytest would use

#: The file pytest reads ``xai_models`` from when neither option nor ini sets it.
DEFAULT_REGISTRY = "fixtures/models.yaml"
# pytest's configuration files, in the order it tries them in each folder.
_CONFIG_FILES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


@dataclass
class RegistryLocation:
    """Where pytest would take the model registry from, and how that was found."""

    path: Path
    rootdir: Path
    config: Path | None  # the configuration file that set the rootdir, if any
    from_ini: bool  # whether ``xai_models`` was set in that file

    def describe(self) -> str:
        """One sentence for messages: which folder and file decided."""
        how = f"rootdir {self.rootdir} (from {self.config.name})" if self.config else f"rootdir {self.rootdir}"
        source = f"xai_models in {self.config}" if self.from_ini else f"the default {DEFAULT_REGISTRY}"
        return f"{self.path}: {source}, relative to pytest's {how}"


def _toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest brings tomli
        import tomli as tomllib  # type: ignore[no-redef]
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _pytest_settings(path: Path) -> dict[str, Any] | None:
    """The pytest settings in a configuration file, or ``None`` when it holds none
    (pytest then looks further up); files that cannot be parsed count as holding none."""
    import iniconfig

    try:
        if path.suffix == ".toml":
            document = _toml(path)
            if path.name != "pyproject.toml":
                return dict(document.get("pytest", {}))
            tool = document.get("tool", {}).get("pytest")
            if not isinstance(tool, dict):
                return None
            native = {k: v for k, v in tool.items() if k != "ini_options"}
            return native or dict(tool.get("ini_options") or {})
        ini = iniconfig.IniConfig(str(path))
        section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
        if section in ini:
            return dict(ini[section].items())
        return {} if path.name in ("pytest.ini", ".pytest.ini") else None
    except (OSError, ValueError, iniconfig.ParseError):
        return None


def _common_ancestor(paths: Iterable[Path], cwd: Path) -> Path:
    existing = [path for path in paths if path.exists()]
    if not existing:
        return cwd
    ancestor = Path(os.path.commonpath([str(path) for path in existing]))
    return ancestor.parent if ancestor.is_file() else ancestor


def locate_registry(paths: Iterable[str | Path], cwd: str | Path | None = None) -> RegistryLocation:
    """The registry ``pytest PATHS`` run from ``cwd`` would use: pytest's rootdir (the
    first folder, from the paths' common ancestor upwards, whose pytest.toml, pytest.ini,
    pyproject.toml, tox.ini or setup.cfg holds pytest settings; else the first
    pyproject.toml or setup.py above it; else the common ancestor) and ``xai_models``
    from that file, or ``fixtures/models.yaml``, relative to the rootdir."""
    here = Path(cwd or Path.cwd()).absolute()
    ancestor = _common_ancestor((here / Path(p) for p in paths), here)
    rootdir, config, settings = None, None, {}
    first_pyproject = None
    for folder in (ancestor, *ancestor.parents):
        for name in _CONFIG_FILES:
            candidate = folder / name
            if not candidate.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None:
                first_pyproject = candidate
            found = _pytest_settings(candidate)
            if found is not None:
                rootdir, config, settings = folder, candidate, found
                break
        if rootdir is not None:
            break
    if rootdir is None and first_pyproject is not None:
        rootdir, config = first_pyproject.parent, first_pyproject
    if rootdir is None:
        setup_py = next((f for f in (ancestor, *ancestor.parents) if (f / "setup.py").is_file()), None)
        common = Path(os.path.commonpath([str(here), str(ancestor)]))
        rootdir = setup_py or (ancestor if common == Path(common.anchor) else common)
    value = settings.get("xai_models")
    from_ini = value not in (None, "")
    return RegistryLocation(
        (rootdir / str(value if from_ini else DEFAULT_REGISTRY)).resolve(), rootdir, config, from_ini
    )
