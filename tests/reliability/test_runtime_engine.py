"""Isolation by construction, at the engine: whatever a hostile input raises while an
image is prepared (not only HarnessError) is that image's error, and the other images
of the batch run as without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import harness.engine as engine_module
from harness.engine import Engine, ImageKey, Request, case_uid, nonfinite_problem, tie_problem
from harness.errors import HarnessError
from harness.models import load_registry
from harness.spec import load_suite

from .runtime_support import CLEAN_AND_BAD, make_world, suite

EXPLAINER = "lrp/epsilon_plus_flat"


def _engine(root: Path, batch_size: int = 32) -> tuple[Engine, list[Request]]:
    make_world(root)
    path = root / "s.xai.yaml"
    path.write_text(suite("good", CLEAN_AND_BAD))
    spec = load_suite(path)
    requests = [
        Request(ImageKey("good", EXPLAINER, case_uid(case), variant.name), case, variant, case.label or "")
        for case in spec.cases
        for variant in case.variants
    ]
    engine = Engine(lambda: load_registry(root / "models.yaml"), torch.device("cpu"), batch_size)
    engine.plan(requests, {request.key: 1 for request in requests})
    return engine, requests


def _outcomes(engine: Engine, requests: list[Request]) -> dict[tuple[str, str], Any]:
    out = {}
    for request in requests:
        result = engine.result(request.key)
        value: Any = result.error if result.error is not None else float(result.relevance_label.sum())  # type: ignore[union-attr]
        out[(request.case.case_id, request.variant.name)] = value
    return out


def _is_trigger(image: np.ndarray) -> bool:
    return bool(((image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)).any())


HOSTILE: dict[str, BaseException] = {
    "cv2.error": cv2.error("OpenCV(4) error: (-215:Assertion failed) in function 'inpaint'"),
    "MemoryError": MemoryError("cannot allocate 40 GiB"),
    "DecompressionBombError": Image.DecompressionBombError("Image size (10000000000 pixels) exceeds limit"),
    "ValueError": ValueError("operands could not be broadcast together"),
    "OSError": OSError(5, "Input/output error"),
    "ZeroDivisionError": ZeroDivisionError("division by zero"),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    engine, requests = _engine(tmp_path_factory.mktemp("reference"))
    return _outcomes(engine, requests)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_variant_rendering_failure_is_the_images_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[tuple[str, str], Any], kind: str
) -> None:
    real = engine_module.apply_variant

    def hostile(name: str, settings: Any, image: np.ndarray, *args: Any) -> Any:
        if _is_trigger(image):
            raise HOSTILE[kind]
        return real(name, settings, image, *args)

    monkeypatch.setattr(engine_module, "apply_variant", hostile)
    engine, requests = _engine(tmp_path)
    outcomes = _outcomes(engine, requests)
    for (case, variant), value in outcomes.items():
        if case == "bad":
            assert isinstance(value, HarnessError), value
            assert str(value).startswith(f"preparing the image failed: {type(HOSTILE[kind]).__name__}: ")
        else:
            assert value == pytest.approx(reference[(case, variant)], rel=1e-6)
    assert engine.stats.batches == 1 and engine.stats.images == 4  # the clean images shared one batch


def test_image_reading_failure_is_the_cases_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[tuple[str, str], Any]
) -> None:
    real = engine_module.read_rgb

    def hostile(path: Any) -> np.ndarray:
        if Path(path).name == "trigger.png":
            raise Image.DecompressionBombError("Image size (9999999999 pixels) exceeds limit")
        return real(path)

    monkeypatch.setattr(engine_module, "read_rgb", hostile)
    engine, requests = _engine(tmp_path)
    outcomes = _outcomes(engine, requests)
    for (case, variant), value in outcomes.items():
        if case == "bad":
            assert str(value) == (
                "reading the image or its regions failed: DecompressionBombError: "
                "Image size (9999999999 pixels) exceeds limit"
            )
        else:
            assert value == pytest.approx(reference[(case, variant)], rel=1e-6)


def test_failed_batch_is_retried_image_by_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[tuple[str, str], Any]
) -> None:
    engine, requests = _engine(tmp_path)
    explainer = engine.explainer("good", EXPLAINER)
    real_call = type(explainer).__call__

    def fragile(self: Any, x: torch.Tensor, targets: torch.Tensor) -> Any:
        # Fails on any batch holding a trigger image (a pure red pixel).
        if bool(((x[:, 0] > 0.99) & (x[:, 1] < 0.01) & (x[:, 2] < 0.01)).flatten(1).any()):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_call(self, x, targets)

    monkeypatch.setattr(type(explainer), "__call__", fragile)
    outcomes = _outcomes(engine, requests)
    assert engine.stats.retried_batches == 1
    for (case, variant), value in outcomes.items():
        if case == "bad":
            assert str(value) == "model + explainer failed on this image: RuntimeError: CUDA out of memory (simulated)"
        else:
            assert value == pytest.approx(reference[(case, variant)], rel=1e-6)


def test_tie_and_nonfinite_texts() -> None:
    classes = ["speed_30", "speed_50", "stop"]
    assert tie_problem(np.array([1.0, 2.0, 0.5], np.float32), classes) is None
    assert (
        tie_problem(np.array([2.0, 2.0, 0.5], np.float32), classes)
        == "model output has no prediction: the top logit 2 is shared by speed_30, speed_50"
    )
    assert tie_problem(np.zeros(3, np.float32), classes) == "model output has no prediction: all 3 logits are equal (0)"
    values = np.array([np.nan, 1.0, np.inf, np.nan] + [0.0] * 6, np.float32)
    assert nonfinite_problem(values, "model output logits") == "model output is not finite (NaN/Inf in 3 of 10 logits)"
    assert nonfinite_problem(values[:2], "model output logits") == "model output is not finite (NaN in 1 of 2 logits)"
    assert nonfinite_problem(values[1:2], "model output logits") is None
