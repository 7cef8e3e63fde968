"""The fast LRP engine must reproduce zennit's composites (harness.explain.sequential)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat

from harness.explain.sequential import FastLRP, UnsupportedModel

RULE_SETS = FastLRP.RULE_SETS
# Per-channel box bounds as the harness passes them: (1, C, 1, 1), already normalised.
LOW = torch.tensor([-2.0, -1.8, -2.1]).view(1, 3, 1, 1)
HIGH = torch.tensor([2.2, 2.4, 2.6]).view(1, 3, 1, 1)


def zennit_reference(
    model: nn.Module, rule_set: str, x: torch.Tensor, targets: torch.Tensor, merge: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The harness's zennit call: Gradient with the composite, output relevance logits * one-hot."""
    canonizers = [SequentialMergeBatchNorm()] if merge else []
    composite = {
        "epsilon_plus_flat": lambda: EpsilonPlusFlat(canonizers=canonizers),
        "epsilon_gamma_box": lambda: EpsilonGammaBox(low=LOW, high=HIGH, canonizers=canonizers),
        "epsilon_alpha2_beta1_flat": lambda: EpsilonAlpha2Beta1Flat(canonizers=canonizers),
    }[rule_set]()
    with Gradient(model, composite) as attributor:
        logits, relevance = attributor(
            x, lambda out: out * nn.functional.one_hot(targets, out.shape[1]).to(out)
        )
    return logits.detach(), relevance.detach()


def assert_matches_zennit(
    model: nn.Module, rule_set: str, x: torch.Tensor, targets: torch.Tensor, **engine_kwargs: object
) -> None:
    merge = bool(engine_kwargs.get("merge_batchnorm", True))
    ref_logits, ref = zennit_reference(model, rule_set, x, targets, merge=merge)
    logits, relevance = FastLRP(model, rule_set, low=LOW, high=HIGH, **engine_kwargs)(x, targets)
    assert relevance.shape == x.shape
    scale = ref.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(relevance, ref, rtol=1e-4, atol=1e-6 * scale)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-6)


def frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def randomise(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics/affine parameters and non-zero biases."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)
    return frozen(model)


def plain_stack() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 5),
    )  # fmt: skip


def batchnorm_stack() -> nn.Module:
    # a strided conv on an odd size exercises the transposed convolution's output padding;
    # the overlapping max pool exercises summed routing; a conv without bias gets one from BN
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 5),
    )  # fmt: skip


def pooling_stack() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AvgPool2d(2),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding="same", dilation=2), nn.ReLU(), nn.Dropout(0.5)),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(16 * 9, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 5),
    )  # fmt: skip


def general_stack() -> nn.Module:
    # Layers off the shortcut paths: conv -> conv without ReLU (negative layer inputs),
    # a conv whose ReLU output feeds an unmerged batch norm (Pass rule, so relevance
    # does not vanish where z <= 0: gamma's negative-output branch is live), a batch
    # norm's (signed) output and a max pool of a conv's output as layer inputs.
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 5),
    )  # fmt: skip


def mlp() -> nn.Module:
    # the first Linear is the Flat rule's "first layer"; gamma_box has no conv for ZBox
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 20), nn.ReLU(), nn.Linear(20, 5))


SMALL_MODELS: dict[str, Callable[[], nn.Module]] = {
    "plain": plain_stack,
    "batchnorm": batchnorm_stack,
    "pooling": pooling_stack,
    "general": general_stack,
    "mlp": mlp,
}


def small_batch(seed: int = 0, n: int = 3, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=gen), torch.tensor([0, 3, 1, 4, 2][:n])


@pytest.mark.parametrize("rule_set", RULE_SETS)
@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_small_models_match_zennit(name: str, rule_set: str) -> None:
    torch.manual_seed(1)
    model = randomise(SMALL_MODELS[name]())
    x, targets = small_batch()
    assert_matches_zennit(model, rule_set, x, targets)


@pytest.fixture(scope="module")
def vgg11() -> nn.Module:
    torch.manual_seed(2)
    return frozen(torchvision.models.vgg11(weights=None, num_classes=10))


@pytest.fixture(scope="module")
def vgg11_bn() -> nn.Module:
    torch.manual_seed(3)
    return randomise(torchvision.models.vgg11_bn(weights=None, num_classes=10))


@pytest.mark.parametrize("rule_set", RULE_SETS)
def test_torchvision_vgg11_matches_zennit(vgg11: nn.Module, rule_set: str) -> None:
    x, targets = small_batch(seed=4, n=2, side=32)
    assert_matches_zennit(vgg11, rule_set, x, targets)


def test_torchvision_vgg11_bn_matches_zennit(vgg11_bn: nn.Module) -> None:
    # one rule set suffices here: batch-norm merging is rule-independent, and the
    # small batch-norm models cover every rule set (vgg's 0.4 GB classifier is slow)
    x, targets = small_batch(seed=5, n=2, side=32)
    assert_matches_zennit(vgg11_bn, "epsilon_plus_flat", x, targets)


@pytest.mark.parametrize("rule_set", RULE_SETS)
def test_demo_small_vgg_matches_zennit(rule_set: str) -> None:
    zoo = pytest.importorskip("harness.zoo")
    torch.manual_seed(6)
    model = randomise(zoo.small_vgg(num_classes=6, width=8, in_size=32, blocks=3, hidden=32))
    x, targets = small_batch(seed=6, n=4, side=32)
    assert_matches_zennit(model, rule_set, x, targets)


@pytest.mark.parametrize("rule_set", RULE_SETS)
def test_unmerged_batchnorm_matches_zennit_without_canonizer(rule_set: str) -> None:
    torch.manual_seed(7)
    model = randomise(batchnorm_stack())
    x, targets = small_batch(seed=7)
    assert_matches_zennit(model, rule_set, x, targets, merge_batchnorm=False)


def test_channels_last_layout_matches_zennit_on_a_small_model() -> None:
    # Different kernels: equal to zennit only up to LRP-amplified rounding, hence looser.
    torch.manual_seed(8)
    x, targets = small_batch(seed=8)
    models = [randomise(batchnorm_stack()), randomise(plain_stack()), randomise(pooling_stack())]
    for model, rule_set in zip(models, RULE_SETS):
        _, ref = zennit_reference(model, rule_set, x, targets)
        _, relevance = FastLRP(model, rule_set, low=LOW, high=HIGH, channels_last=True)(x, targets)
        assert relevance.is_contiguous()
        torch.testing.assert_close(relevance, ref, rtol=1e-3, atol=1e-4 * ref.abs().max().item())


def test_float_bounds_and_double_precision() -> None:
    torch.manual_seed(9)
    model = randomise(plain_stack())
    x, targets = small_batch(seed=9)
    composite = EpsilonGammaBox(low=-3.0, high=3.0, canonizers=[SequentialMergeBatchNorm()])
    model64 = copy.deepcopy(model).double()
    with Gradient(model64, composite) as attributor:
        _, ref = attributor(x.double(), lambda out: out * nn.functional.one_hot(targets, out.shape[1]).to(out))
    engine = FastLRP(model, "epsilon_gamma_box", low=-3.0, high=3.0)
    _, relevance = engine(x.double(), targets)
    assert relevance.dtype == torch.float64
    torch.testing.assert_close(relevance, ref, rtol=1e-9, atol=1e-12 * ref.abs().max().item())
    # the same engine still serves float32 afterwards
    _, relevance32 = engine(x, targets)
    torch.testing.assert_close(relevance32, ref.float(), rtol=1e-4, atol=1e-6 * ref.abs().max().item())


def test_rows_with_different_targets_are_independent() -> None:
    torch.manual_seed(10)
    model = randomise(batchnorm_stack())
    x, _ = small_batch(seed=10, n=4)
    targets = torch.tensor([4, 0, 2, 0])
    engine = FastLRP(model, "epsilon_plus_flat")
    logits, relevance = engine(x, targets)
    for i in range(4):
        single_logits, single = engine(x[i : i + 1], targets[i : i + 1])
        torch.testing.assert_close(single[0], relevance[i], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(single_logits[0], logits[i])
    # another target gives another map
    _, other = engine(x, torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(other, relevance)


@pytest.mark.parametrize("rule_set", RULE_SETS)
def test_relevance_is_conserved_without_biases(rule_set: str) -> None:
    torch.manual_seed(12)
    model = frozen(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 5, bias=False),
    ))  # fmt: skip
    # inputs inside the box, where the ZBox rule conserves relevance too
    x = torch.rand(3, 3, 16, 16) * 3.0 - 1.5
    targets = torch.tensor([0, 2, 4])
    logits, relevance = FastLRP(model, rule_set, low=LOW, high=HIGH)(x, targets)
    target_logits = logits.gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), target_logits, rtol=1e-3, atol=1e-6)


def test_logits_equal_model_forward_and_model_is_unchanged(vgg11_bn: nn.Module) -> None:
    x, targets = small_batch(seed=11, n=2, side=32)
    state = {k: v.clone() for k, v in vgg11_bn.state_dict().items()}
    x_before = x.clone()
    with torch.no_grad():
        expected = vgg11_bn(x)
    for rule_set in RULE_SETS:
        logits, _ = FastLRP(vgg11_bn, rule_set, low=LOW, high=HIGH)(x, targets)
        # zennit's merged batch norm keeps a 1/sqrt(1 + eps) factor, which the engine copies
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    after = vgg11_bn.state_dict()
    assert state.keys() == after.keys()
    for key, value in state.items():
        assert torch.equal(value, after[key]), key
    assert torch.equal(x, x_before)
    assert not vgg11_bn.training
    assert all(not p.requires_grad for p in vgg11_bn.parameters())


def test_check_rejects_resnet18_with_a_reason() -> None:
    resnet = frozen(torchvision.models.resnet18(weights=None))
    for rule_set in RULE_SETS:
        reason = FastLRP.check(resnet, rule_set)
        assert reason is not None and "ResNet" in reason
    with pytest.raises(UnsupportedModel, match="ResNet"):
        FastLRP(resnet, "epsilon_plus_flat")


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.ReLU()), "groups"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU()), "'1' (LeakyReLU)"),
        (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")), "padding_mode"),
        (nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3)), nn.ModuleList([nn.ReLU()])), "'1' (ModuleList)"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False)), "affine"),
    ],
)
def test_check_names_the_unsupported_module(model: nn.Module, needle: str) -> None:
    reason = FastLRP.check(frozen(model), "epsilon_plus_flat")
    assert reason is not None and needle in reason
    assert "\n" not in reason


def test_check_accepts_supported_models(vgg11: nn.Module) -> None:
    for rule_set in RULE_SETS:
        assert FastLRP.check(vgg11, rule_set) is None
        assert FastLRP.check(randomise(pooling_stack()), rule_set) is None
    assert FastLRP.check(vgg11, "lrp_magic") is not None
    with pytest.raises(ValueError):
        FastLRP(vgg11, "lrp_magic")
