"""The graph LRP engine on torchvision classifiers (random weights, non-trivial batch norms) against zennit.

The reference is zennit's composite on the model canonised by ``zennit_reference.canonise``
(batch norms merged exactly, additions through ``zennit.layer.Sum``, gates passed); for
torchvision ResNets also zennit's own ``ResNetCanonizer``.  Inputs are small (2x3x32x32)
so that the fast set stays within seconds per model; the other rule sets and the larger
models run with ``-m slow``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
from torch import Tensor, nn
from zennit_reference import (
    HIGH,
    LOW,
    RULE_SETS,
    assert_relevance_close,
    randomise,
    reference,
    stock_resnet_reference,
    without_shifts,
)

from harness.attribution.graph import GraphLRP

FAST = {
    ("resnet18", "epsilon_plus_flat"), ("resnet18", "epsilon_gamma_box"), ("mobilenet_v2", "epsilon_plus_flat"),
    ("efficientnet_b0", "epsilon_plus_flat"),
    ("densenet121", "epsilon_plus_flat"), ("shufflenet_v2_x0_5", "epsilon_plus_flat"),
}  # fmt: skip
MODELS = (
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121", "vgg16_bn",
    "shufflenet_v2_x0_5",
)  # fmt: skip
# DenseNet's transition convolutions feed an average pool without a ReLU in between: the Norm
# rule then divides by window means of mixed sign, which amplifies the last-bit difference
# between the model's own activations (this engine) and the merged layers' (zennit) to ~1e-3.
# In float64 the two agree to 1e-11, which is the test.
DOUBLE = {"densenet121"}


def _cases() -> list[Any]:
    out: list[Any] = []
    for name in MODELS:
        for rule_set in RULE_SETS:
            marks = [] if (name, rule_set) in FAST else [pytest.mark.slow]
            out.append(pytest.param(name, rule_set, marks=marks, id=f"{name}-{rule_set}"))
    return out


_BUILT: dict[str, nn.Module] = {}


def model_named(name: str) -> nn.Module:
    if name not in _BUILT:
        torch.manual_seed(11)
        # a milder batch-norm shift keeps relevance from vanishing in the deep linear bottlenecks
        model = randomise(getattr(torchvision.models, name)(weights=None, num_classes=10), seed=11, mean=0.2)
        _BUILT[name] = model.double() if name in DOUBLE else model
    return _BUILT[name]


def batch(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(12)
    return torch.randn(2, 3, 32, 32, generator=gen).to(dtype), torch.tensor([3, 8])


@pytest.mark.parametrize(("name", "rule_set"), _cases())
def test_torchvision_model_matches_zennit(name: str, rule_set: str) -> None:
    model = model_named(name)
    dtype = next(model.parameters()).dtype
    x, targets = batch(dtype)
    low, high = LOW.to(dtype), HIGH.to(dtype)
    assert GraphLRP.check(model, rule_set) is None
    _, ref = reference(model, rule_set, x, targets, low=low, high=high)
    logits, relevance = GraphLRP(model, rule_set, low=low, high=high)(x, targets)
    if dtype == torch.float64:
        assert_relevance_close(relevance, ref, rtol=1e-8, atol_scale=1e-9)
    else:
        assert_relevance_close(relevance, ref)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "rule_set", ["epsilon_plus_flat", *(pytest.param(r, marks=pytest.mark.slow) for r in RULE_SETS[1:])]
)
def test_resnet18_matches_zennits_own_resnet_canonizer(rule_set: str) -> None:
    # zennit's MergeBatchNorm leaves each merged batch norm computing x / sqrt(1 + eps); with
    # eps = 0 that is the identity, and the stock canonizer is an exact reference.
    torch.manual_seed(13)
    model = randomise(torchvision.models.resnet18(weights=None, num_classes=10), seed=13)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.0
    gen = torch.Generator().manual_seed(13)
    x, targets = torch.randn(2, 3, 32, 32, generator=gen), torch.tensor([0, 9])
    ref_logits, ref = stock_resnet_reference(model, rule_set, x, targets, low=LOW, high=HIGH)
    logits, relevance = GraphLRP(model, rule_set, low=LOW, high=HIGH)(x, targets)
    assert_relevance_close(relevance, ref)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)


def test_resnet18_relevance_is_conserved_unlike_merging_alone() -> None:
    # issue 11: without a rule for the residual additions relevance sums grew to 200x the
    # logit; with Sum/Norm and zero biases (and batch norms without shift) LRP conserves it
    torch.manual_seed(14)
    model = randomise(torchvision.models.resnet18(weights=None, num_classes=10), seed=14)
    without_shifts(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(14))
    targets = torch.tensor([2, 5])
    logits, relevance = GraphLRP(model, "epsilon_plus_flat")(x, targets)
    target_logits = logits.gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(relevance.sum((1, 2, 3)), target_logits, rtol=1e-4, atol=1e-6)
