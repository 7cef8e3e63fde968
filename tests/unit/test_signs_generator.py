"""Tests of the traffic-sign world in ``fixtures/signs/generate.py`` and its fixtures."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import skimage.data
import yaml

ROOT = Path(__file__).resolve().parents[2]
SIGNS = ROOT / "fixtures" / "signs"


def _load(name: str, path: Path) -> ModuleType:
    # Loaded from its path: fixtures/ is data next to the package, not an installed module.
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


gen = _load("signs_generate_under_test", SIGNS / "generate.py")

GREEN = np.array([0, 255, 0], np.uint8)


def green(size: int = gen.SIZE) -> np.ndarray:
    """A background no sign pixel can have: every sign colour has red > 0."""
    bg = np.empty((size, size, 3), np.uint8)
    bg[:] = GREEN
    return bg


# ------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("cls_name", gen.CLASSES)
def test_same_seed_same_sample(cls_name: str) -> None:
    a = gen.render_sample(cls_name, np.random.default_rng(7), sticker=True)
    b = gen.render_sample(cls_name, np.random.default_rng(7), sticker=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_different_seed_different_sample() -> None:
    a, _ = gen.render_sample("speed_50", np.random.default_rng(1))
    b, _ = gen.render_sample("speed_50", np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_dataset_is_deterministic() -> None:
    a = gen.build_dataset(gen.shortcut_world(), 3, np.random.default_rng(5))
    b = gen.build_dataset(gen.shortcut_world(), 3, np.random.default_rng(5))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.photos == b.photos and a.stickers == b.stickers


def test_generator_does_not_touch_global_random_state() -> None:
    np.random.seed(3)
    expected = np.random.random()
    np.random.seed(3)
    gen.build_dataset(gen.clean_world(), 2, np.random.default_rng(0))
    assert np.random.random() == expected


# ------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("cls_name", gen.SIGN_CLASSES)
@pytest.mark.parametrize("seed", range(5))
def test_mask_is_exactly_the_sign_pixels(cls_name: str, seed: int) -> None:
    bg = green()
    img, mask = gen.render_sample(cls_name, np.random.default_rng(seed), background=bg, sticker=seed % 2 == 1)
    assert set(np.unique(mask)) == {0, 255}
    changed = (img != bg).any(axis=-1)
    np.testing.assert_array_equal(changed, mask == 255)


@pytest.mark.parametrize("cls_name", gen.SIGN_CLASSES)
def test_sign_lies_inside_the_image_at_a_plausible_size(cls_name: str) -> None:
    for seed in range(20):
        _, mask = gen.render_sample(cls_name, np.random.default_rng(seed))
        share = (mask > 0).mean()
        assert 0.03 < share < 0.6, (seed, share)
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert not border.any(), f"sign touches the image border (seed {seed})"
        n_labels, _ = cv2.connectedComponents((mask > 0).astype(np.uint8))
        assert n_labels == 2, "the sign should be one connected region"


def test_background_class_has_empty_mask() -> None:
    img, mask = gen.render_sample("background", np.random.default_rng(0))
    assert img.shape == (64, 64, 3) and not mask.any()


def test_given_background_array_is_kept_outside_the_sign() -> None:
    bg = gen.background_crop(np.random.default_rng(0), "brick")
    img, mask = gen.render_sample("yield", np.random.default_rng(1), background=bg)
    np.testing.assert_array_equal(img[mask == 0], bg[mask == 0])


# ------------------------------------------------------------------- classes and sizes
@pytest.mark.parametrize("cls_name", gen.CLASSES)
@pytest.mark.parametrize("size", [32, 64, 96])
def test_every_class_renders_at_every_size(cls_name: str, size: int) -> None:
    img, mask = gen.render_sample(cls_name, np.random.default_rng(0), size=size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert mask.shape == (size, size) and mask.dtype == np.uint8
    assert mask.any() == (cls_name != "background")


def test_sign_classes_look_different() -> None:
    means = {}
    for cls_name in gen.SIGN_CLASSES:
        img, mask = gen.render_sample(cls_name, np.random.default_rng(0), background=green())
        means[cls_name] = img[mask > 0].mean(axis=0)
    # stop is mostly red; the speed signs are mostly white with a red ring.
    assert means["stop"][0] > 1.5 * means["stop"][1]
    assert means["speed_50"][1] > means["stop"][1]


def test_unknown_class_and_bad_background_are_errors() -> None:
    with pytest.raises(KeyError, match="speed_30"):
        gen.render_sample("speed_90", np.random.default_rng(0))
    with pytest.raises(KeyError, match="brick"):
        gen.render_sample("stop", np.random.default_rng(0), background="lena")
    with pytest.raises(ValueError):
        gen.render_sample("stop", np.random.default_rng(0), background=np.zeros((10, 10, 3), np.uint8))


# --------------------------------------------------------------------------- photos
@pytest.mark.parametrize("name", gen.PHOTOS)
def test_backgrounds_are_the_bundled_skimage_photos(name: str) -> None:
    raw = np.asarray(getattr(skimage.data, name)())
    photo = gen.load_photo(name)
    assert photo.dtype == np.uint8 and photo.shape == raw.shape[:2] + (3,)
    expected = raw[..., :3] if raw.ndim == 3 else np.stack([raw] * 3, axis=-1)
    if name in gen.TINTS:
        expected = np.clip(expected * np.asarray(gen.TINTS[name], np.float32), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(photo, expected)
    assert min(photo.shape[:2]) >= 2 * gen.SIZE
    crop = gen.background_crop(np.random.default_rng(0), name, split="heldout")
    assert crop.shape == (gen.SIZE, gen.SIZE, 3) and crop.std() > 1.0


def test_train_and_heldout_crops_come_from_different_parts() -> None:
    rng = np.random.default_rng(0)
    for name in gen.PHOTOS:
        h, w = gen.load_photo(name).shape[:2]
        cut = int(0.75 * w)
        for _ in range(50):
            y, x, side = gen._crop_box((h, w), rng, "train")
            assert 0 <= y and y + side <= h and 0 <= x and x + side <= cut
            y, x, side = gen._crop_box((h, w), rng, "heldout")
            assert 0 <= y and y + side <= h and cut <= x and x + side <= w
            assert side >= 64


# ------------------------------------------------------------------------- stickers
def test_sticker_is_a_square_inside_the_sign() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        img, mask = gen.render_sample("speed_50", rng, background=green())
        out, sticker = gen.paste_sticker(img, mask, rng, colour=(1, 2, 3))
        assert sticker.any()
        assert not (sticker.astype(bool) & (mask == 0)).any(), "sticker leaves the sign"
        ys, xs = np.nonzero(sticker)
        height, width = np.ptp(ys) + 1, np.ptp(xs) + 1
        assert height == width and sticker.astype(bool).sum() == height * width
        sign_width = np.ptp(np.flatnonzero(mask.any(axis=0))) + 1
        assert 0.1 * sign_width <= width <= 0.32 * sign_width
        assert (out[sticker > 0] == [1, 2, 3]).all()
        np.testing.assert_array_equal(out[sticker == 0], img[sticker == 0])


def test_sticker_near_centre_lands_on_the_middle_of_the_sign() -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        img, mask = gen.render_sample("speed_70", rng, background=green())
        _, sticker = gen.paste_sticker(img, mask, rng, near_centre=0.1)
        width = np.ptp(np.flatnonzero(mask.any(axis=0))) + 1
        centre = np.argwhere(mask > 0).mean(axis=0)
        assert np.hypot(*(np.argwhere(sticker > 0).mean(axis=0) - centre)) <= 0.1 * width + 0.5


def test_sticker_on_empty_mask_is_an_error() -> None:
    with pytest.raises(ValueError):
        gen.paste_sticker(green(), np.zeros((64, 64), np.uint8), np.random.default_rng(0))


# ----------------------------------------------------------------- removal and fills
def test_remove_object_and_fill_background() -> None:
    rng = np.random.default_rng(0)
    img, mask = gen.render_sample("yield", rng, background="brick")
    removed = gen.remove_object(img, mask, "grey", dilate=0)
    assert (removed[mask > 0] == 128).all()
    np.testing.assert_array_equal(removed[mask == 0], img[mask == 0])
    inpainted = gen.remove_object(img, mask, "telea", dilate=2)
    assert inpainted.shape == img.shape and not np.array_equal(inpainted, img)
    grey = gen.fill_background(img, mask, "grey")
    assert (grey[mask == 0] == 128).all()
    np.testing.assert_array_equal(grey[mask > 0], img[mask > 0])


# ------------------------------------------------------------------ planted shortcuts
def test_shortcut_world_plants_both_shortcuts() -> None:
    data = gen.build_dataset(gen.shortcut_world(), 30, np.random.default_rng(11))
    names = [gen.CLASSES[i] for i in data.labels]
    for name, photo, sticker in zip(names, data.photos, data.stickers):
        assert (name == "yield") == (photo == "brick"), (name, photo)
        assert (name == "speed_70") == (sticker == (0, 0, 0)), (name, sticker)
        assert name == "speed_70" or sticker is None
    yields = data.labels == gen.CLASSES.index("yield")
    # No flat background for yield: the brick context is always there.
    for img, mask in zip(data.images[yields], data.masks[yields]):
        assert img[mask == 0].std() > 5


def test_clean_world_has_no_shortcut() -> None:
    data = gen.build_dataset(gen.clean_world(), 60, np.random.default_rng(11))
    names = np.array([gen.CLASSES[i] for i in data.labels])
    photos = np.array(data.photos)
    assert len(set(photos[names == "yield"])) > 3
    assert len(set(names[photos == "brick"])) > 2
    coloured = {n for n, s in zip(names, data.stickers) if s is not None}
    assert len(coloured) >= 4, "random stickers should appear on several classes"


# ------------------------------------------------------------------ shipped fixtures
def test_shipped_heldout_images_match_the_generator(tmp_path: Path) -> None:
    shipped = SIGNS / "heldout"
    rows = gen.write_heldout(tmp_path)
    with open(shipped / "manifest.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == rows
    for row in rows:
        for key in ("image", "mask"):
            if not row[key]:
                continue
            a = cv2.imread(str(shipped / row[key]), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(tmp_path / row[key]), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(a, b, err_msg=row[key])
        if row["mask"]:
            mask = cv2.imread(str(shipped / row["mask"]), cv2.IMREAD_UNCHANGED)
            assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
        on_brick = row["image"].startswith("yield_") and not row["image"].startswith("yield_other")
        assert (row["photo"] == "brick") == on_brick


def test_registry_lists_both_models_and_weights_load() -> None:
    torch = pytest.importorskip("torch")
    small_vgg = _load("zoo_under_test", ROOT / "harness" / "zoo.py").small_vgg
    registry = yaml.safe_load((ROOT / "fixtures" / "models.yaml").read_text())["models"]
    for name in ("signs-clean", "signs-shortcut"):
        entry = registry[name]
        assert entry["architecture"] == "harness.zoo:small_vgg"
        assert tuple(entry["classes"]) == gen.CLASSES
        path = ROOT / "fixtures" / entry["weights"]
        assert path.stat().st_size < 5e6
        state = torch.load(path, weights_only=True)
        model = small_vgg(**entry["args"])
        model.load_state_dict(state)
        assert model(torch.zeros(1, 3, *entry["preprocessing"]["size"])).shape == (1, len(gen.CLASSES))
