"""Predictions are the model's own (issue 16): every backend returns the unmodified
model's logits, whatever canonisation its relevance needs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

from harness.attribution import make_explainer
from harness.errors import HarnessError
from harness.models import LoadedModel
from harness.registry import ModelEntry

EXPLAINERS = [
    ("lrp/epsilon_plus_flat", "fast"),
    ("lrp/epsilon_gamma_box", "fast"),
    ("lrp/epsilon_plus_flat", "zennit"),
    ("lrp/epsilon_gamma_box", "zennit"),
    ("gradient/input_x_gradient", "auto"),
]


def wide_eps(model: nn.Module) -> nn.Module:
    """Batch norms with a large eps and non-trivial statistics: zennit's stock merge leaves
    ``x / sqrt(1 + eps)`` behind, 18 % per layer here, so canonised logits would differ."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.5
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def loaded(module: nn.Module, size: int) -> LoadedModel:
    entry = ModelEntry(
        architecture="x:y",
        classes=[f"c{i}" for i in range(10)],
        preprocessing={"size": [size, size], "mean": [0.5] * 3, "std": [0.25] * 3},
    )
    return LoadedModel(name="m", entry=entry, module=module, device=torch.device("cpu"))


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return wide_eps(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 4 * 4, 10),
        )
    )


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return wide_eps(torchvision.models.resnet18(num_classes=10))


CASES = [(bn_net, 16, name, backend) for name, backend in EXPLAINERS] + [
    (resnet18, 32, name, backend) for name, backend in EXPLAINERS if "gamma" not in name
]  # the box rule is slow


@pytest.mark.parametrize(
    "build, size, name, backend", CASES, ids=[f"{build.__name__}-{name}-{backend}" for build, _, name, backend in CASES]
)
def test_probabilities_are_the_models_own(build, size, name, backend):
    module = build()
    model = loaded(module, size)
    torch.manual_seed(1)
    x, targets = torch.randn(3, 3, size, size), torch.tensor([0, 4, 9])
    try:
        explainer = make_explainer(name, model, backend)  # type: ignore[arg-type]
    except HarnessError as exc:
        assert build is resnet18 and "not supported" in str(exc)
        pytest.skip(f"no fast engine covers resnet18 in this tree: {exc}")
    logits, relevance = explainer(x, targets)
    with torch.no_grad():
        expected = module(x)
    assert torch.allclose(logits.softmax(1), expected.softmax(1), rtol=0, atol=1e-6)
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()


def test_stock_zennit_canonised_logits_are_not_the_models():
    """What the backends above avoid: the forward of stock zennit's canonised resnet."""
    module = resnet18()
    x, targets = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 9])
    with Gradient(module, EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attributor:
        canonised, _ = attributor(x, lambda out: out * nn.functional.one_hot(targets, 10).to(out))
    with torch.no_grad():
        own = module(x)
    assert (canonised.softmax(1) - own.softmax(1)).abs().max() > 1e-3
