"""One model forward per batch for LRP's graph engine and Grad-CAM (issue #13): the pair
computes what the two explainers compute apart, with one forward of the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import harness.attribution.shared as shared_module
from harness.attribution import make_explainer
from harness.attribution.cam import GradCAM
from harness.attribution.graph import GraphLRP
from harness.attribution.shared import SharedForward
from harness.engine import Engine, ImageKey, ImageResult, Request, case_uid
from harness.errors import HarnessError
from harness.models import LoadedModel, load_registry
from harness.registry import ModelEntry
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
LRP, CAM = "lrp/epsilon_plus_flat", "cam/gradcam"


class Block(nn.Module):
    """Residual block whose last convolution feeds a batch norm, a sum with the block's input
    and an in-place ReLU: Grad-CAM's part of the graph reads a value from before its layer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + x)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2)
        self.block = Block(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.pool(self.stem(x))).mean(dim=(2, 3)))


def _frozen(module: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so that the batch norms matter
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _loaded(module: nn.Module, size: int, classes: int) -> LoadedModel:
    entry = ModelEntry(
        architecture="x:y",
        classes=[f"c{i}" for i in range(classes)],
        preprocessing={"size": [size, size], "mean": [0.5] * 3, "std": [0.25] * 3},
    )
    return LoadedModel(name="m", entry=entry, module=module, device=torch.device("cpu"))


class Counter:
    """Calls of a module (a forward hook), i.e. model forwards when it is the first layer."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.calls += 1


def _first_conv(module: nn.Module) -> nn.Module:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return _frozen(SmallCNN())


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return _frozen(torchvision.models.resnet18(num_classes=10))


@pytest.mark.parametrize("build, size, classes", [(_small_cnn, 16, 5), (_resnet18, 32, 10)], ids=["cnn", "resnet18"])
def test_one_forward_gives_both_explainers_results(build: Any, size: int, classes: int) -> None:
    model = _loaded(build(), size, classes)
    lrp, cam = make_explainer(LRP, model), make_explainer(CAM, model)
    assert isinstance(lrp.engine, GraphLRP) and isinstance(cam.engine, GradCAM)
    torch.manual_seed(1)
    x, targets = torch.randn(4, 3, size, size), torch.tensor([0, 1, 3, 4])
    counter = Counter(_first_conv(model.module))
    logits_lrp, relevance_lrp = lrp(x, targets)
    logits_cam, relevance_cam = cam(x, targets)
    assert counter.calls == 2
    joint = SharedForward(lrp.engine, cam.engine)
    logits, (shared_lrp, shared_cam) = joint(x, targets)
    assert counter.calls == 3  # one forward for both
    # LRP's forward as LRP alone runs it: logits and maps bit for bit
    assert torch.equal(logits, logits_lrp) and torch.equal(shared_lrp, relevance_lrp)
    assert torch.allclose(logits, logits_cam, rtol=1e-6, atol=1e-6)
    assert relevance_cam.abs().max() > 0
    assert torch.allclose(shared_cam, relevance_cam, rtol=1e-6, atol=1e-6 * float(relevance_cam.abs().max()))
    counter.handle.remove()


def test_a_layer_that_is_not_one_node_cannot_share() -> None:
    model = _loaded(_small_cnn(), 16, 5)
    lrp = make_explainer(LRP, model)
    assert isinstance(lrp.engine, GraphLRP)
    block = GradCAM(model.module, "block")  # traced through: no single node calls it
    assert SharedForward.problem(lrp.engine, block) == "Grad-CAM layer 'block' is not a module call of the traced graph"
    with pytest.raises(HarnessError, match="not a module call"):
        SharedForward(lrp.engine, block)


# ------------------------------------------------------------------ the engine, on the demo model


def _requests(explainers: list[str]) -> list[Request]:
    spec = load_suite(ROOT / "testcases" / "signs" / "speed_50.xai.yaml")
    return [
        Request(
            ImageKey("signs-shortcut", name, case_uid(case), variant.name),
            case,
            variant,
            case.label or "",
            predicted_relevance=variant.name == "sticker_added",
        )
        for case in spec.cases[:3]
        for variant in case.variants
        for name in explainers
    ]


def _run(explainers: list[str], backend: str = "auto") -> tuple[Engine, dict[ImageKey, ImageResult], int]:
    requests = _requests(explainers)
    registry = ROOT / "fixtures" / "models.yaml"
    engine = Engine(lambda: load_registry(registry), torch.device("cpu"), batch_size=4, backend=backend)
    engine.plan(requests, {request.key: 1 for request in requests})
    for name in explainers:  # Grad-CAM's set-up runs a probe forward to find its layer
        engine.explainer("signs-shortcut", name)
    counter = Counter(_first_conv(engine.model("signs-shortcut").module))
    results = {request.key: engine.result(request.key) for request in requests}
    counter.handle.remove()
    return engine, results, counter.calls


@pytest.fixture(scope="module")
def separate() -> tuple[Engine, dict[ImageKey, ImageResult], int]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shared_module.SharedForward, "problem", staticmethod(lambda *_: "switched off by the test"))
        return _run([LRP, CAM])


def test_the_engine_runs_one_forward_per_batch_for_both(separate: Any) -> None:
    engine, results, calls = _run([LRP, CAM])
    lrp_alone, _, lrp_calls = _run([LRP])
    apart, apart_results, apart_calls = separate
    assert len(results) == 24 and all(r.error is None for r in results.values())
    assert lrp_alone.stats.batches == 3  # 12 images, 4 per batch
    # the pair runs the forwards LRP alone runs (one per batch, and the second pass of the
    # predicted class where a sticker flips the prediction); apart, Grad-CAM runs as many again
    assert calls == lrp_calls and apart_calls == 2 * lrp_calls and lrp_calls > 3
    assert engine.explainer("signs-shortcut", CAM).note.endswith(
        f"; shares the forward of {LRP} (one model forward per batch)"
    )
    assert "runs its own forward, not shared with" in apart.explainer("signs-shortcut", CAM).note
    flipped = 0
    for key, result in results.items():
        other = apart_results[key]
        assert result.logits is not None and other.logits is not None
        assert np.array_equal(result.logits, other.logits) and result.predicted == other.predicted
        pairs = [
            (result.relevance_label, other.relevance_label),
            (result.relevance_predicted, other.relevance_predicted),
        ]
        for mine, theirs in pairs:
            assert (mine is None) == (theirs is None)
            if mine is not None and theirs is not None:
                np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6 * float(np.abs(theirs).max()))
        for health, reference in (
            (result.health_label, other.health_label),
            (result.health_predicted, other.health_predicted),
        ):
            assert (health is None) == (reference is None)
            if health is not None and reference is not None:
                assert health.target_logit == reference.target_logit
                assert health.relevance_sum == pytest.approx(reference.relevance_sum, rel=1e-5, abs=1e-6)
                assert (health.nonfinite, health.all_zero) == (reference.nonfinite, reference.all_zero)
        flipped += result.relevance_predicted is not None and result.relevance_predicted is not result.relevance_label
        columns, reference_columns = engine.agreement(key), apart.agreement(key)
        assert (
            columns.keys() == reference_columns.keys()
            and columns["agreement_with"] == reference_columns["agreement_with"]
        )
        for name in ("agreement_rank", "agreement_top10"):
            assert columns[name] == pytest.approx(reference_columns[name], abs=1e-6, nan_ok=True)
    assert flipped > 0  # the second pass ran shared too
    assert engine.health[f"signs-shortcut / {LRP}"] == apart.health[f"signs-shortcut / {LRP}"]
    cam_health, cam_reference = engine.health[f"signs-shortcut / {CAM}"], apart.health[f"signs-shortcut / {CAM}"]
    assert cam_health["backend"] == cam_reference["backend"]
    assert cam_health["conservation"] == pytest.approx(cam_reference["conservation"], rel=1e-5)
    assert (engine.stats.batches, engine.stats.images, engine.stats.lrp_rows) == (
        apart.stats.batches,
        apart.stats.images,
        apart.stats.lrp_rows,
    )


def test_grad_cam_first_keeps_its_own_forward() -> None:
    engine, results, calls = _run([CAM, LRP])
    assert "Grad-CAM comes first in the run" in engine.explainer("signs-shortcut", LRP).note
    assert all(r.error is None for r in results.values())
    _, _, lrp_calls = _run([LRP])
    assert calls > lrp_calls


def test_zennit_lrp_and_grad_cam_run_apart_and_say_so() -> None:
    engine, results, calls = _run([LRP, CAM], backend="zennit")
    _, _, lrp_calls = _run([LRP], backend="zennit")
    assert all(r.error is None for r in results.values())
    assert engine.explainer("signs-shortcut", CAM).note.endswith(
        f"; runs its own forward, not shared with {LRP}: only the graph LRP engine (backend fast) and "
        "Grad-CAM on a CNN share one"
    )
    assert calls == 2 * lrp_calls


def test_a_failing_shared_forward_falls_back_to_separate_runs(separate: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(shared_module.SharedForward, "__call__", broken)
    _, results, _ = _run([LRP, CAM])
    for key, result in results.items():
        assert result.error is None and result.logits is not None
        assert np.array_equal(result.logits, separate[1][key].logits)
