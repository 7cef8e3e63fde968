"""The model registry file: names map to an architecture, weights, classes and preprocessing.

Parsing only (no torch): a broken entry is remembered with its located error, so one
mistake does not take the other models of the file down with it. Every key is described
in docs/registry.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from harness.errors import ModelError, SpecError
from harness.preprocess import Preprocessing
from harness.yamlio import line_of, load_marked

DEFAULT_REGISTRY = "fixtures/models.yaml"


def read_class_file(path: Path) -> list[str]:
    """One class name per line (UTF-8); blank lines and surrounding whitespace are ignored."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"class file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"class file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"cannot read class file {path}: {exc}") from None
    names: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in first_line:
            raise ValueError(f"duplicate class {name!r} in {path}: lines {first_line[name]} and {number}")
        first_line[name] = number
        names.append(name)
    if not names:
        raise ValueError(f"class file {path} lists no classes")
    return names


class ModelEntry(BaseModel):
    """One model in the registry file."""

    model_config = ConfigDict(extra="forbid")

    architecture: str = Field(
        ...,
        description="'torchvision:NAME', 'timm:NAME', 'package.module:factory' or "
        "'path/to/file.py:factory' (relative to the registry)",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")
    weights: str | None = Field(
        None, description="state dict file relative to the registry file (loaded with weights_only=True)"
    )
    classes: list[str] = Field(..., description="class names in output order, or a file with one name per line")
    preprocessing: Preprocessing
    description: str = ""
    canonizer: Literal["auto", "batchnorm", "none"] = Field(
        "auto", description="BatchNorm merging for LRP: auto merges whenever the model has BatchNorm layers"
    )
    cam_layer: str | None = Field(
        None, description="Grad-CAM's layer (a qualified module name, e.g. features.18); default: the last convolution"
    )
    # Where relative paths (class file, architecture file, weights) start; the registry's folder.
    _base: Path = PrivateAttr(default_factory=Path)
    _classes_file: Path | None = PrivateAttr(default=None)

    @field_validator("classes", mode="before")
    @classmethod
    def _read_classes(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            base = (info.context or {}).get("base", Path())
            return read_class_file(Path(base) / value)
        return value

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, value: list[str]) -> list[str]:
        if len(value) < 2:
            raise ValueError(f"a classifier needs at least two classes (got {len(value)})")
        seen: dict[str, int] = {}
        for index, name in enumerate(value):
            if name in seen:
                raise ValueError(f"duplicate class {name!r} at positions {seen[name]} and {index} of the list")
            seen[name] = index
        return value

    def model_post_init(self, context: Any) -> None:
        self._base = Path((context or {}).get("base", Path()))
        raw = (context or {}).get("raw_classes")
        if isinstance(raw, str):
            self._classes_file = self._base / raw

    @property
    def base_dir(self) -> Path:
        """The registry's folder: relative paths of the entry start here."""
        return self._base

    @property
    def classes_source(self) -> str:
        """Where the class names come from (for listings)."""
        return str(self._classes_file) if self._classes_file is not None else "inline list"


@dataclass
class Registry:
    """Parsed registry file: the usable entries and the broken ones with their errors."""

    path: Path
    models: dict[str, ModelEntry]
    broken: dict[str, SpecError] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    raw: Any = None

    def names(self) -> list[str]:
        """Every model of the file, broken ones included, in file order."""
        return sorted({*self.models, *self.broken}, key=lambda n: self.lines.get(n, 0))

    def get(self, name: str) -> ModelEntry:
        if name in self.broken:
            raise ModelError(f"model {name!r} cannot be used: {self.broken[name].format()}")
        if name not in self.models:
            known = ", ".join(self.names()) or "(none)"
            raise ModelError(f"unknown model {name!r} in {self.path}; known models: {known}")
        return self.models[name]

    def error_at(self, name: str, key: str, message: str) -> SpecError:
        """An error located at ``models.NAME.KEY`` of the registry file."""
        line = line_of(self.raw, ("models", name, key)) if self.raw is not None else None
        return SpecError(self.path, line, f"models.{name}.{key}" if key else f"models.{name}", message)

    def problems(self, name: str, import_architecture: bool = True) -> list[SpecError]:
        """What is wrong with entry ``name``, located in the registry file (nothing built, no weights read)."""
        if name in self.broken:
            return [self.broken[name]]
        entry = self.get(name)
        found: list[SpecError] = []
        if import_architecture:
            from harness.architectures import resolve_factory

            try:
                resolve_factory(entry.architecture, entry.base_dir)
            except ModelError as exc:
                found.append(self.error_at(name, "architecture", str(exc)))
        if entry.weights and not (entry.base_dir / entry.weights).is_file():
            found.append(self.error_at(name, "weights", f"weights file not found: {entry.base_dir / entry.weights}"))
        return found


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")


def load_registry(path: str | Path) -> Registry:
    """Read and validate a model registry YAML (``models: {name: entry}``).

    Raises :class:`ModelError` when the file cannot be used at all; a single broken
    entry is kept in ``Registry.broken`` and raised by ``get``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model registry not found: {path} (set --xai-models or the xai_models ini option)")
    try:
        raw = load_marked(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: YAML syntax error: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise ModelError(
            f"{path}: expected a mapping 'models: {{name: {{architecture, weights, classes, preprocessing}}}}}}}}'"
        )
    registry = Registry(path=path, models={}, raw=raw)
    base = path.parent
    for key, entry in raw["models"].items():
        name = str(key)
        registry.lines[name] = line_of(raw, ("models", key)) or 0
        if not isinstance(entry, dict):
            registry.broken[name] = registry.error_at(
                name, "", "expected a mapping of architecture, weights, classes, preprocessing"
            )
            continue
        try:
            context = {"base": base, "raw_classes": entry.get("classes")}
            registry.models[name] = ModelEntry.model_validate(entry, context=context)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [p for p in first["loc"] if isinstance(p, (str, int))]
            line = line_of(raw, ("models", key, *loc))
            where = ".".join(str(p) for p in loc)
            message = (
                "missing: give the class names as a list or a file (one name per line)"
                if first["type"] == "missing" and loc == ["classes"]
                else _clean(first["msg"])
            )
            registry.broken[name] = SpecError(path, line, f"models.{name}" + (f".{where}" if where else ""), message)
    return registry
