"""The graph LRP engine on held-out-style hand-written classifiers, its logits, and its refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zennit_reference import HIGH, LOW, RULE_SETS, assert_relevance_close, randomise, reference, without_shifts

from harness.attribution.graph import GraphLRP, UnsupportedModel


class CifarNet(nn.Module):
    """A CIFAR-10 style CNN with ReLU *before* BatchNorm and a functional flatten."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8, eps=eps)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8, eps=eps)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn1(F.relu(self.conv1(x)))
        x = self.pool(self.bn2(F.relu(self.conv2(x))))
        return self.fc(self.drop(torch.flatten(x, 1)))


class ToyNet(nn.Module):
    """Functional ReLUs, ``x.view(x.size(0), -1)`` and a ``torch.flatten`` of the logits' input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 5)
        self.fc1 = nn.Linear(6 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc2(torch.relu(self.fc1(x)))


class LiteBlock(nn.Module):
    """EfficientNet-Lite style inverted residual: explicit ZeroPad2d before a strided
    depthwise convolution, ReLU6, a linear bottleneck and a hand-written ``out + x``."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4, eps: float = 1e-3) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, eps=eps), nn.ReLU6())
        self.pad = nn.ZeroPad2d((0, 1, 0, 1)) if stride == 2 else nn.ZeroPad2d(1)
        self.dw = nn.Conv2d(mid, mid, 3, stride=stride, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid, eps=eps)
        self.project = nn.Conv2d(mid, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout, eps=eps)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu6(self.dw_bn(self.dw(self.pad(self.expand(x)))))
        out = self.project_bn(self.project(out))
        if self.residual:
            out = out + x
        return out


class LiteNet(nn.Module):
    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 8, 3, stride=2, bias=False), nn.BatchNorm2d(8, eps=eps), nn.ReLU6()
        )
        self.blocks = nn.Sequential(
            LiteBlock(8, 8, 1, eps=eps), LiteBlock(8, 12, 2, eps=eps), LiteBlock(12, 12, 1, eps=eps)
        )
        self.head = nn.Sequential(nn.Conv2d(12, 24, 1, bias=False), nn.BatchNorm2d(24, eps=eps), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.head(self.blocks(self.stem(x))))
        return self.fc(F.dropout(torch.flatten(x, 1), 0.2, self.training))


class BranchNet(nn.Module):
    """Inception-style branches joined by ``torch.cat``, then a spatial mean."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b3 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(8, 2, 1))
        self.fc = nn.Linear(12, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(torch.cat([self.b1(x), self.b3(x), self.bp(x)], dim=1))
        return self.fc(x.mean(dim=(2, 3)))


HELD_OUT = {
    "cifar_relu_before_bn": CifarNet,
    "toy_functional_flatten": ToyNet,
    "lite_zeropad_skip": LiteNet,
    "branches_concat": BranchNet,
}


def batch(seed: int, n: int = 2) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=gen), torch.arange(n) * 3 % 10


@pytest.mark.parametrize("rule_set", RULE_SETS)
@pytest.mark.parametrize("name", list(HELD_OUT))
def test_held_out_style_models_run_on_the_graph_engine_and_match_zennit(name: str, rule_set: str) -> None:
    torch.manual_seed(20)
    model = randomise(HELD_OUT[name](), seed=20)
    x, targets = batch(20)
    assert GraphLRP.check(model, rule_set) is None
    _, ref = reference(model, rule_set, x, targets, low=LOW, high=HIGH)
    logits, relevance = GraphLRP(model, rule_set, low=LOW, high=HIGH)(x, targets)
    assert_relevance_close(relevance, ref)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["cifar_relu_before_bn", "lite_zeropad_skip"])
def test_logits_are_the_models_own_with_a_large_batchnorm_eps(name: str) -> None:
    # zennit's canonised copy computes x / sqrt(1 + eps) at every merged batch norm (5 % at
    # eps = 0.1); the engine's logits are the unmodified model's, and its relevance is LRP of
    # the model's true activations (the exact-merge reference)
    torch.manual_seed(21)
    model = randomise(HELD_OUT[name](eps=0.1), seed=21)
    x, targets = batch(21, n=3)
    with torch.no_grad():
        expected = model(x)
    logits, relevance = GraphLRP(model, "epsilon_plus_flat")(x, targets)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    _, ref = reference(model, "epsilon_plus_flat", x, targets)
    assert_relevance_close(relevance, ref)


def test_conservation_with_zero_biases() -> None:
    # without biases (and batch-norm shifts) z+, Flat, epsilon, Sum/Norm, pooling and the
    # gate all conserve relevance: its sum is the target logit.  (An explicit pad in front of
    # the Flat first layer would not: Flat spreads relevance onto the padded border, which
    # the crop then drops, as in zennit; the stem's pad is removed here for that reason.)
    torch.manual_seed(22)
    model = randomise(LiteNet(), seed=22)
    model.stem[0] = nn.Identity()  # type: ignore[assignment, operator]
    without_shifts(model)
    model.double()
    x, _ = batch(22, n=3)
    x = x.double()
    with torch.no_grad():
        targets = model(x).abs().argmax(1)
    # float64 and tiny stabilisers: the stabilisers' own absorption is then negligible
    engine = GraphLRP(model, "epsilon_plus_flat", epsilon=1e-12, stabilizer=1e-12)
    logits, relevance = engine(x, targets)
    target_logits = logits.gather(1, targets[:, None]).squeeze(1)
    assert target_logits.abs().min() > 1e-3
    torch.testing.assert_close(relevance.sum((1, 2, 3)), target_logits, rtol=1e-8, atol=1e-12)


def test_a_plain_layer_list_matches_zennit() -> None:
    torch.manual_seed(23)
    model = randomise(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, eps=0.0), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16, eps=0.0), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.Flatten(), nn.Linear(16 * 4 * 4, 24), nn.ReLU(),
        nn.BatchNorm1d(24), nn.Linear(24, 10),
    ), seed=23)  # fmt: skip
    x, targets = batch(23, n=3)
    for rule_set in RULE_SETS:
        _, ref = reference(model, rule_set, x, targets, low=LOW, high=HIGH)
        logits, relevance = GraphLRP(model, rule_set, low=LOW, high=HIGH)(x, targets)
        assert_relevance_close(relevance, ref)
        with torch.no_grad():
            torch.testing.assert_close(logits, model(x), rtol=1e-5, atol=1e-6)


# -- refusals ------------------------------------------------------------------------------


class WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.layer3 = nn.ModuleDict({"norm": nn.LayerNorm([4, 14, 14])})
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.layer3["norm"](self.stem(x)), 1))


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 10)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:  # data-dependent control flow: not traceable
            x = -x
        return self.fc(x.flatten(1))


class Product(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.a(x) * self.b(x), 1))


class SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 16 * 16, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.conv(F.relu(self.conv(x))), 1))


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.fc(x.flatten(1))
        return y, y


class OddGateBranch(nn.Module):
    """A gate computed through a GroupNorm (no LRP rule): relevance never reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.GroupNorm(2, 4), nn.Sigmoid())
        self.fc = nn.Linear(4, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h * self.gate(h), 1), 1))


class ComputedSlice(nn.Module):
    """A slice whose bound depends on the input's size: not an element move with fixed
    arguments, so the engine cannot replay it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 16, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x[:, :, : x.size(2) // 2].flatten(1))


@pytest.mark.parametrize(("model", "expected"), [
    (ComputedSlice, "function getitem at node 'getitem"),
    (WithLayerNorm, "module 'layer3.norm' (LayerNorm) has no LRP rule"),
    (Branching, "cannot be traced with torch.fx"),
    (Product, "neither or both are a sigmoid gate"),
    (SharedConv, "module 'conv' (Conv2d) is called more than once"),
    (TwoOutputs, "returns tuple, not one tensor"),
])  # fmt: skip
def test_check_names_the_offending_module_or_op(model: type[nn.Module], expected: str) -> None:
    module = randomise(model())
    reason = GraphLRP.check(module, "epsilon_plus_flat")
    assert reason is not None and expected in reason, reason
    with pytest.raises(UnsupportedModel, match="."):
        GraphLRP(module, "epsilon_plus_flat")


def test_unsupported_ops_where_no_relevance_flows_are_accepted() -> None:
    model = randomise(OddGateBranch(), seed=24)
    assert GraphLRP.check(model, "epsilon_plus_flat") is None
    x, targets = batch(24)
    _, ref = reference(model, "epsilon_plus_flat", x, targets)
    _, relevance = GraphLRP(model, "epsilon_plus_flat")(x, targets)
    assert_relevance_close(relevance, ref)


def test_unknown_rule_set() -> None:
    model = randomise(ToyNet())
    assert "lrp_magic" in str(GraphLRP.check(model, "lrp_magic"))
    with pytest.raises(ValueError, match="unknown rule set"):
        GraphLRP(model, "lrp_magic")


def test_training_mode_model_is_explained_in_eval_semantics_and_left_as_it_was() -> None:
    model = CifarNet()
    randomise(model, seed=25).train()
    engine = GraphLRP(model, "epsilon_plus_flat")
    assert model.training and model.bn1.training
    x, targets = batch(25)
    logits, _ = engine(x, targets)
    with torch.no_grad():
        torch.testing.assert_close(logits, model.eval()(x), rtol=0, atol=1e-6)
