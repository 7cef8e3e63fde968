"""The Python API: ``from harness import load_model, explain``."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness import explain, load_model
from harness.attribution import make_explainer
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "fixtures" / "models.yaml"


def test_load_model_gives_the_registry_model_ready_to_run():
    model = load_model("signs-shortcut", registry=REGISTRY, device="cpu")
    assert model.classes == ["speed_30", "speed_50", "speed_70", "stop", "yield", "background"]
    assert model.preprocessing.size == (64, 64) and not model.module.training
    image = np.full((64, 64, 3), 255, np.uint8)
    assert torch.equal(model.to_input([image]), torch.ones(1, 3, 64, 64))  # (1 - 0.5) / 0.5
    big = np.full((128, 96, 3), 255, np.uint8)
    assert torch.equal(model.prepare([big]), torch.ones(1, 3, 64, 64))  # resized first


def test_explain_on_the_demo_model_equals_the_runs_explainer():
    model = load_model("signs-clean", registry=REGISTRY, device="cpu")
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    logits, relevance = explain(model, x, ["speed_50", 4, "stop"])
    assert logits.shape == (3, 6) and relevance.shape == x.shape
    reference_logits, reference = make_explainer("lrp/epsilon_plus_flat", model)(x, torch.tensor([1, 4, 3]))
    assert torch.equal(relevance, reference) and torch.equal(logits, reference_logits)
    with torch.no_grad():
        assert torch.allclose(logits, model.module(x), atol=1e-5)
    # One class for the whole batch; a gradient baseline by name.
    _, same = explain(model, x, "speed_50")
    assert torch.allclose(same[0], relevance[0], atol=1e-6)
    _, gradient = explain(model, x[:1], 1, explainer="gradient/input_x_gradient")
    xg = x[:1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.module(xg)[0, 1], xg)
    assert torch.allclose(gradient, grad * x[:1], atol=1e-6)


def test_explain_on_a_plain_module_conserves_the_target_logit():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    )
    with torch.no_grad():
        for module in net:
            if hasattr(module, "bias"):
                module.bias.zero_()  # no bias absorbs relevance: sums equal the logits
    net.train()
    x = torch.rand(2, 3, 12, 12)
    logits, relevance = explain(
        net, x, torch.tensor([0, 3]), explainer="lrp/epsilon_gamma_box", preprocessing={"size": 12}
    )
    assert relevance.shape == x.shape and net.training  # the mode is restored after the call
    target = logits[[0, 1], [0, 3]]
    positive = target > 0.05
    assert torch.allclose(relevance.sum((1, 2, 3))[positive], target[positive], rtol=1e-3)
    logits_again, relevance_again = explain(net, x[0], 0, explainer="lrp/epsilon_gamma_box", preprocessing={"size": 12})
    assert torch.allclose(relevance_again[0], relevance[0], atol=1e-6)


def test_explain_rejects_what_it_cannot_use():
    model = load_model("signs-clean", registry=REGISTRY, device="cpu")
    x = torch.zeros(2, 3, 64, 64)
    with pytest.raises(HarnessError, match="float tensor"):
        explain(model, (x * 255).to(torch.uint8), [0, 1])
    with pytest.raises(HarnessError, match="unknown class 'cat'"):
        explain(model, x, ["cat", "stop"])
    with pytest.raises(HarnessError, match="1 targets for 2 images"):
        explain(model, x, [0])
    with pytest.raises(HarnessError, match=r"target 6 is not a class index 0\.\.5"):
        explain(model, x, 6)
    with pytest.raises(HarnessError, match="unknown explainer"):
        explain(model, x, 0, explainer="smoothgrad")


def test_import_harness_stays_light():
    code = "import sys, harness; print('torch' in sys.modules); print(sorted(harness.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["False", "['explain', 'load_model']"]


def test_the_api_example_in_the_docs_runs(monkeypatch, capsys):
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n# example\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(ROOT)
    exec(compile(example, "docs/api.md", "exec"), {})
    out = capsys.readouterr().out
    assert "logits (2, 6) relevance (2, 3, 64, 64)" in out
    sums = [float(v) for v in re.search(r"relevance sums \[(.*)\]", out).group(1).split(",")]
    assert len(sums) == 2 and all(np.isfinite(sums))
