"""A tiny vision transformer from a registry file (``tiny_vit.py:build``) runs a suite with
transformer LRP and Grad-CAM on its patch tokens; every LRP row records a conservation
within the health band."""

from __future__ import annotations

import pytest

from harness.health import DEFAULT_CONSERVATION

FACTORY = """\
import torch
from torch import nn
from torchvision.models import VisionTransformer


def build(num_classes=2):
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=num_classes
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zeroes the head
    return model
"""

REGISTRY = """\
models:
  tiny-vit:
    architecture: tiny_vit.py:build
    args: {num_classes: 2}
    classes: [thing, other]
    preprocessing: {size: [32, 32], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
"""

SUITE = """\
model: tiny-vit
explainer: [lrp/epsilon_plus_flat, cam/gradcam]
defaults:
  label: {label}
  thresholds: {{min_object_mass: 0.0, max_sticker_share: 1.0}}
  variants:
    original: {{}}
    sticker_added: {{size: 0.25}}
cases:
  - id: scene
    image: scene.png
    object: {{mask: scene_mask.png}}
"""


def test_a_tiny_vit_runs_a_suite_with_lrp_and_gradcam(world: pytest.Pytester, results_rows) -> None:
    world.makefile(".py", tiny_vit=FACTORY)
    (world.path / "vit_models.yaml").write_text(REGISTRY)
    world.makefile(".xai.yaml", vit=SUITE.format(label="thing"))
    result = world.runpytest("-v", "-p", "no:cacheprovider", "--xai-models", "vit_models.yaml")
    outcomes = result.parseoutcomes()
    assert "error" not in outcomes and "errors" not in outcomes, result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4
    result.stdout.fnmatch_lines(
        [
            "xai: tiny-vit / lrp/epsilon_plus_flat: transformer — transformer LRP (Flat on the patch embedding*",
            "xai: tiny-vit / cam/gradcam: autograd — Grad-CAM on the patch tokens of layer "
            "encoder.layers.encoder_layer_1.ln_1 (the last block's ln_1)*",
            "xai: tiny-vit / lrp/epsilon_plus_flat: backend transformer, median conservation *",
        ]
    )
    rows = results_rows(world.path)
    lrp = [row for row in rows if row["explainer"] == "lrp/epsilon_plus_flat"]
    cam = [row for row in rows if row["explainer"] == "cam/gradcam"]
    assert len(lrp) == 2 and len(cam) == 2
    lo, hi = DEFAULT_CONSERVATION
    for row in lrp:
        assert row["relevance_finite"] == "True"
        assert lo <= float(row["conservation"]) <= hi, row
    for row in cam:
        assert row["relevance_finite"] == "True"
