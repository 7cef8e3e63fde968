"""The graph engine's faster layer kernels: transposed convolutions run as convolutions
(strided grouped ones phase by phase), 1x1 convolutions as matrix products into reused
buffers, and z+ of a signed input taken from the layer's output, against
``conv_transpose2d`` and zennit."""

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
    # strided grouped: phase by phase (polyphase)
    "depthwise_3x3_stride2": (6, 6, 3, 2, 1, 1, 6, 10),
    "depthwise_3x3_stride2_odd": (6, 6, 3, 2, 1, 1, 6, 11),
    "depthwise_5x5_stride2": (4, 4, 5, 2, 2, 1, 4, 13),
    "depthwise_unpadded_output_padding": (4, 4, 3, 2, 0, 1, 4, 10),
    "depthwise_kernel_equals_stride": (4, 4, 2, 2, 0, 1, 4, 9),
    "grouped_multiplier_stride3": (4, 8, 3, 3, 1, 1, 4, 13),
    "grouped_two_per_group_stride2": (6, 4, 3, 2, 1, 1, 2, 12),
}
POLYPHASE = {name for name in TRANSPOSES if name.startswith(("depthwise_", "grouped_"))} - {"depthwise_5x5"}


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
    expected = rule.ops.conv_transpose(s, layer.weight.detach(), x.shape, groups)
    got = rule.ops.transpose(s, "w", x.shape)
    assert got.shape == x.shape
    assert (rule.ops.plan("w")[0] == "polyphase") == (name in POLYPHASE)
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


class _Branches(nn.Module):
    """Two 1x1 convolutions read one activation: the first relevance that reaches it waits
    while the other branch's layers run, so it must not live in a reused buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(8, 6, 1), nn.ReLU(), nn.Conv2d(6, 3, 1))
        self.b = nn.Sequential(nn.Conv2d(8, 5, 1), nn.ReLU(), nn.Conv2d(5, 3, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        return torch.cat([self.a(h), self.b(h)], dim=1)


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
        "relu6_depthwise_5x5_strided": lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU6(), nn.Conv2d(6, 6, 5, stride=2, padding=2, groups=6)
        ),
        "signed_grouped_multiplier_strided": lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.Hardswish(), nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=3)
        ),
        # 1x1 convolutions run as matrix products, with a bias and after a batch norm merge
        "pointwise_after_relu": lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 1), nn.ReLU(), nn.Conv2d(5, 4, 1, bias=False)
        ),
        "pointwise_branches": _Branches,
        "pointwise_signed_merged": lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 6, 1, bias=False), nn.BatchNorm2d(6), nn.SiLU()
        ),
    }


BODIES = _bodies()


def test_wide_fan_in_takes_z_plus_from_the_output() -> None:
    engine = GraphLRP(_head(BODIES["signed_wide_fan_in_merged"]()), "epsilon_plus_flat")
    modes = sorted(rule._zplus_from_output for rule in engine._rules.values())
    assert modes == [False, False, True]


@pytest.mark.parametrize("rule_set", GraphLRP.RULE_SETS)
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


def test_signed_strided_depthwise_transposes_phase_by_phase() -> None:
    """z+'s ``a+ W+^T s + a- W-^T s`` written phase by phase equals the two full transposes."""
    torch.manual_seed(3)
    layer = nn.Conv2d(5, 5, 3, 2, 1, groups=5).double()
    rule = AffineRule(
        layer, None, rules.ZPLUS, nonneg=False, epsilon=1e-6, stabilizer=1e-6, gamma=0.25, low=-3.0, high=3.0
    )
    rule.convert(torch.device("cpu"), torch.float64)
    a = torch.randn(2, 5, 11, 11, dtype=torch.float64)
    s = torch.randn(2, 5, 6, 6, dtype=torch.float64)
    wp, wn = rule.t["wp"], rule.t["wn"]
    assert wp is not None and wn is not None
    positive, negative = (rule.ops.conv_transpose(s, w, a.shape, 5) for w in (wp, wn))
    expected = torch.where(a > 0, positive, negative) * a
    torch.testing.assert_close(rule.ops.times_input(s, a, a.shape, "wp", "wn"), expected, rtol=1e-12, atol=1e-12)


def test_reused_buffers_leave_no_trace_between_batches() -> None:
    """The workspace is shared by all layers and kept between calls: a batch of another size
    in between must not change a batch's relevance, and nothing returned may alias it."""
    torch.manual_seed(4)
    model = randomise(_head(BODIES["pointwise_signed_merged"]()), seed=4)
    engine = GraphLRP(model, "epsilon_plus_flat")
    gen = torch.Generator().manual_seed(4)
    first, other = torch.randn(3, 3, 12, 12, generator=gen), torch.randn(5, 3, 12, 12, generator=gen)
    _, before = engine(first, torch.tensor([0, 1, 2]))
    kept = before.clone()
    engine(other, torch.tensor([4, 3, 2, 1, 0]))
    _, after = engine(first, torch.tensor([0, 1, 2]))
    assert engine.workspace.nbytes > 0
    torch.testing.assert_close(before, kept, rtol=0, atol=0)
    torch.testing.assert_close(after, kept, rtol=0, atol=0)
    _, fresh = GraphLRP(model, "epsilon_plus_flat")(first, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(fresh, kept, rtol=0, atol=0)
