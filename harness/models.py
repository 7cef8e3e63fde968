"""Building registry models: architecture, weights (``weights_only=True``), freezing.

Models are built once per session, frozen, in eval mode. Parsing the registry lives in
:mod:`harness.registry`, the input geometry and normalisation in :mod:`harness.preprocess`;
both are re-exported here for the code that has always imported them from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.architectures import default_args, resolve_factory
from harness.errors import ModelError
from harness.preprocess import Preprocessing, resize_image, resize_mask
from harness.registry import ModelEntry, Registry, load_registry

__all__ = [
    "LoadedModel",
    "ModelEntry",
    "Preprocessing",
    "Registry",
    "build_model",
    "load_registry",
    "resize_image",
    "resize_mask",
    "resolve_device",
]


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
    # Explainers bound to this model by harness.api.explain, by (explainer, backend).
    explainers: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        return self.entry.classes

    @property
    def preprocessing(self) -> Preprocessing:
        return self.entry.preprocessing

    def to_input(self, images: list[np.ndarray]) -> torch.Tensor:
        """Stack uint8 RGB images (already fitted to the input size) into a normalised batch."""
        return self.preprocessing.to_tensor(images, self.device)

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images of any size -> the model's input, exactly as the harness makes it
        (resize policy, then normalisation)."""
        return self.to_input([resize_image(image, self.preprocessing) for image in images])


def _load_state(name: str, registry: Registry, entry: ModelEntry) -> tuple[dict[str, Any], Path]:
    weights = (entry.base_dir / str(entry.weights)).resolve()
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


def _build_with_state(
    name: str, entry: ModelEntry, factory: Any, args: dict[str, Any], loaded: tuple[dict[str, Any], Path] | None
) -> torch.nn.Module:
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
                if all(
                    not t.is_meta and (not t.is_floating_point() or t.dtype == torch.get_default_dtype())
                    for t in tensors
                ):
                    return module
        except Exception:  # noqa: BLE001 - any failure here is retried the plain way below
            pass
    try:
        module = factory(**args)
    except Exception as exc:  # the factory is user code: report whatever it raises
        raise ModelError(f"model {name!r}: {entry.architecture}(**{args}) failed: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelError(
            f"model {name!r}: {entry.architecture} returned {type(module).__name__}, not a torch.nn.Module"
        )
    if state is not None:
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"model {name!r}: weights {weights} do not fit {entry.architecture}: {exc}") from None
    return module


def build_model(name: str, registry: Registry, device: torch.device) -> LoadedModel:
    """Instantiate, load weights (``weights_only=True``), freeze and move a registry model."""
    entry = registry.get(name)
    factory = resolve_factory(entry.architecture, entry.base_dir)
    args = default_args(entry.architecture, entry.args, len(entry.classes))
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
        raise ModelError(
            f"model {name!r} outputs shape {tuple(probe.shape)} but the registry lists {len(entry.classes)} classes"
        )
    return LoadedModel(name=name, entry=entry, module=module, device=device)
