"""Grad-CAM on a vision transformer's patch tokens.

A transformer layer's output is a sequence of tokens ``A`` (N, 1 + P, D): the class token,
then one token per image patch in row-major order. Grad-CAM treats the D features of the
patch tokens like a convolution's channels: the class token is dropped,
``α_d = mean over the P patch tokens of ∂y_c/∂A_d``, the map ``ReLU(Σ_d α_d A_d)`` is
reshaped to the patch grid (``image / patch`` per side) and upsampled bilinearly to the
input size, as :class:`harness.attribution.cam.GradCAM` does for a convolution.

The default layer is the **last encoder block's first LayerNorm** (``ln_1``, the tokens
that enter its attention), not the block's output: after the last block only the class
token reaches the head (``encoder.ln`` works per token, then ``x[:, 0]``), so the patch
tokens of the last block's output have a gradient of exactly zero and their Grad-CAM map
would be empty. ``ln_1`` of the last block is the latest point where the patch tokens
still reach the class token, through that block's attention (the layer the pytorch-grad-cam
tutorial names for ViTs, ``blocks[-1].norm1``). The registry's ``cam_layer`` names another.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.attribution.cam import forward_capturing
from harness.errors import HarnessError

__all__ = ["TokenGradCAM", "default_token_layer"]


def default_token_layer(module: nn.Module) -> str:
    """The qualified name of the last encoder block's ``ln_1``."""
    layers: Any = getattr(getattr(module, "encoder", None), "layers", None)
    if not isinstance(layers, nn.Sequential) or not len(layers):
        raise HarnessError("Grad-CAM on a vision transformer needs encoder.layers (a non-empty nn.Sequential)")
    last = list(layers.named_children())[-1][0]
    if not isinstance(getattr(layers[-1], "ln_1", None), nn.Module):
        raise HarnessError(f"encoder.layers.{last} has no ln_1; name the Grad-CAM layer in the registry (cam_layer)")
    return f"encoder.layers.{last}.ln_1"


class TokenGradCAM:
    """``(x, targets) -> (logits, relevance)`` with Grad-CAM on the patch tokens of ``layer``.

    Parameters
    ----------
    module
        The vision transformer (``conv_proj`` gives the patch size).
    layer
        Qualified name of a module whose output is (N, tokens, D); ``None``: the default
        above.
    """

    def __init__(self, module: nn.Module, layer: str | None = None) -> None:
        self.module = module
        self.layer = layer or default_token_layer(module)
        conv = getattr(module, "conv_proj", None)
        if not isinstance(conv, nn.Conv2d):
            raise HarnessError("Grad-CAM on a vision transformer needs conv_proj (an nn.Conv2d patch embedding)")
        self.stride: tuple[int, int] = (int(conv.stride[0]), int(conv.stride[1]))
        self._resolve()

    def _resolve(self) -> nn.Module:
        try:
            return self.module.get_submodule(self.layer)
        except AttributeError:
            raise HarnessError(
                f"Grad-CAM layer {self.layer!r} (registry key cam_layer) is not a module of the model; "
                f"for a vision transformer name a block or a part of one, e.g. {default_token_layer(self.module)}"
            ) from None

    def describe(self) -> str:
        return f"Grad-CAM on the patch tokens of layer {self.layer}"

    def __call__(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (N, K), relevance shaped like x)``."""
        logits, tokens = forward_capturing(self.module, self._resolve(), self.layer, x)
        grid = (x.shape[-2] // self.stride[0], x.shape[-1] // self.stride[1])
        patches = grid[0] * grid[1]
        if tokens.dim() != 3 or tokens.shape[1] < patches:
            raise HarnessError(
                f"Grad-CAM layer {self.layer!r} gives an output of shape {tuple(tokens.shape)}; it needs "
                f"(N, tokens, features) with at least {patches} patch tokens ({grid[0]} x {grid[1]})"
            )
        index = torch.as_tensor(targets, device=x.device).long().reshape(-1, 1)
        (grad,) = torch.autograd.grad(logits.gather(1, index).sum(), tokens)
        # The class token (and any other leading token) comes first; the patches are the last P.
        tokens, grad = tokens[:, -patches:], grad[:, -patches:]
        weights = grad.mean(dim=1, keepdim=True)
        cam = torch.relu((weights * tokens).sum(dim=2)).reshape(-1, 1, *grid)
        cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
        relevance = (cam / x.shape[1]).expand(-1, x.shape[1], -1, -1)
        return logits.detach(), relevance.detach().contiguous()
