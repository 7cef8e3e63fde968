"""Input × gradient: a baseline explainer without LRP rules."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class InputXGradient:
    """``x * d logit[target] / dx`` for each row, with the model's own logits.

    The forward pass is the unmodified model's (with autograd enabled), so the logits
    are its predictions as they are.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (N, K), relevance shaped like x)``."""
        inputs = x.detach().requires_grad_(True)
        index = torch.as_tensor(targets, device=x.device).long().reshape(-1, 1)
        with torch.enable_grad():
            logits = self.module(inputs)
            (grad,) = torch.autograd.grad(logits.gather(1, index).sum(), inputs)
        return logits.detach(), (grad * inputs).detach()
