"""The Python API: the harness's models and explainers for notebooks and outside checks.

``load_model`` builds a registry model exactly as a run does; ``explain`` runs one of
the harness's explainers (same backends, same relevance) on a batch that is already
the model's input. See docs/api.md.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.attribution import canonical_name, make_explainer
from harness.errors import HarnessError
from harness.models import LoadedModel, build_model, resolve_device
from harness.preprocess import Preprocessing
from harness.registry import DEFAULT_REGISTRY, ModelEntry, load_registry

# Plain modules passed to explain() get one LoadedModel wrapper each, for as long as they live.
_WRAPPED: weakref.WeakKeyDictionary[torch.nn.Module, LoadedModel] = weakref.WeakKeyDictionary()


def load_model(name: str, registry: str | Path = DEFAULT_REGISTRY, device: str = "auto") -> LoadedModel:
    """Build registry model ``name``: weights loaded (``weights_only=True``), eval mode, frozen.

    The result has ``module``, ``classes``, ``preprocessing``, ``to_input(images)`` (uint8
    RGB images already at the input size -> normalised batch) and ``prepare(images)``
    (images of any size, resized by the model's resize policy first).
    """
    return build_model(name, load_registry(registry), resolve_device(device))


def _wrap(module: torch.nn.Module, x: torch.Tensor, preprocessing: Any) -> LoadedModel:
    """A LoadedModel around a plain module (classes ``0..K-1``)."""
    if preprocessing is None and module in _WRAPPED:
        return _WRAPPED[module]
    device = next((p.device for p in module.parameters()), x.device)
    with torch.no_grad():
        count = int(module(x[:1].to(device)).shape[1])
    pre = Preprocessing.model_validate(preprocessing if preprocessing is not None else {"size": tuple(x.shape[-2:])})
    entry = ModelEntry.model_validate(
        {
            "architecture": "(module given to harness.attribution)",
            "classes": [str(i) for i in range(count)],
            "preprocessing": pre,
        }
    )
    loaded = LoadedModel(name=type(module).__name__, entry=entry, module=module, device=device)
    if preprocessing is None:
        _WRAPPED[module] = loaded
    return loaded


def _targets(model: LoadedModel, targets: Any, rows: int) -> torch.Tensor:
    if isinstance(targets, torch.Tensor):
        values: list[Any] = targets.flatten().tolist()
    elif isinstance(targets, (str, int, np.integer)):
        values = [targets] * rows
    elif isinstance(targets, Sequence) or isinstance(targets, np.ndarray):
        values = list(targets)
    else:
        raise HarnessError(f"targets must be class indices or names, got {type(targets).__name__}")
    if len(values) != rows:
        raise HarnessError(f"{len(values)} targets for {rows} images")
    indices = []
    for value in values:
        if isinstance(value, str):
            if value not in model.classes:
                raise HarnessError(
                    f"unknown class {value!r} for model {model.name!r}; "
                    f"known classes: {', '.join(model.classes[:20])}" + (", ..." if len(model.classes) > 20 else "")
                )
            indices.append(model.classes.index(value))
        elif isinstance(value, (int, np.integer)) and 0 <= int(value) < len(model.classes):
            indices.append(int(value))
        else:
            raise HarnessError(f"target {value!r} is not a class index 0..{len(model.classes) - 1} or a class name")
    return torch.tensor(indices, dtype=torch.long, device=model.device)


def explain(
    model: LoadedModel | torch.nn.Module,
    images: torch.Tensor,
    targets: Any,
    explainer: str = "lrp/epsilon_plus_flat",
    backend: str = "auto",
    preprocessing: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and relevance of ``targets`` for a preprocessed batch.

    Parameters
    ----------
    model
        A :class:`LoadedModel` (from :func:`load_model`) or a plain ``torch.nn.Module``
        (switched to eval mode for the call; its classes are the indices).
    images
        Float tensor (N, C, H, W), already the model's input (normalised); one image
        (C, H, W) is taken as a batch of one.
    targets
        One class per image: indices or class names, a list or a tensor; a single value
        applies to every image.
    explainer, backend
        As ``--xai-explainer`` and ``--xai-lrp-backend``: ``auto`` uses the fast LRP engine
        where it covers the model and zennit otherwise.
    preprocessing
        Plain modules only: a preset name or mapping (docs/registry.md). It matters only
        for ``lrp/epsilon_gamma_box``, whose input bounds come from it (default: inputs
        in 0..1).

    Returns
    -------
    (logits, relevance)
        Logits (N, K) and relevance shaped like ``images``, detached, on the model's device.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise HarnessError(
            "images must be a float tensor (N, C, H, W) that is already the model's input; "
            "LoadedModel.prepare(list of uint8 RGB arrays) makes one"
        )
    x = images.unsqueeze(0) if images.ndim == 3 else images
    if x.ndim != 4:
        raise HarnessError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    key = (canonical_name(explainer), backend)
    if isinstance(model, LoadedModel):
        if preprocessing is not None:
            raise HarnessError("preprocessing= is for plain modules; a registry model has its own")
        loaded = model
    elif isinstance(model, torch.nn.Module):
        loaded = _wrap(model, x, preprocessing)
    else:
        raise HarnessError(f"model must be a LoadedModel or a torch.nn.Module, got {type(model).__name__}")
    x = x.to(loaded.device)
    labels = _targets(loaded, targets, x.shape[0])
    was_training = loaded.module.training
    loaded.module.eval()
    try:
        # A registry model is frozen, so its bound explainer is kept; a plain module's
        # weights may change between calls (training), so it is bound afresh.
        bound = loaded.explainers.get(key) if loaded is model else None
        if bound is None:
            bound = make_explainer(key[0], loaded, backend)  # type: ignore[arg-type]
            if loaded is model:
                loaded.explainers[key] = bound
        logits, relevance = bound(x, labels)
    finally:
        loaded.module.train(was_training)
    return logits.detach(), relevance.detach()
