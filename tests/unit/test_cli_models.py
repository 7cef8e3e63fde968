"""``python -m harness models``, and a new user's 1,000-class model onboarded in a few lines."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.preprocess import resize_image

ROOT = Path(__file__).resolve().parents[2]


def run_models(capsys, *argv: str) -> tuple[int, str]:
    code = main(["models", *argv])
    return code, capsys.readouterr().out


def test_demo_registry_listing(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out = run_models(capsys)
    assert code == 0
    blocks = out.split("\n\n")
    assert [b.splitlines()[0] for b in blocks[:2]] == ["signs-clean", "signs-shortcut"]
    clean = blocks[0]
    assert "  architecture   harness.zoo:small_vgg (num_classes=6)" in clean
    assert "  input size     64 x 64 (height x width), RGB" in clean
    assert "  classes        6 from inline list: speed_30, speed_50, speed_70, stop, yield, background" in clean
    assert (
        "  preprocessing  custom: 64x64 (h x w), resize stretch, value_range [0, 1], mean [0.5, 0.5, 0.5], "
        "std [0.5, 0.5, 0.5]"
    ) in clean
    assert "  LRP backend    fast: " in clean
    assert out.rstrip().endswith("2 models, 0 errors (fixtures/models.yaml)")


def test_file_model_backend_and_broken_entries(tmp_path, capsys, monkeypatch):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "model.py").write_text(
        textwrap.dedent("""\
        import torch
        from torch import nn


        class Doubler(nn.Module):
            def forward(self, x):
                return 2 * x


        def build(num_classes=3):
            return nn.Sequential(nn.Conv2d(3, 4, 3), Doubler(), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))


        def broken():
            raise RuntimeError("this kit needs a GPU")
    """)
    )
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    registry = tmp_path / "models.yaml"
    registry.write_text(
        textwrap.dedent("""\
        models:
          kit:
            architecture: nets/model.py:build
            classes: classes.txt
            preprocessing: {preset: raw, size: [16, 24], mean: 127, std: 128}
          kit-broken:
            architecture: nets/model.py:broken
            classes: [a, b]
            preprocessing: imagenet
          no-classes:
            architecture: nets/model.py:build
            preprocessing: imagenet
    """)
    )
    code, out = run_models(capsys, "--registry", str(registry))
    assert code == 1
    kit, kit_broken, no_classes, summary = out.split("\n\n")
    assert "  architecture   nets/model.py:build\n" in kit
    assert f"  classes        3 from {tmp_path / 'classes.txt'}: cat, dog, bird" in kit
    assert "  input size     16 x 24 (height x width), RGB" in kit
    assert (
        "  preprocessing  raw: 16x24 (h x w), resize stretch, value_range [0, 255], mean [127, 127, 127], "
        "std [128, 128, 128]"
    ) in kit
    # The backend a run would choose, with its reason.
    from harness.attribution import make_explainer
    from harness.models import build_model, load_registry

    bound = make_explainer("lrp/epsilon_plus_flat", build_model("kit", load_registry(registry), torch.device("cpu")))
    assert f"  LRP backend    {bound.backend}: {bound.note}" in kit
    assert "error" not in kit
    assert (
        "preprocessing  imagenet: 224x224 (h x w), resize center_crop (shorter side to 256 first), "
        "value_range [0, 1], mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"
    ) in kit_broken
    assert "  error          model 'kit-broken': nets/model.py:broken(**{}) failed: this kit needs a GPU" in kit_broken
    assert (
        f"  error          model 'no-classes' cannot be used: {registry}:10: models.no-classes.classes: missing"
        in no_classes
    )
    assert summary.strip() == f"3 models, 2 errors ({registry})"
    code, out = run_models(capsys, "--registry", str(registry), "--model", "kit")
    assert code == 0 and out.rstrip().endswith("1 models, 0 errors (" + str(registry) + ")")

    # A model the fast engine does not cover is listed with zennit and the reason.
    def fallback(name, model, backend="auto"):
        return SimpleNamespace(
            backend="zennit",
            note=f"fast LRP does not cover model {model.name!r} (module '1' (Doubler): no rule); using zennit",
        )

    monkeypatch.setattr("harness.attribution.make_explainer", fallback)
    code, out = run_models(capsys, "--registry", str(registry), "--model", "kit")
    assert code == 0
    assert (
        "  LRP backend    zennit: fast LRP does not cover model 'kit' (module '1' (Doubler): no rule); using zennit"
    ) in out


class _Tiny1000(torch.nn.Module):
    """What the new user's model.py holds (the test saves the weights from this twin)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(3, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


MODEL_PY = """\
import torch


class Tiny1000(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(3, 1000)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


def build():
    return Tiny1000()
"""

# The whole registration: five lines.
REGISTRY = """\
models:
  my-net:
    architecture: kit/model.py:build
    weights: kit/weights.pt
    classes: kit/classes.txt
    preprocessing: imagenet
"""

SUITE = """\
model: my-net
defaults: {label: class_0042}
cases:
  - id: photo
    image: photo.png
    object: {box: [150, 100, 300, 220]}
    variants: [original, background_removed]
"""


def test_a_new_user_onboards_a_1000_class_model_in_a_few_lines(tmp_path, capsys, monkeypatch):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "model.py").write_text(MODEL_PY)
    torch.manual_seed(0)
    twin = _Tiny1000()
    with torch.no_grad():
        twin.fc.bias.zero_()
        twin.fc.weight[42] = torch.tensor([2.0, 1.0, 0.5])  # a confident, positive logit for class 42
    torch.save(twin.state_dict(), kit / "weights.pt")
    (kit / "classes.txt").write_text("".join(f"class_{i:04d}\n" for i in range(1000)), encoding="utf-8")
    (tmp_path / "models.yaml").write_text(REGISTRY)
    assert len(REGISTRY.splitlines()) <= 10
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (0, 0), 4)
    photo[100:220, 150:300] = (250, 200, 60)
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    (tmp_path / "photo.xai.yaml").write_text(SUITE)

    monkeypatch.chdir(tmp_path)
    code, listing = run_models(capsys, "--registry", "models.yaml")  # python -m harness models --registry ...
    assert code == 0, listing
    assert listing.startswith("my-net\n")
    assert "  classes        1000 from kit/classes.txt: class_0000, class_0001" in listing
    assert "input size     224 x 224" in listing and "imagenet: 224x224" in listing

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "photo.xai.yaml",
            "--xai-models",
            "models.yaml",
            "--xai-results",
            "out/results.csv",
            "--xai-assets",
            "out/assets",
            "--xai-device",
            "cpu",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(results["variant"]) == ["original", "background_removed"], run.stdout + run.stderr
    row = results.iloc[0]
    assert row["predicted"] == "class_0042", row["message"]

    # The model saw the torchvision-style crop, and the report shows exactly that image.
    from harness import load_model

    model = load_model("my-net", registry=tmp_path / "models.yaml", device="cpu")
    seen = resize_image(photo, model.preprocessing)
    (shown,) = (tmp_path / "out" / "assets").rglob("photo*__original_input.png")
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(shown)), cv2.COLOR_BGR2RGB), seen)
    with torch.no_grad():
        probs = model.module(model.prepare([photo])).softmax(1)[0]
    assert row["p_label"] == pytest.approx(float(probs[42]), abs=1e-6)
    assert row["p_predicted"] == pytest.approx(float(probs.max()), abs=1e-6)
