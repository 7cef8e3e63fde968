"""The model registry: names in YAML map to an architecture, local weights, classes and
input preprocessing. Models are built once per session, frozen, in eval mode."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import ModelError


class Preprocessing(BaseModel):
    """How uint8 RGB pixels become the model's input tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int] = Field(..., description="input height, width")
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    value_range: tuple[float, float] = Field((0.0, 1.0), description="0..255 is scaled linearly to this range before normalising")

    @model_validator(mode="after")
    def _check(self) -> "Preprocessing":
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need three values (R, G, B)")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        if min(self.size) < 1:
            raise ValueError("size must be positive")
        return self

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lowest and highest normalised input value per channel, shape (1, 3, 1, 1).

        The z^B (box) rule of LRP needs these.
        """
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        lo, hi = self.value_range
        return (lo - mean) / std, (hi - mean) / std


class ModelEntry(BaseModel):
    """One model in the registry file."""

    model_config = ConfigDict(extra="forbid")

    architecture: str = Field(..., description="'package.module:factory' or 'torchvision:<model name>'")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")
    weights: str | None = Field(None, description="state dict file relative to the registry file (loaded with weights_only=True)")
    classes: list[str] = Field(..., min_length=2)
    preprocessing: Preprocessing
    description: str = ""
    canonizer: Literal["auto", "batchnorm", "none"] = Field(
        "auto", description="BatchNorm merging for LRP: auto merges whenever the model has BatchNorm layers")


@dataclass
class Registry:
    """Parsed registry file."""

    path: Path
    models: dict[str, ModelEntry]

    def get(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise ModelError(f"unknown model {name!r} in {self.path}; known models: {', '.join(self.models) or '(none)'}")
        return self.models[name]


def load_registry(path: str | Path) -> Registry:
    """Read and validate a model registry YAML (``models: {name: entry}``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model registry not found: {path} (set --xai-models or the xai_models ini option)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: YAML syntax error: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise ModelError(f"{path}: expected a mapping 'models: {{name: {{architecture, weights, classes, preprocessing}}}}'")
    models: dict[str, ModelEntry] = {}
    for name, entry in raw["models"].items():
        try:
            models[str(name)] = ModelEntry.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"{path}: models.{name}.{where}: {first['msg']}") from None
    return Registry(path=path, models=models)


def _factory(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"architecture {spec!r} must look like 'package.module:factory' or 'torchvision:vgg11'")
    if module_name == "torchvision":
        module_name = "torchvision.models"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import {module_name!r} for architecture {spec!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelError(f"{module_name!r} has no {attr!r} (architecture {spec!r})") from None


def resolve_device(requested: str | None) -> torch.device:
    """``auto`` (or nothing) means CUDA when present, else CPU."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {requested!r} requested but CUDA is not available")
    return device


@dataclass
class LoadedModel:
    """A frozen model ready for inference, with its registry entry."""

    name: str
    entry: ModelEntry
    module: torch.nn.Module
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return self.entry.classes

    @property
    def preprocessing(self) -> Preprocessing:
        return self.entry.preprocessing

    def to_input(self, images: list[np.ndarray]) -> torch.Tensor:
        """Stack uint8 RGB images (already at the input size) into a normalised batch."""
        pre = self.preprocessing
        batch = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float()
        lo, hi = pre.value_range
        batch = batch * ((hi - lo) / 255.0) + lo
        mean = torch.tensor(pre.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(pre.std, device=self.device).view(1, 3, 1, 1)
        return (batch - mean) / std


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width): area averaging when shrinking, bilinear when growing."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask, as the oracle prescribes."""
    height, width = size
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0


def _load_state(name: str, registry: Registry, entry: ModelEntry) -> tuple[dict[str, Any], Path]:
    weights = (registry.path.parent / str(entry.weights)).resolve()
    if not weights.is_file():
        raise ModelError(f"model {name!r}: weights file not found: {weights} (from {registry.path})")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"model {name!r}: cannot load {weights} as a state dict (weights_only=True): {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"model {name!r}: {weights} holds a {type(state).__name__}, not a state dict")
    return state, weights


def _build_with_state(name: str, entry: ModelEntry, factory: Any, args: dict[str, Any],
                      loaded: tuple[dict[str, Any], Path] | None) -> torch.nn.Module:
    """Instantiate the architecture and load ``state`` into it.

    With weights, the module is first built on the meta device and the loaded tensors
    are assigned to it: random initialisation that the weights overwrite anyway costs
    about a second for a vgg11, in every session and every xdist worker. Where that
    does not give a complete float32 model (a factory that computes with its tensors,
    buffers outside the state dict, weights of another dtype), it is built the plain way.
    """
    state, weights = loaded if loaded is not None else (None, None)
    if state is not None:
        try:
            with torch.device("meta"):
                module = factory(**args)
            if isinstance(module, torch.nn.Module):
                module.load_state_dict(state, strict=True, assign=True)
                tensors = [*module.parameters(), *module.buffers()]
                if all(not t.is_meta and (not t.is_floating_point() or t.dtype == torch.get_default_dtype())
                       for t in tensors):
                    return module
        except Exception:  # noqa: BLE001 - any failure here is retried the plain way below
            pass
    try:
        module = factory(**args)
    except Exception as exc:  # the factory is user code: report whatever it raises
        raise ModelError(f"model {name!r}: {entry.architecture}(**{args}) failed: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"model {name!r}: {entry.architecture} returned {type(module).__name__}, not a torch.nn.Module")
    if state is not None:
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"model {name!r}: weights {weights} do not fit {entry.architecture}: {exc}") from None
    return module


def build_model(name: str, registry: Registry, device: torch.device) -> LoadedModel:
    """Instantiate, load weights (``weights_only=True``), freeze and move a registry model."""
    entry = registry.get(name)
    factory = _factory(entry.architecture)
    args = dict(entry.args)
    if entry.architecture.startswith("torchvision") and "weights" not in args:
        args["weights"] = None  # never let torchvision reach for a download
    loaded = _load_state(name, registry, entry) if entry.weights else None
    module = _build_with_state(name, entry, factory, args, loaded)
    module.eval()
    for param in module.parameters():
        # Frozen parameters: gradients are only needed w.r.t. the input, which halves LRP's cost.
        param.requires_grad_(False)
    module.to(device)
    with torch.no_grad():
        height, width = entry.preprocessing.size
        probe = module(torch.zeros(1, 3, height, width, device=device))
    if probe.ndim != 2 or probe.shape[1] != len(entry.classes):
        raise ModelError(f"model {name!r} outputs shape {tuple(probe.shape)} but the registry lists "
                         f"{len(entry.classes)} classes")
    return LoadedModel(name=name, entry=entry, module=module, device=device)
