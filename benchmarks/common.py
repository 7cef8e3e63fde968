"""What several benchmark scripts need: a seeded random-weight torchvision model with
frozen parameters, and a wall-clock timer for one call. Each script puts this folder on
``sys.path`` by being run from it (``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision


def frozen_model(name: str, num_classes: int = 1000) -> torch.nn.Module:
    """torchvision model ``name`` with seeded random weights, in eval mode, no gradients
    for its parameters (the explainers ask for gradients of activations only)."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def timed(call: Callable[[], Any]) -> float:
    """Seconds one ``call()`` takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
