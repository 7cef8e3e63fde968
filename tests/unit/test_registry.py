"""The model registry: class files, presets, the resize policy, architectures from files and timm."""

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.errors import ModelError
from harness.models import build_model, load_registry
from harness.preprocess import Preprocessing, resize_image, resize_mask
from harness.registry import read_class_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def write_registry(folder: Path, body: str) -> Path:
    path = folder / "models.yaml"
    path.write_text("models:\n" + textwrap.indent(textwrap.dedent(body), "  "), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- class files


def test_class_file_is_utf8_and_ignores_blank_lines_and_whitespace(tmp_path):
    (tmp_path / "classes.txt").write_bytes("\ufefftench\n\n  Müller-Thurgau  \r\n\t犬\n\n".encode())
    assert read_class_file(tmp_path / "classes.txt") == ["tench", "Müller-Thurgau", "犬"]
    registry = load_registry(
        write_registry(
            tmp_path,
            """\
        m:
          architecture: harness.probes:region_probe
          args: {size: [8, 8], region: [0, 0, 4, 4]}
          classes: classes.txt
          preprocessing: {preset: raw, size: 8}
    """,
        )
    )
    entry = registry.get("m")
    assert entry.classes == ["tench", "Müller-Thurgau", "犬"]
    assert entry.classes_source == str(tmp_path / "classes.txt")


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\nb\n\nc\n b \n", r"duplicate class 'b' in .*classes\.txt: lines 2 and 5"),
        ("\n  \n", r"class file .*classes\.txt lists no classes"),
        (b"caf\xe9\n", r"classes\.txt is not UTF-8"),
        (None, r"class file not found: .*classes\.txt"),
    ],
)
def test_class_file_errors_name_the_file_and_lines(tmp_path, content, message):
    if isinstance(content, bytes):
        (tmp_path / "classes.txt").write_bytes(content)
    elif content is not None:
        (tmp_path / "classes.txt").write_text(content, encoding="utf-8")
    path = write_registry(
        tmp_path,
        """\
        good:
          architecture: harness.zoo:small_vgg
          classes: [a, b]
          preprocessing: {size: 8}
        bad:
          architecture: harness.zoo:small_vgg
          classes: classes.txt
          preprocessing: {size: 8}
    """,
    )
    registry = load_registry(path)
    assert registry.names() == ["good", "bad"]
    registry.get("good")  # one broken entry does not take the others down
    with pytest.raises(ModelError, match=message) as info:
        registry.get("bad")
    # Located in the registry: the line of 'classes:' of the broken entry.
    assert f"{path}:8: models.bad.classes:" in str(info.value)


def test_inline_duplicates_and_missing_classes_are_errors(tmp_path):
    registry = load_registry(
        write_registry(
            tmp_path,
            """\
        dup:
          architecture: harness.zoo:small_vgg
          classes: [a, b, a]
          preprocessing: {size: 8}
        none:
          architecture: harness.zoo:small_vgg
          preprocessing: {size: 8}
    """,
        )
    )
    with pytest.raises(ModelError, match=r"duplicate class 'a' at positions 0 and 2"):
        registry.get("dup")
    with pytest.raises(ModelError, match=r"models\.yaml:6: models\.none\.classes: missing"):
        registry.get("none")


# --------------------------------------------------------------------------- presets


def pixels(*values):
    """A 1x3 RGB image whose three pixels are grey values."""
    return np.array([[[v, v, v] for v in values]], dtype=np.uint8)


def test_imagenet_preset_against_hand_computed_values():
    pre = Preprocessing.model_validate("imagenet")
    assert (pre.size, pre.resize, pre.resize_to) == ((224, 224), "center_crop", 256)
    x = pre.to_tensor([pixels(0, 255, 51)])
    for c in range(3):
        expected = [
            (0.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c],
            (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c],
            (0.2 - IMAGENET_MEAN[c]) / IMAGENET_STD[c],
        ]
        assert torch.allclose(x[0, c, 0], torch.tensor(expected), atol=1e-6)


def test_inception_preset_maps_to_minus_one_one():
    pre = Preprocessing.model_validate("inception")
    assert (pre.size, pre.resize_to) == ((299, 299), 342)
    x = pre.to_tensor([pixels(0, 255, 51)])
    assert torch.allclose(x[0, :, 0], torch.tensor([-1.0, 1.0, -0.6]).expand(3, 3), atol=1e-6)


def test_raw_preset_keeps_pixels_and_explicit_keys_override():
    x = Preprocessing.model_validate({"preset": "raw", "size": 1}).to_tensor([pixels(0, 255, 51)])
    assert torch.equal(x[0, :, 0], torch.tensor([0.0, 255.0, 51.0]).expand(3, 3))
    pre = Preprocessing.model_validate({"preset": "raw", "size": [2, 3], "mean": 127, "std": 128})
    assert pre.size == (2, 3) and pre.value_range == (0, 255) and pre.resize == "stretch"
    x = pre.to_tensor([pixels(0, 255, 127)])
    assert torch.allclose(x[0, 0, 0], torch.tensor([-127 / 128, 1.0, 0.0]))
    with pytest.raises(ValueError, match="preset raw needs size"):
        Preprocessing.model_validate("raw")
    # An overridden size keeps the preset's crop fraction (224 of 256).
    assert Preprocessing.model_validate({"preset": "imagenet", "size": 448}).resize_to == 512
    assert Preprocessing.model_validate({"preset": "imagenet", "resize": "letterbox"}).resize_to is None
    with pytest.raises(ValueError, match="resize_to goes with resize: center_crop"):
        Preprocessing.model_validate({"size": 4, "resize_to": 8})


# --------------------------------------------------------------------------- geometry


def block_image(rows: int, cols: int, block: int = 2) -> np.ndarray:
    """Blocks of block x block pixels whose grey value is 10 * block row + block column."""
    values = (10 * np.arange(rows)[:, None] + np.arange(cols)[None, :]).astype(np.uint8)
    return np.repeat(np.repeat(values, block, 0), block, 1)[..., None].repeat(3, axis=2)


def test_center_crop_with_resize_to_is_the_same_geometry_for_image_and_mask():
    image = block_image(4, 8)  # 8 x 16 pixels
    mask = np.zeros((8, 16), bool)
    mask[2:4, 6:8] = True  # block (1, 3)
    pre = Preprocessing.model_validate({"size": 2, "resize": "center_crop", "resize_to": 4})
    # Shorter side 8 -> 4 (blocks become pixels, 4 x 8), then the centre 2 x 2: rows 1-2, columns 3-4.
    assert resize_image(image, pre)[..., 0].tolist() == [[13, 14], [23, 24]]
    assert resize_mask(mask, pre).tolist() == [[True, False], [False, False]]


def test_center_crop_without_resize_to_scales_just_enough_to_cover():
    image = block_image(3, 6, block=1)  # 3 x 6, no scaling needed for a 3 x 3 crop
    pre = Preprocessing.model_validate({"size": 3, "resize": "center_crop"})
    # A margin of 1.5 columns rounds to 2 (Python's round, as torchvision's CenterCrop does).
    assert resize_image(image, pre)[..., 0].tolist() == [[2, 3, 4], [12, 13, 14], [22, 23, 24]]
    image = block_image(6, 3, block=2)  # 12 x 6 -> scaled by 0.5 to 6 x 3, rows 2..4 kept
    assert resize_image(image, pre)[..., 0].tolist() == [[20, 21, 22], [30, 31, 32], [40, 41, 42]]


@pytest.mark.parametrize("height, width", [(300, 400), (500, 333), (224, 224), (257, 1000)])
def test_imagenet_geometry_equals_torchvision_resize_256_center_crop_224(height, width):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    pre = Preprocessing.model_validate("imagenet")
    mask = np.random.default_rng(height).random((height, width)) > 0.5
    reference = (
        F.center_crop(
            F.resize(torch.from_numpy(mask).to(torch.uint8)[None], 256, interpolation=InterpolationMode.NEAREST), 224
        )[0].numpy()
        > 0
    )
    assert np.array_equal(resize_mask(mask, pre), reference)
    # The image: the same crop; only the resampling filter differs (area vs antialiased bilinear).
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256], -1).astype(np.uint8)
    reference_image = F.center_crop(F.resize(torch.from_numpy(image).permute(2, 0, 1), 256, antialias=True), 224)
    difference = np.abs(resize_image(image, pre).astype(int) - reference_image.permute(1, 2, 0).numpy())
    assert np.median(difference[..., :2]) <= 1


def test_letterbox_pads_with_the_colour_that_normalises_to_zero_and_masks_with_false():
    image = block_image(2, 4)  # 4 x 8 pixels
    mask = np.zeros((4, 8), bool)
    mask[:2, 6:] = True  # block (0, 3)
    pre = Preprocessing.model_validate({"preset": "imagenet", "size": 4, "resize": "letterbox"})
    out = resize_image(image, pre)
    fill = [124, 116, 104]  # round(255 * mean)
    assert out[0].tolist() == [fill] * 4 and out[3].tolist() == [fill] * 4
    assert out[1:3, :, 0].tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert resize_mask(mask, pre).tolist() == [[False] * 4, [False, False, False, True], [False] * 4, [False] * 4]
    assert torch.allclose(pre.to_tensor([out])[0, :, 0], torch.zeros(3, 4), atol=0.01)


def test_stretch_and_a_bare_size_keep_the_old_behaviour():
    image = block_image(2, 4)
    stretched = resize_image(image, (2, 4))
    assert stretched[..., 0].tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert np.array_equal(resize_image(image, Preprocessing.model_validate({"size": [2, 4]})), stretched)


# --------------------------------------------------------------------------- architectures


def write_kit(folder: Path, classes: int, bias: float) -> None:
    folder.mkdir()
    (folder / "layers.py").write_text(f"BIAS = {bias}\n")
    (folder / "model.py").write_text(
        textwrap.dedent(f"""\
        import torch
        from torch import nn

        import layers   # a plain sibling import, as kits ship them


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = nn.Linear(3, {classes})
                nn.init.zeros_(self.head.weight)
                nn.init.constant_(self.head.bias, layers.BIAS)

            def forward(self, x):
                return self.head(x.mean(dim=(2, 3)))


        def build():
            return Net()
    """)
    )


def test_two_kits_with_model_py_coexist_in_one_session(tmp_path):
    write_kit(tmp_path / "kit_a", classes=2, bias=1.0)
    write_kit(tmp_path / "kit_b", classes=3, bias=2.0)
    registry = load_registry(
        write_registry(
            tmp_path,
            """\
        a:
          architecture: kit_a/model.py:build
          classes: [x, y]
          preprocessing: {size: 4}
        b:
          architecture: kit_b/model.py:build
          classes: [x, y, z]
          preprocessing: {size: 4}
    """,
        )
    )
    a = build_model("a", registry, torch.device("cpu"))
    b = build_model("b", registry, torch.device("cpu"))
    x = torch.zeros(1, 3, 4, 4)
    assert a.module(x).tolist() == [[1.0, 1.0]] and b.module(x).tolist() == [[2.0, 2.0, 2.0]]
    assert type(a.module).__module__ != type(b.module).__module__
    assert "layers" not in sys.modules  # the siblings did not leak under their plain name
    again = build_model("a", registry, torch.device("cpu"))
    assert type(again.module) is type(a.module)  # the same file is one module


def test_relative_sibling_imports_work_in_a_file_model(tmp_path):
    kit = tmp_path / "nets"
    kit.mkdir()
    (kit / "blocks.py").write_text("from torch import nn\n\ndef head(k):\n    return nn.Linear(3, k)\n")
    (kit / "net.py").write_text(
        "from torch import nn\nfrom .blocks import head\n\n"
        "def build(k=2):\n"
        "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), head(k))\n"
    )
    registry = load_registry(
        write_registry(
            tmp_path,
            """\
        m:
          architecture: nets/net.py:build
          args: {k: 4}
          classes: [a, b, c, d]
          preprocessing: {size: 4}
    """,
        )
    )
    assert build_model("m", registry, torch.device("cpu")).module(torch.zeros(1, 3, 4, 4)).shape == (1, 4)


def test_timm_architecture_is_built_without_pretrained_weights_and_loaded_from_the_state_dict(tmp_path):
    timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install 'xai-harness[timm]'")
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    registry = load_registry(
        write_registry(
            tmp_path,
            """\
        t:
          architecture: timm:resnet18
          weights: w.pt
          classes: [a, b, c]
          preprocessing: {preset: imagenet, size: 32}
    """,
        )
    )
    loaded = build_model("t", registry, torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), reference(x))


def test_timm_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what an environment without the extra looks like
    registry = load_registry(
        write_registry(
            tmp_path,
            """\
        t:
          architecture: timm:resnet18
          classes: [a, b]
          preprocessing: imagenet
    """,
        )
    )
    with pytest.raises(ModelError, match=r"needs the optional package timm.*pip install 'xai-harness\[timm\]'"):
        build_model("t", registry, torch.device("cpu"))


def test_import_failures_are_errors_of_the_registry_file(tmp_path, capsys):
    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('no GPU driver in this kit')\n")
    path = write_registry(
        tmp_path,
        """\
        from-file:
          architecture: broken.py:build
          classes: [thing, other]
          preprocessing: {size: 8}
        from-module:
          architecture: no_such_package.nets:build
          classes: [thing, other]
          preprocessing: {size: 8}
    """,
    )
    image = np.zeros((8, 8, 3), np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), image)
    for model in ("from-file", "from-module"):
        (tmp_path / f"{model}.xai.yaml").write_text(
            f"model: {model}\ndefaults: {{label: thing}}\ncases:\n  - id: a\n    image: a.png\n"
            "    object: {box: [2, 2, 6, 6]}\n"
        )
    code = main(["validate", str(tmp_path), "--models", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert (
        f"{path}:3: models.from-file.architecture: importing {tmp_path / 'broken.py'} failed: "
        "RuntimeError: no GPU driver in this kit"
    ) in out
    assert f"{path}:7: models.from-module.architecture: cannot import 'no_such_package.nets'" in out


@pytest.mark.parametrize("command", ["new", "import", "validate"])
def test_authoring_against_an_entry_without_classes_is_an_error(tmp_path, capsys, command):
    path = write_registry(
        tmp_path,
        """\
        m:
          architecture: harness.zoo:small_vgg
          preprocessing: {size: 8}
    """,
    )
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "a_mask.png"), np.full((8, 8), 255, np.uint8))
    suite = tmp_path / "s.xai.yaml"
    if command == "new":
        argv = [
            "new",
            str(suite),
            "--model",
            "m",
            "--models",
            str(path),
            "--image",
            str(tmp_path / "a.png"),
            "--box",
            "1",
            "1",
            "5",
            "5",
            "--label",
            "thing",
        ]
    elif command == "import":
        argv = [
            "import",
            "masks",
            str(tmp_path),
            "--label",
            "thing",
            "-o",
            str(suite),
            "--model",
            "m",
            "--models",
            str(path),
        ]
    else:
        suite = tmp_path / "written.xai.yaml"
        suite.write_text(
            "model: m\ndefaults: {label: thing}\ncases:\n  - id: a\n    image: a.png\n    object: {box: [1, 1, 5, 5]}\n"
        )
        assert main(["validate", str(suite), "--models", str(path)]) == 1
        out = capsys.readouterr().out
        assert f"{path}:2: models.m.classes: missing" in out and out.rstrip().endswith("2 errors")
        return
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot check class names against model 'm'" in err and "models.m.classes: missing" in err
    assert not suite.exists()


# --------------------------------------------------------------------------- the reference


def test_every_registry_example_in_the_docs_is_a_valid_registry(tmp_path):
    import re

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "registry.md").read_text(encoding="utf-8")
    examples = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
        if block.startswith("models:\n") and "..." not in block
    ]
    assert len(examples) >= 5
    for index, example in enumerate(examples):
        folder = tmp_path / str(index)
        folder.mkdir()
        for entry in yaml.safe_load(example)["models"].values():
            if isinstance(entry["classes"], str):  # a stand-in class file
                (folder / entry["classes"]).parent.mkdir(parents=True, exist_ok=True)
                (folder / entry["classes"]).write_text("a\nb\n")
        (folder / "models.yaml").write_text(example)
        registry = load_registry(folder / "models.yaml")
        assert registry.broken == {}, example
