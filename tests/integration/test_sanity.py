"""--xai-sanity: the model-randomisation check fails an explainer that ignores the model and
passes LRP and Grad-CAM on the demo model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from harness.attribution import EXPLAINERS, register_explainer
from harness.attribution.explainers import CUSTOM
from harness.models import LoadedModel

ROOT = Path(__file__).resolve().parents[2]


def _edges(model: LoadedModel) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Gradient magnitude of the input image: a plausible-looking map that never asks the model."""

    def engine(x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = model.module(x)
        grey = x.mean(dim=1, keepdim=True)
        dx = torch.zeros_like(grey)
        dy = torch.zeros_like(grey)
        dx[..., :, 1:] = (grey[..., :, 1:] - grey[..., :, :-1]).abs()
        dy[..., 1:, :] = (grey[..., 1:, :] - grey[..., :-1, :]).abs()
        return logits, ((dx + dy) / x.shape[1]).expand_as(x).contiguous()

    return engine


@pytest.fixture
def edge_explainer() -> Iterator[str]:
    register_explainer("test/edges", "input edges (ignores the model)", _edges)
    yield "test/edges"
    EXPLAINERS.pop("test/edges")
    CUSTOM.pop("test/edges")


def test_randomised_copy_reinitialises_every_layer_and_leaves_the_model_alone() -> None:
    from harness.api import load_model
    from harness.sanity import randomised

    model = load_model("signs-shortcut", registry=ROOT / "fixtures" / "models.yaml", device="cpu")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    copy = randomised(model)
    again = randomised(model)
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, before[name])
    weights = [k for k, v in before.items() if k.endswith("weight") and v.dim() > 1]
    assert weights and all(not torch.equal(copy.module.state_dict()[k], before[k]) for k in weights)
    for name, value in copy.module.state_dict().items():
        assert torch.equal(value, again.module.state_dict()[name])  # seeded
    assert copy.classes == model.classes and copy.module is not model.module


def test_randomised_vit_leaves_no_trained_tensor_behind() -> None:
    """Attention's input projection (``_reset_parameters``), the class token and the position
    embedding (no reset method at all) are re-initialised too."""
    import dataclasses

    from torchvision.models import VisionTransformer

    from harness.api import load_model
    from harness.sanity import randomised

    demo = load_model("signs-shortcut", registry=ROOT / "fixtures" / "models.yaml", device="cpu")
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    with torch.no_grad():
        vit.class_token.normal_()  # "trained": torchvision starts it at zero
    model = dataclasses.replace(demo, module=vit.eval(), explainers={})
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    copy = randomised(model).module.state_dict()
    kept = [k for k, v in before.items() if torch.equal(copy[k], v) and v.abs().sum() > 0 and not k.endswith("norm")]
    kept = [k for k in kept if not (".ln" in k or k.startswith("encoder.ln"))]  # LayerNorm resets to ones/zeros
    assert kept == []
    for name in (
        "class_token",
        "encoder.pos_embedding",
        "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
    ):
        assert not torch.equal(copy[name], before[name]), name


def test_registering_a_builtin_name_is_refused() -> None:
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="cannot register"):
        register_explainer("lrp/mine", "", _edges)


@pytest.mark.slow
def test_edge_detector_fails_and_lrp_and_gradcam_pass_on_the_demo_model(
    pytester: pytest.Pytester, edge_explainer: str
) -> None:
    result = pytester.runpytest_inprocess(
        str(ROOT / "testcases"),
        "-p",
        "no:cacheprovider",
        "-rA",
        "--rootdir",
        str(ROOT),
        "--xai-models",
        str(ROOT / "fixtures" / "models.yaml"),
        "--xai-results",
        str(pytester.path / "results.csv"),
        "--xai-assets",
        "",
        "--xai-explainer",
        f"lrp/epsilon_plus_flat,cam/gradcam,{edge_explainer}",
        "--xai-sanity",
        "-k",
        "sanity",
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "sanity of test/edges on signs-shortcut: median rank correlation*1.00 > 0.5 over 54 original images*",
            "PASSED *sanity[[]signs-shortcut-lrp_epsilon_plus_flat[]]",
            "PASSED *sanity[[]signs-shortcut-cam_gradcam[]]",
            "FAILED *sanity[[]signs-shortcut-test_edges[]]*",
        ]
    )
