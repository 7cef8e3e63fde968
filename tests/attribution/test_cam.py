"""Grad-CAM: a hand-computed map on a tiny CNN, batching, layer choice, registry errors."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from harness.attribution.cam import GradCAM, last_conv_layer
from harness.errors import HarnessError


class Tiny(nn.Module):
    """conv (2 channels, 2x2 stride 2: +block sum, -block sum) -> in-place ReLU -> mean -> linear.

    ``side`` runs after ``conv`` but its output is discarded, and ``unused`` never runs: the
    default layer must be ``conv``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=2, stride=2, bias=False)
        with torch.no_grad():
            self.conv.weight[0].fill_(1.0)
            self.conv.weight[1].fill_(-1.0)
        self.relu = nn.ReLU(inplace=True)
        self.side = nn.Conv2d(1, 1, kernel_size=1)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 3.0], [0.5, 0.5]]))
            self.fc.bias.copy_(torch.tensor([0.1, -0.2, 0.0]))
        self.unused = nn.Conv2d(2, 2, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.conv(x))
        self.side(x)  # computed, never used
        return self.fc(a.mean(dim=(2, 3)))


M = TypeVar("M", bound=nn.Module)


def _frozen(module: M) -> M:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _hand_cam(image: np.ndarray, weight: np.ndarray, target: int) -> np.ndarray:
    """Grad-CAM of Tiny by hand: A_k = +-block sums (the convolution's output, before the ReLU);
    d y / d A_k = W[c, k] / 4 where A_k > 0 (the ReLU passes), else 0."""
    sums = image.reshape(2, 2, 2, 2).sum(axis=(1, 3))  # 2x2 block sums
    acts = np.stack([sums, -sums])
    alphas = [weight[target, k] / 4 * (acts[k] > 0).mean() for k in range(2)]
    cam = np.maximum(alphas[0] * acts[0] + alphas[1] * acts[1], 0)
    # Bilinear 2 -> 4 with half-pixel centres (align_corners=False): source x = (i + .5) / 2 - .5, clamped.
    up = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    return up @ cam @ up.T


def test_known_answer_on_a_tiny_cnn() -> None:
    model = _frozen(Tiny())
    image = np.array([[1, 2, -1, 0], [0, 1, -2, -1], [3, -1, 0.5, 0.5], [0, 1, 1, -4]], dtype=np.float32)
    x = torch.from_numpy(image)[None, None]
    cam = GradCAM(model)
    for target in range(3):
        logits, relevance = cam(x, torch.tensor([target]))
        assert cam.layer == "conv"
        torch.testing.assert_close(logits, model(x))
        expected = _hand_cam(image, model.fc.weight.numpy(), target)
        np.testing.assert_allclose(relevance[0, 0].numpy(), expected, rtol=1e-6, atol=1e-7)
    # Target 1 weighs the negative channel: its map lies where the block sums are negative.
    _, relevance = cam(x, torch.tensor([1]))
    assert relevance[0, 0, 0, 3] > 0 and relevance[0, 0, 0, 0] == 0


def test_batch_equals_one_by_one_and_channel_sum_is_the_map() -> None:
    torch.manual_seed(0)
    model = _frozen(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )
    )
    x = torch.randn(6, 3, 16, 16)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    cam = GradCAM(model)
    logits, relevance = cam(x, targets)
    assert cam.layer == "3"
    assert relevance.shape == x.shape
    assert (relevance >= 0).all() and relevance.sum() > 0
    torch.testing.assert_close(logits, model(x))
    # Every channel carries a third of the map: the channel sum is the map.
    torch.testing.assert_close(relevance[:, 0], relevance[:, 2])
    for row in range(6):
        one_logits, one = cam(x[row : row + 1], targets[row : row + 1])
        torch.testing.assert_close(one, relevance[row : row + 1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one_logits, logits[row : row + 1])
    # Another target, another map.
    _, other = cam(x[:1], torch.tensor([3]))
    assert not torch.allclose(other, relevance[:1])


def test_named_layer_and_errors() -> None:
    model = _frozen(Tiny())
    x = torch.randn(2, 1, 4, 4)
    assert torch.equal(GradCAM(model, "conv")(x, torch.tensor([0, 1]))[1], GradCAM(model)(x, torch.tensor([0, 1]))[1])
    with pytest.raises(HarnessError, match=r"'features\.18'.*convolutional layers: conv, side, unused"):
        GradCAM(model, "features.18")
    with pytest.raises(HarnessError, match="2-d output"):
        GradCAM(model, "fc")(x, torch.tensor([0, 1]))
    with pytest.raises(HarnessError, match="has none"):
        last_conv_layer(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), x)


def test_make_explainer_uses_the_registry_layer(tmp_path: Path) -> None:
    from harness.attribution import make_explainer
    from harness.models import build_model
    from harness.registry import load_registry

    (tmp_path / "models.yaml").write_text(
        "models:\n"
        "  net:\n"
        "    architecture: torchvision:vgg11\n"
        "    classes: [a, b]\n"
        "    preprocessing: {size: [32, 32], mean: [0, 0, 0], std: [1, 1, 1], value_range: [0, 1]}\n"
        "  named:\n"
        "    architecture: torchvision:vgg11\n"
        "    classes: [a, b]\n"
        "    cam_layer: features.16\n"
        "    preprocessing: {size: [32, 32], mean: [0, 0, 0], std: [1, 1, 1], value_range: [0, 1]}\n",
        encoding="utf-8",
    )
    registry = load_registry(tmp_path / "models.yaml")
    torch.manual_seed(0)
    default = make_explainer("gradcam", build_model("net", registry, torch.device("cpu")))
    assert default.name == "cam/gradcam"
    assert "features.18" in default.note and "last convolution" in default.note
    named = make_explainer("cam/gradcam", build_model("named", registry, torch.device("cpu")))
    assert "features.16" in named.note and "cam_layer" in named.note
    x = torch.rand(2, 3, 32, 32)
    logits, relevance = default(x, torch.tensor([0, 1]))
    # torchvision's VGG applies ReLU(inplace=True) right after the hooked convolution:
    # the logits must still be the model's own.
    torch.testing.assert_close(logits, default.model.module(x))
    assert relevance.shape == x.shape and (relevance >= 0).all()


def test_an_all_zero_map_is_an_answer_of_gradcam_not_of_lrp() -> None:
    """A class the model rejects: every Grad-CAM weight pushes the map below zero, the ReLU
    leaves nothing. That is Grad-CAM's answer ("nothing speaks for it"), not a broken map."""
    from harness import health

    model = _frozen(Tiny())
    x = torch.ones(1, 1, 4, 4)  # block sums +4: only channel 0 passes the ReLU
    with torch.no_grad():
        model.fc.weight[2] = torch.tensor([-1.0, 1.0])  # class 2 weighs channel 0 negatively
    logits, relevance = GradCAM(model)(x, torch.tensor([2]))
    assert not relevance.any() and logits[0, 2] < 0
    measured = health.measure(logits[0].numpy(), 2, relevance[0].numpy())
    assert health.problem(measured, False, None, zero_allowed=True) is None
    assert "all zero" in str(health.problem(measured, False, None))
