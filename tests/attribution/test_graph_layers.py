"""The graph LRP engine on small models, one layer type (or graph construct) at a time, against zennit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zennit_reference import HIGH, LOW, RULE_SETS, assert_relevance_close, randomise, reference

from harness.attribution.graph import GraphLRP


class Lambda(nn.Module):
    """A module whose forward is a function of its input and its two layers (traced by fx)."""

    def __init__(self, fn: Callable[..., Tensor], first: nn.Module, second: nn.Module | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.first = first
        self.second = second if second is not None else nn.Identity()
        self.head = nn.LazyLinear(5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(self.fn(x, self.first, self.second), 1))


def head_of(body: nn.Module, side: int = 12) -> nn.Module:
    """``body`` followed by flatten and a Linear with 5 classes (materialised on a probe input)."""
    model = nn.Sequential(body, nn.Flatten(), nn.LazyLinear(5)).eval()
    model(torch.zeros(1, 3, side, side))
    return model


def conv(cin: int = 3, cout: int = 6, **kwargs: object) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kwargs.pop("k", 3), **kwargs)  # type: ignore[arg-type]


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 6, padding=1)
        self.a = conv(6, 6, padding=1)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))
        out = self.bn(self.a(h))
        out += h
        return F.relu(out)


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 4, padding=1)
        self.a = conv(4, 5, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.stem(x))
        return torch.cat([h, self.a(h), h], dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, functional_mean: bool) -> None:
        super().__init__()
        self.stem = conv(3, 8, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.functional_mean = functional_mean

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.stem(x))
        s = h.mean((2, 3), keepdim=True) if self.functional_mean else self.pool(h)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return h * gate


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 6, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.stem(x) * 0.5 + 1.0) / 2.0


class SpatialMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 6, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.stem(x)).mean([2, 3])


class ViewReshape(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 4, padding=1, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))
        return h.view(h.size(0), -1).reshape(h.shape[0], 4, -1).flatten(1)


class ShuffleBlock(nn.Module):
    """ShuffleNet-V2's unit: half the channels pass, half go through a branch, then the
    channels are interleaved with view / transpose / contiguous / view."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 8, padding=1)
        self.branch = conv(4, 4, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))
        x1, x2 = h.chunk(2, dim=1)
        out = torch.cat((x1, F.relu(self.branch(x2))), dim=1)
        n, c, height, width = out.size()
        out = out.view(n, 2, c // 2, height, width)
        out = torch.transpose(out, 1, 2).contiguous()
        return out.view(n, -1, height, width)


class Selections(nn.Module):
    """Permuting, slicing with constants, flipping, narrowing, split and unbind parts."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 6, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))  # (N, 6, 10, 10)
        a, b = torch.split(h, [2, 4], dim=1)
        c = h.unbind(1)[5].unsqueeze(1)
        moved = h.permute(0, 2, 3, 1)[:, 1:, ::2, :].flip(-1)  # (N, 9, 5, 6)
        return torch.cat(
            [b.narrow(2, 1, 8).flatten(1), a.transpose(2, 3).flatten(1), c.flatten(1), moved.flatten(1)], dim=1
        )


def _concat_pool(x: Tensor, a: nn.Module, b: nn.Module) -> Tensor:
    h = F.relu(a(x))
    return torch.cat([F.adaptive_avg_pool2d(h, 3), F.adaptive_max_pool2d(h, 3)], 1)


def _mish_and_copies(x: Tensor, a: nn.Module, b: nn.Module) -> Tensor:
    h = F.mish(a(x))
    return b(h.clone().float().contiguous().view_as(h).unflatten(1, (2, 3)).flatten(1, 2))


def _bodies() -> dict[str, Callable[[], nn.Module]]:
    return {
        "conv": lambda: nn.Sequential(conv(padding=1), nn.ReLU()),
        "conv_bias_free_stride_dilation": lambda: nn.Sequential(
            conv(3, 6, bias=False, stride=2, dilation=2, padding=2), nn.ReLU(), conv(6, 6, stride=2)
        ),
        "conv_same_padding": lambda: nn.Sequential(conv(padding="same", k=5), nn.ReLU(), conv(6, 4, padding="same")),
        "depthwise_conv": lambda: nn.Sequential(conv(3, 6, padding=1), nn.ReLU6(), conv(6, 6, groups=6, padding=1)),
        "grouped_first_conv": lambda: nn.Sequential(conv(3, 6, groups=3, padding=1), nn.ReLU(), conv(6, 4, groups=2)),
        "zero_pad": lambda: nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)), conv(stride=2), nn.ReLU(), nn.ZeroPad2d(1), conv(6, 4)
        ),
        "functional_pad": lambda: Lambda(lambda x, a, b: b(F.relu(a(F.pad(x, (1, 2, 0, 1))))), conv(), conv(6, 4)),
        "batchnorm_merged": lambda: nn.Sequential(
            conv(bias=False), nn.BatchNorm2d(6), nn.ReLU(), conv(6, 4), nn.BatchNorm2d(4)
        ),
        "relu_before_batchnorm": lambda: nn.Sequential(conv(), nn.ReLU(), nn.BatchNorm2d(6), conv(6, 4), nn.ReLU()),
        "relu6": lambda: nn.Sequential(conv(), nn.ReLU6(), conv(6, 4)),
        "leaky_relu": lambda: nn.Sequential(conv(), nn.LeakyReLU(0.1), conv(6, 4)),
        "hardtanh": lambda: nn.Sequential(conv(), nn.Hardtanh(), conv(6, 4)),
        "silu": lambda: nn.Sequential(conv(), nn.SiLU(), conv(6, 4)),
        "gelu": lambda: nn.Sequential(conv(), nn.GELU(), conv(6, 4)),
        "hardswish": lambda: nn.Sequential(conv(), nn.Hardswish(), conv(6, 4)),
        "functional_activations": lambda: Lambda(
            lambda x, a, b: F.hardswish(b(F.leaky_relu(F.relu6(a(x)), 0.2))), conv(), conv(6, 4)
        ),
        "max_pool_overlapping": lambda: nn.Sequential(
            conv(), nn.ReLU(), nn.MaxPool2d(3, stride=2, ceil_mode=True), conv(6, 4, padding=1)
        ),
        "adaptive_max_pool": lambda: nn.Sequential(
            conv(), nn.Hardswish(), nn.AdaptiveMaxPool2d((4, 3)), conv(6, 4, padding=1)
        ),
        # fastai's head: average and max pooled features side by side
        "concat_pool_head": lambda: Lambda(_concat_pool, conv(), None),
        "functional_max_pool": lambda: Lambda(lambda x, a, b: F.max_pool2d(F.relu(a(x)), 2), conv(), None),
        "avg_pool": lambda: nn.Sequential(conv(), nn.ReLU(), nn.AvgPool2d(2), conv(6, 4, padding=1)),
        "adaptive_avg_pool": lambda: nn.Sequential(conv(), nn.Hardswish(), nn.AdaptiveAvgPool2d(3)),
        "functional_adaptive_avg_pool": lambda: Lambda(
            lambda x, a, b: F.adaptive_avg_pool2d(F.relu(a(x)), 2), conv(), None
        ),
        "spatial_mean": SpatialMean,
        "view_reshape": ViewReshape,
        "dropout_identity": lambda: nn.Sequential(conv(), nn.ReLU(), nn.Dropout(0.5), nn.Identity(), conv(6, 4)),
        "residual_add": Residual,
        "concat": Concat,
        "squeeze_excite_gate": lambda: SqueezeExcite(functional_mean=False),
        "squeeze_excite_gate_mean": lambda: SqueezeExcite(functional_mean=True),
        "scalar_arithmetic": Scaled,
        "mish_and_copies": lambda: Lambda(_mish_and_copies, conv(), nn.Sequential(nn.Mish(), conv(6, 4))),
        "shuffle_block_chunk": ShuffleBlock,
        "selections": Selections,
        "shuffle_modules": lambda: nn.Sequential(
            conv(3, 8, padding=1), nn.ReLU(), nn.ChannelShuffle(2), conv(8, 8, padding=1), nn.PixelShuffle(2)
        ),
        "linear_only": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 16), nn.BatchNorm1d(16), nn.ReLU()),
    }


BODIES = _bodies()


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    body = BODIES[name]()
    if isinstance(body, Lambda):
        body.eval()(torch.zeros(1, 3, 12, 12))
        return randomise(body, seed=seed)
    return randomise(head_of(body), seed=seed)


def batch(seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 12, 12, generator=gen), torch.tensor([1, 4])


@pytest.mark.parametrize("rule_set", RULE_SETS)
@pytest.mark.parametrize("name", list(BODIES))
def test_layer_matches_zennit(name: str, rule_set: str) -> None:
    model = build(name)
    x, targets = batch()
    assert GraphLRP.check(model, rule_set) is None
    ref_logits, ref = reference(model, rule_set, x, targets, low=LOW, high=HIGH)
    logits, relevance = GraphLRP(model, rule_set, low=LOW, high=HIGH)(x, targets)
    assert_relevance_close(relevance, ref)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rule_set", RULE_SETS)
def test_unmerged_batchnorm_matches_zennit_without_merging(rule_set: str) -> None:
    model = build("batchnorm_merged", seed=3)
    x, targets = batch(3)
    _, ref = reference(model, rule_set, x, targets, low=LOW, high=HIGH, merge_batchnorm=False)
    _, relevance = GraphLRP(model, rule_set, low=LOW, high=HIGH, merge_batchnorm=False)(x, targets)
    assert_relevance_close(relevance, ref)


def test_gate_branch_gets_no_relevance_and_the_gated_path_keeps_it() -> None:
    # with zero biases every rule conserves, so the gate's share would show up as a deficit
    model = build("squeeze_excite_gate", seed=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
    x, targets = batch(4)
    logits, relevance = GraphLRP(model, "epsilon_plus_flat")(x, targets)
    target_logits = logits.gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(relevance.sum((1, 2, 3)), target_logits, rtol=1e-4, atol=1e-6)


def test_double_precision_and_float_bounds() -> None:
    model = build("residual_add", seed=5).double()
    x, targets = batch(5)
    x = x.double()
    _, ref = reference(model, "epsilon_gamma_box", x, targets, low=-2.5, high=2.5)
    logits, relevance = GraphLRP(model, "epsilon_gamma_box", low=-2.5, high=2.5)(x, targets)
    assert relevance.dtype == torch.float64
    assert_relevance_close(relevance, ref, rtol=1e-9, atol_scale=1e-10)


def test_engine_is_reusable_across_batch_sizes_and_does_not_modify_the_model() -> None:
    model = build("residual_add", seed=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = GraphLRP(model, "epsilon_plus_flat")
    for n in (1, 3):
        x = torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(n))
        targets = torch.arange(n) % 5
        _, ref = reference(model, "epsilon_plus_flat", x, targets)
        _, relevance = engine(x, targets)
        assert_relevance_close(relevance, ref)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
