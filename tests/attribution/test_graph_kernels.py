"""The graph engine's faster layer kernels: transposed convolutions run as convolutions, and
z+ of a signed input taken from the layer's output, against ``conv_transpose2d`` and zennit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from zennit_reference import HIGH, LOW, assert_relevance_close, randomise, reference

from harness.attribution import rules
from harness.attribution.graph import GraphLRP
from harness.attribution.rules import AffineRule

# (in channels, out channels, kernel, stride, padding, dilation, groups, input side)
TRANSPOSES = {
    "3x3": (4, 6, 3, 1, 1, 1, 1, 9),
    "dilated_grouped": (6, 4, 3, 1, 2, 2, 2, 11),
    "padding_beyond_kernel": (3, 5, 3, 1, 3, 1, 1, 7),
    "depthwise_5x5": (6, 6, 5, 1, 2, 1, 6, 10),
    "1x1": (8, 3, 1, 1, 0, 1, 1, 6),
    "strided_1x1_remainder": (5, 7, 1, 2, 0, 1, 1, 10),
    "strided_1x1_grouped": (6, 4, 1, 3, 0, 1, 2, 11),
    "strided_3x3": (4, 6, 3, 2, 1, 1, 1, 10),
    "padded_1x1_strided": (4, 6, 1, 2, 1, 1, 1, 9),
}


@pytest.mark.parametrize("name", list(TRANSPOSES))
def test_transpose_equals_conv_transpose(name: str) -> None:
    cin, cout, k, stride, padding, dilation, groups, side = TRANSPOSES[name]
    torch.manual_seed(0)
    layer = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups).double()
    rule = AffineRule(
        layer, None, rules.EPSILON, nonneg=False, epsilon=1e-6, stabilizer=1e-6, gamma=0.25, low=-3.0, high=3.0
    )
    rule.convert(torch.device("cpu"), torch.float64)
    x = torch.randn(2, cin, side, side, dtype=torch.float64)
    s = torch.randn_like(layer(x))
    expected = rule._conv_t(s, layer.weight.detach(), x.shape, groups)
    got = rule._lin_t(s, "w", x.shape)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # and it is the gradient of the layer
    xx = x.clone().requires_grad_(True)
    out = nn.functional.conv2d(xx, layer.weight, None, stride, padding, dilation, groups)
    (grad,) = torch.autograd.grad(out, xx, s)
    torch.testing.assert_close(got, grad, rtol=1e-12, atol=1e-12)


def _head(body: nn.Module, side: int = 12) -> nn.Module:
    model = nn.Sequential(body, nn.Flatten(), nn.LazyLinear(5)).eval()
    model(torch.zeros(1, 3, side, side))
    return model


def _bodies() -> dict[str, Callable[[], nn.Module]]:
    return {
        # a strided 1x1 convolution leaves the last row and column of its even input unread
        "strided_1x1_after_relu": lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 1, stride=2)
        ),
        "strided_1x1_signed": lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.SiLU(), nn.Conv2d(6, 4, 1, stride=2, groups=2)
        ),
        # fan-in 16 * 3 * 3 = 144: z+ from the (batch-normed) output, without a bias
        "signed_wide_fan_in_merged": lambda: nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 6, 3, padding=1, bias=False),
            nn.BatchNorm2d(6),
            nn.SiLU(),
        ),
        "signed_wide_fan_in_1x1": lambda: nn.Sequential(
            nn.Conv2d(3, 160, 3, padding=1), nn.Hardswish(), nn.Conv2d(160, 4, 1), nn.ReLU()
        ),
        "signed_narrow_fan_in": lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(6, 4, 1)
        ),
        "signed_depthwise": lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.SiLU(), nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.SiLU()
        ),
        "signed_depthwise_strided": lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.SiLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6)
        ),
    }


BODIES = _bodies()


def test_wide_fan_in_takes_z_plus_from_the_output() -> None:
    engine = GraphLRP(_head(BODIES["signed_wide_fan_in_merged"]()), "epsilon_plus_flat")
    modes = sorted(rule._zplus_from_output for rule in engine._rules.values())
    assert modes == [False, False, True]


@pytest.mark.parametrize("rule_set", ["epsilon_plus_flat", "epsilon_alpha2_beta1_flat"])
@pytest.mark.parametrize("name", list(BODIES))
def test_kernels_match_zennit(name: str, rule_set: str) -> None:
    torch.manual_seed(0)
    model = randomise(_head(BODIES[name]()), seed=0)
    gen = torch.Generator().manual_seed(0)
    x, targets = torch.randn(2, 3, 12, 12, generator=gen), torch.tensor([1, 4])
    _, ref = reference(model, rule_set, x, targets, low=LOW, high=HIGH)
    logits, relevance = GraphLRP(model, rule_set, low=LOW, high=HIGH)(x, targets)
    assert_relevance_close(relevance, ref)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-6)


def test_residual_sum_is_recomputed_and_the_relu_after_it_runs_in_place() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 6, 3, padding=1)
            self.a = nn.Conv2d(6, 6, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: Tensor) -> Tensor:
            h = self.relu(self.stem(x))
            out = self.a(h)
            out += h
            return self.relu(out)

    torch.manual_seed(1)
    model = randomise(_head(Block()), seed=1)
    gen = torch.Generator().manual_seed(1)
    x, targets = torch.randn(2, 3, 12, 12, generator=gen), torch.tensor([0, 3])
    _, ref = reference(model, "epsilon_plus_flat", x, targets)
    engine = GraphLRP(model, "epsilon_plus_flat")
    _, relevance = engine(x, targets)
    assert_relevance_close(relevance, ref)
    add = next(n for n in engine.traced.live if n.name.startswith("add") or n.name.startswith("iadd"))
    assert add not in engine._keep
