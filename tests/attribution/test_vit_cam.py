"""Grad-CAM on a vision transformer's patch tokens (harness.attribution.vit_cam): a hand
computation from autograd hooks, the default layer, batching, the explainer table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer

from harness.attribution import make_explainer
from harness.attribution.vit_cam import TokenGradCAM, default_token_layer
from harness.errors import HarnessError
from harness.models import LoadedModel
from harness.registry import ModelEntry


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)
    model.eval().requires_grad_(False)
    return model


def loaded(module: nn.Module, cam_layer: str | None = None) -> LoadedModel:
    entry = ModelEntry(
        architecture="x:y",
        classes=[f"c{i}" for i in range(5)],
        preprocessing={"size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3},
        cam_layer=cam_layer,
    )
    return LoadedModel(name="vit", entry=entry, module=module, device=torch.device("cpu"))


def _bilinear(size_in: int, size_out: int) -> np.ndarray:
    """The (out, in) matrix of bilinear upsampling with half-pixel centres (align_corners=False)."""
    matrix = np.zeros((size_out, size_in))
    for i in range(size_out):
        src = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        low = int(np.floor(src))
        high = min(low + 1, size_in - 1)
        frac = src - low
        matrix[i, low] += 1 - frac
        matrix[i, high] += frac
    return matrix


def hand_cam(model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]) -> np.ndarray:
    """Grad-CAM from a hook that keeps the layer's output and its gradient (``retain_grad``),
    then numpy: drop the class token, mean gradient per feature, ReLU of the weighted sum,
    4x4 grid, upsampled to 32x32."""
    kept: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        kept.append(output)

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        logits = model(x.clone().requires_grad_(True))
    finally:
        handle.remove()
    logits[torch.arange(len(targets)), targets].sum().backward()
    tokens, grads = kept[0].detach().numpy(), kept[0].grad.numpy()
    up = _bilinear(4, 32)
    maps = []
    for row in range(len(targets)):
        patch_tokens, patch_grads = tokens[row, 1:], grads[row, 1:]  # (16, 32): the class token dropped
        weights = patch_grads.mean(axis=0)
        cam = np.maximum(patch_tokens @ weights, 0.0).reshape(4, 4)
        maps.append(up @ cam @ up.T)
    return np.stack(maps)


def test_known_answer_on_the_tiny_vit() -> None:
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = [3, 0]
    cam = TokenGradCAM(model)
    assert cam.layer == "encoder.layers.encoder_layer_1.ln_1"
    logits, relevance = cam(x, torch.tensor(targets))
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x), rtol=1e-5, atol=1e-6)
    expected = hand_cam(model, cam.layer, x, targets)
    assert expected.max() > 0
    # The map is split evenly over the three channels; the channel sum is the Grad-CAM map.
    np.testing.assert_allclose(relevance.sum(dim=1).numpy(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(relevance[:, 0], relevance[:, 2])


def test_the_last_blocks_output_reaches_the_logits_only_through_the_class_token() -> None:
    """Why the default layer is the last block's ln_1: the last block's own output has a zero
    gradient on every patch token, so its map is all zero."""
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    _, relevance = TokenGradCAM(model, "encoder.layers.encoder_layer_1")(x, torch.tensor([1, 2]))
    assert not relevance.any()
    _, relevance = TokenGradCAM(model, "encoder.layers.encoder_layer_0")(x, torch.tensor([1, 2]))
    assert relevance.any()


def test_batch_equals_one_by_one() -> None:
    model = tiny_vit()
    cam = TokenGradCAM(model)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([4, 4, 1])
    _, relevance = cam(x, targets)
    for row in range(3):
        _, one = cam(x[row : row + 1], targets[row : row + 1])
        torch.testing.assert_close(one, relevance[row : row + 1], rtol=1e-5, atol=1e-6)


def test_explainer_table_and_registry_layer() -> None:
    model = tiny_vit()
    explainer = make_explainer("cam/gradcam", loaded(model))
    assert explainer.backend == "autograd"
    assert (
        explainer.note
        == "Grad-CAM on the patch tokens of layer encoder.layers.encoder_layer_1.ln_1 (the last block's ln_1)"
    )
    named = make_explainer("gradcam", loaded(model, cam_layer="encoder.layers.encoder_layer_0"))
    assert named.note.endswith("encoder.layers.encoder_layer_0 (cam_layer in the registry)")
    x = torch.randn(1, 3, 32, 32)
    _, relevance = named(x, torch.tensor([0]))
    assert relevance.shape == x.shape
    with pytest.raises(HarnessError, match="'encoder.nope' .* is not a module of the model"):
        make_explainer("cam/gradcam", loaded(model, cam_layer="encoder.nope"))
    with pytest.raises(HarnessError, match="needs \\(N, tokens, features\\)"):
        make_explainer("cam/gradcam", loaded(model, cam_layer="conv_proj"))(x, torch.tensor([0]))


def test_default_layer_needs_encoder_blocks() -> None:
    assert default_token_layer(tiny_vit()) == "encoder.layers.encoder_layer_1.ln_1"
    with pytest.raises(HarnessError, match="encoder.layers"):
        default_token_layer(nn.Linear(2, 2))
