"""Grad-CAM (Selvaraju et al. 2017) on one convolutional layer, batched.

For a layer output ``A`` (N, K, h, w) and the target logit ``y_c`` of each row, the map is
``ReLU(sum_k alpha_k A_k)`` with ``alpha_k = mean_{h,w} d y_c / d A_k``, upsampled
bilinearly to the input size so that the region metrics apply unchanged.

Written here rather than taken from a library: captum is not a dependency, and the
``grad-cam`` package pulls in OpenCV-contrib, matplotlib and scikit-learn and registers
its hooks per call; what the harness needs is one forward hook and one
``torch.autograd.grad`` for the whole batch (one target per row), which is a few lines.

The hook returns a clone of the layer output to the rest of the model: a following
``ReLU(inplace=True)`` (torchvision's VGG) would otherwise overwrite the captured
activation. The clone has the same values, so the logits are the model's own.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.errors import HarnessError


def conv_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Every ``nn.Conv2d`` of ``module`` by qualified name, in registration order."""
    return {name: sub for name, sub in module.named_modules() if isinstance(sub, nn.Conv2d)}


def last_conv_layer(module: nn.Module, x: Tensor) -> str:
    """The qualified name of the last ``nn.Conv2d`` the forward of ``x`` calls whose output the
    logits depend on.

    Found by running the model (call order, not registration order: a module may register
    its layers in any order); a convolution whose output does not reach the logits (an unused
    branch, an auxiliary head) is skipped, checked by autograd.
    """
    convs = conv_layers(module)
    if not convs:
        raise HarnessError("Grad-CAM needs a convolutional layer (nn.Conv2d); the model has none")
    called: list[tuple[str, Tensor]] = []
    handles = [layer.register_forward_hook(_capture(name, called)) for name, layer in convs.items()]
    try:
        with torch.enable_grad():
            logits = module(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    for name, output in reversed(called):
        if not output.requires_grad:
            continue
        (grad,) = torch.autograd.grad(logits.sum(), output, retain_graph=True, allow_unused=True)
        if grad is not None:
            return name
    raise HarnessError("Grad-CAM: no convolutional layer's output reaches the model's logits")


def _capture(name: str, into: list[tuple[str, Tensor]]) -> Any:
    """A forward hook that records the layer's output as a leaf requiring grad (so that its
    gradient exists even with frozen parameters) and passes a clone on to the model."""

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Tensor | None:
        if not isinstance(output, Tensor):
            return None
        leaf = output.detach().requires_grad_(True)
        into.append((name, leaf))
        return leaf.clone()

    return hook


def forward_capturing(module: nn.Module, layer: nn.Module, name: str, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``module`` on ``x`` with autograd and return ``(logits, output of layer)``; the
    output is a leaf whose gradient the caller asks for. Raises when the layer does not
    run exactly once (a layer used twice has no single activation to weight)."""
    captured: list[tuple[str, Tensor]] = []
    handle = layer.register_forward_hook(_capture(name, captured))
    try:
        with torch.enable_grad():
            logits = module(x.detach())
    finally:
        handle.remove()
    if len(captured) != 1:
        raise HarnessError(
            f"Grad-CAM layer {name!r} ran {len(captured)} times in one forward; name a layer that runs once"
        )
    return logits, captured[0][1]


class GradCAM:
    """``(x, targets) -> (logits, relevance)`` with Grad-CAM on ``layer`` (a qualified name,
    or ``None``: the last convolution, found on the first call).

    The relevance has the input's shape: the map divided evenly over the channels, so that
    the channel sum (what the metrics read) is the Grad-CAM map itself.
    """

    def __init__(self, module: nn.Module, layer: str | None = None) -> None:
        self.module = module
        self.layer = layer
        if layer is not None:
            self._resolve(layer)

    def _resolve(self, layer: str) -> nn.Module:
        try:
            return self.module.get_submodule(layer)
        except AttributeError:
            known = ", ".join(conv_layers(self.module)) or "none"
            raise HarnessError(
                f"Grad-CAM layer {layer!r} (registry key cam_layer) is not a module of the model; "
                f"its convolutional layers: {known}"
            ) from None

    def describe(self) -> str:
        return f"Grad-CAM on layer {self.layer}"

    def __call__(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (N, K), relevance shaped like x)``."""
        if self.layer is None:
            self.layer = last_conv_layer(self.module, x)
        logits, activation = forward_capturing(self.module, self._resolve(self.layer), self.layer, x)
        if activation.dim() != 4:
            raise HarnessError(
                f"Grad-CAM layer {self.layer!r} gives a {activation.dim()}-d output; it needs (N, C, H, W)"
            )
        index = torch.as_tensor(targets, device=x.device).long().reshape(-1, 1)
        # Rows do not interact (eval mode), so one backward of the summed target logits gives
        # every row the gradient of its own target.
        (grad,) = torch.autograd.grad(logits.gather(1, index).sum(), activation)
        return logits.detach(), cam_relevance(activation, grad, x.shape)


def cam_relevance(activation: Tensor, grad: Tensor, shape: torch.Size) -> Tensor:
    """The Grad-CAM map of a layer's ``activation`` (N, K, h, w) and the gradient of the target
    logits with respect to it, as a relevance of the input's ``shape`` (N, C, H, W)."""
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(shape[2:]), mode="bilinear", align_corners=False)
    relevance = (cam / shape[1]).expand(-1, shape[1], -1, -1)
    return relevance.detach().contiguous()
