"""Explainer registry: names, backends, and the fast engine agreeing with zennit."""

import pytest
import torch

from harness.errors import HarnessError
from harness.explain import canonical_name, make_explainer
from harness.models import LoadedModel, ModelEntry


def loaded(module: torch.nn.Module, canonizer: str = "auto") -> LoadedModel:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    entry = ModelEntry(architecture="x:y", classes=[f"c{i}" for i in range(6)], canonizer=canonizer,
                       preprocessing={"size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3})
    return LoadedModel(name="m", entry=entry, module=module, device=torch.device("cpu"))


def small_bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return net


def test_names_and_aliases():
    assert canonical_name("epsilon_gamma_box") == "lrp/epsilon_gamma_box"
    assert canonical_name("lrp") == "lrp/epsilon_plus_flat"
    with pytest.raises(HarnessError, match="known explainers: lrp/epsilon_plus_flat"):
        canonical_name("gradcam")


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
    logits_fast, rel_fast = fast(x, targets)
    logits_ref, rel_ref = reference(x, targets)
    assert torch.allclose(logits_fast, logits_ref, atol=1e-5)
    assert torch.allclose(rel_fast, rel_ref, rtol=1e-4, atol=1e-6 * rel_ref.abs().max().item())


def test_unsupported_model_falls_back_to_zennit_with_a_note():
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 6))

        def forward(self, x):
            return self.head(x + self.conv(x))

    explainer = make_explainer("lrp/epsilon_plus_flat", loaded(Residual()), "auto")
    assert explainer.backend == "zennit" and "using zennit" in explainer.note
    with pytest.raises(HarnessError, match="not supported"):
        make_explainer("lrp/epsilon_plus_flat", loaded(Residual()), "fast")
    logits, relevance = explainer(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    assert relevance.shape == (2, 3, 32, 32)


def test_input_x_gradient_baseline():
    model = loaded(small_bn_net())
    x = torch.rand(2, 3, 32, 32)
    logits, relevance = make_explainer("input_x_gradient", model)(x, torch.tensor([0, 3]))
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()
