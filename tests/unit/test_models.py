"""Building registry models: weights, the meta-device shortcut and its fallbacks."""

import pytest
import torch
from torch import nn

from harness.errors import ModelError
from harness.models import build_model, load_registry


class WithHiddenBuffer(nn.Module):
    """A buffer outside the state dict: the meta-device build cannot fill it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.register_buffer("offset", torch.full((1, 2, 1, 1), 0.5), persistent=False)
        self.head = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.head((self.conv(x) + self.offset).flatten(1))


def computes_at_init():
    """A factory that reads its own tensors while building (fails on the meta device)."""
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    float(net[0].weight.detach().sum())
    return net


def registry_for(tmp_path, architecture, module):
    torch.manual_seed(1)
    torch.save(module.state_dict(), tmp_path / "w.pt")
    (tmp_path / "models.yaml").write_text(f"""
models:
  m:
    architecture: {architecture}
    weights: w.pt
    classes: [a, b, c]
    preprocessing: {{size: [8, 8]}}
""")
    return load_registry(tmp_path / "models.yaml")


@pytest.mark.parametrize(
    "architecture, make",
    [
        ("tests.unit.test_models:WithHiddenBuffer", WithHiddenBuffer),
        ("tests.unit.test_models:computes_at_init", computes_at_init),
    ],
)
def test_weights_are_loaded_whichever_way_the_model_is_built(tmp_path, architecture, make):
    torch.manual_seed(0)
    reference = make().eval()
    registry = registry_for(tmp_path, architecture, reference)
    loaded = build_model("m", registry, torch.device("cpu"))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), reference(x))
    assert not any(p.requires_grad for p in loaded.module.parameters())
    assert all(not t.is_meta for t in [*loaded.module.parameters(), *loaded.module.buffers()])


def test_torchvision_model_gets_every_weight_and_buffer(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=3).eval()  # BatchNorm buffers included
    registry_for(tmp_path, "torchvision:resnet18", reference)
    (tmp_path / "models.yaml").write_text(
        (tmp_path / "models.yaml")
        .read_text()
        .replace("size: [8, 8]", "size: [32, 32]")
        .replace("weights: w.pt", "weights: w.pt\n    args: {num_classes: 3}")
    )
    loaded = build_model("m", load_registry(tmp_path / "models.yaml"), torch.device("cpu"))
    for (name, a), b in zip(reference.state_dict().items(), loaded.module.state_dict().values()):
        assert torch.equal(a, b), name


def test_weights_that_do_not_fit_are_reported(tmp_path):
    registry = registry_for(tmp_path, "tests.unit.test_models:computes_at_init", nn.Linear(3, 3))
    with pytest.raises(ModelError, match=r"weights .*w\.pt do not fit tests\.unit\.test_models:computes_at_init"):
        build_model("m", registry, torch.device("cpu"))
