"""Explainer registry: names, backends, and the fast engine agreeing with zennit."""

import sys

import pytest
import torch
import torchvision

from harness.attribution import canonical_name, make_explainer, zennit_composite
from harness.errors import HarnessError
from harness.models import LoadedModel, ModelEntry


def loaded(module: torch.nn.Module, canonizer: str = "auto") -> LoadedModel:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    entry = ModelEntry(
        architecture="x:y",
        classes=[f"c{i}" for i in range(6)],
        canonizer=canonizer,
        preprocessing={"size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
    )
    return LoadedModel(name="m", entry=entry, module=module, device=torch.device("cpu"))


def small_bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 6),
    )
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return net


def test_names_and_aliases():
    assert canonical_name("epsilon_gamma_box") == "lrp/epsilon_gamma_box"
    assert canonical_name("lrp") == "lrp/epsilon_plus_flat"
    with pytest.raises(HarnessError, match="known explainers: lrp/epsilon_plus_flat"):
        canonical_name("smoothgrad")


@pytest.mark.parametrize("rule", ["lrp/epsilon_plus_flat", "lrp/epsilon_gamma_box", "lrp/epsilon_alpha2_beta1_flat"])
@pytest.mark.parametrize("canonizer", ["auto", "none"])
def test_fast_backend_equals_zennit_backend(rule, canonizer):
    model = loaded(small_bn_net(), canonizer)
    torch.manual_seed(1)
    x = torch.randn(4, 3, 32, 32)
    targets = torch.tensor([0, 1, 2, 5])
    fast = make_explainer(rule, model, "auto")
    reference = make_explainer(rule, model, "zennit")
    assert fast.backend == "fast" and reference.backend == "zennit"
    assert reference.note.startswith("zennit requested (fx rewrite for zennit")
    logits_fast, rel_fast = fast(x, targets)
    logits_ref, rel_ref = reference(x, targets)
    assert torch.allclose(logits_fast, logits_ref, atol=1e-5)
    assert torch.allclose(rel_fast, rel_ref, rtol=1e-4, atol=1e-6 * rel_ref.abs().max().item())


class Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 6))

    def forward(self, x):
        return self.head(x + self.conv(x))


def without_graph_engine(monkeypatch):
    # what make_explainer sees while harness/attribution/graph.py is missing or broken
    monkeypatch.setitem(sys.modules, "harness.attribution.graph", None)


def test_backend_order_graph_then_zennit(monkeypatch):
    fast = make_explainer("lrp", loaded(small_bn_net()))
    assert fast.backend == "fast" and fast.note.startswith("fast LRP engine (graph")
    assert make_explainer("lrp", loaded(small_bn_net()), "fast").backend == "fast"
    without_graph_engine(monkeypatch)
    explainer = make_explainer("lrp/epsilon_plus_flat", loaded(Residual()), "auto")
    assert explainer.backend == "zennit" and "using zennit" in explainer.note
    assert "graph engine: not available" in explainer.note
    with pytest.raises(HarnessError, match="not supported"):
        make_explainer("lrp/epsilon_plus_flat", loaded(Residual()), "fast")
    logits, relevance = explainer(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    assert relevance.shape == (2, 3, 32, 32)


def test_fast_backend_is_an_error_where_the_graph_engine_does_not_cover_the_model():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.LayerNorm([4, 30, 30]), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 6)
    )
    with pytest.raises(HarnessError, match="--xai-lrp-backend fast: model 'm' is not supported: graph engine: "):
        make_explainer("lrp", loaded(model), "fast")


def test_graph_engine_agrees_with_zennit():
    model = loaded(small_bn_net())
    torch.manual_seed(1)
    x, targets = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 5])
    logits_fast, rel_fast = make_explainer("lrp", model, "fast")(x, targets)
    logits_ref, rel_ref = make_explainer("lrp", model, "zennit")(x, targets)
    assert torch.equal(logits_fast, logits_ref)
    assert torch.allclose(rel_fast, rel_ref, rtol=1e-4, atol=1e-5 * rel_ref.abs().max().item())


def test_a_model_no_backend_explains_is_an_error_naming_the_module():
    class Normed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.norm = torch.nn.GroupNorm(2, 4)
            self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 32 * 32, 6))

        def forward(self, x):
            return self.head(self.norm(self.conv(x)))

    for backend in ("auto", "zennit"):
        with pytest.raises(HarnessError, match=r"module 'norm' \(GroupNorm\)"):
            make_explainer("lrp", loaded(Normed()), backend)
    with pytest.raises(HarnessError, match="unknown LRP backend 'fastest'"):
        make_explainer("lrp", loaded(small_bn_net()), "fastest")


def test_zennit_composite_for_benchmarks_has_the_architectures_canonizers():
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    resnet = loaded(torchvision.models.resnet18(num_classes=6))
    assert [type(c) for c in zennit_composite("epsilon_plus_flat", resnet).canonizers] == [ResNetCanonizer]
    plain = zennit_composite("epsilon_gamma_box", loaded(small_bn_net()))
    assert [type(c) for c in plain.canonizers] == [SequentialMergeBatchNorm]
    assert zennit_composite("epsilon_plus_flat", loaded(small_bn_net(), "none")).canonizers == []


def test_input_x_gradient_baseline():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3 * 4 * 4, 6)
    model = loaded(torch.nn.Sequential(torch.nn.Flatten(), linear))
    x = torch.rand(2, 3, 4, 4)
    logits, relevance = make_explainer("input_x_gradient", model)(x, torch.tensor([0, 3]))
    # a linear model's gradient is its weight row: relevance = x * W[target]
    expected = x * linear.weight[[0, 3]].view(2, 3, 4, 4)
    assert torch.allclose(relevance, expected) and torch.equal(logits, linear(x.flatten(1)))
