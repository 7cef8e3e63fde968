"""Pixel checks for every variant."""

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.perturb import (
    InstanceRemovedSettings,
    StickerAddedSettings,
    add_sticker,
    apply_variant,
    dilate_mask,
    original,
    remove_background,
    remove_instance,
)


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 100, size=(40, 50, 3), dtype=np.uint8)  # dark textured background
    image[10:30, 15:35] = (250, 20, 20)  # red object
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:30, 15:35] = True
    return image, mask


def test_original_is_an_identical_copy(scene):
    image, mask = scene
    out = original(image, mask)
    assert np.array_equal(out.image, image) and out.image is not image
    assert np.array_equal(out.object_mask, mask)
    assert out.removed_mask is None and out.sticker_mask is None


def test_dilate_grows_by_the_given_pixels(scene):
    _, mask = scene
    grown = dilate_mask(mask, 2)
    assert grown[8, 25] and grown[31, 25] and not grown[7, 25] and not grown[32, 25]
    assert np.array_equal(dilate_mask(mask, 0), mask)


@pytest.mark.parametrize("fill", ["inpaint_telea", "inpaint_ns", "blur", "mean", "grey", "noise"])
def test_instance_removed_changes_only_the_dilated_object(scene, fill):
    image, mask = scene
    out = remove_instance(image, mask, fill=fill, dilate=2, seed=1)
    removed = out.removed_mask
    assert np.array_equal(removed, dilate_mask(mask, 2))
    assert np.array_equal(out.image[~removed], image[~removed])
    # The red object is gone: the filled region is no longer red on average.
    red, green = out.image[mask].astype(float).mean(axis=0)[:2]
    assert red - green < 100, fill


def test_instance_removed_fills_have_known_values(scene):
    image, mask = scene
    grey = remove_instance(image, mask, fill="grey", dilate=0, grey_value=77)
    assert np.all(grey.image[mask] == 77)
    mean = remove_instance(image, mask, fill="mean", dilate=0)
    expected = np.round(image[~mask].mean(axis=0)).astype(np.uint8)
    assert np.all(mean.image[mask] == expected)


def test_noise_fill_is_seeded(scene):
    image, mask = scene
    a = remove_instance(image, mask, fill="noise", seed=3).image
    b = remove_instance(image, mask, fill="noise", seed=3).image
    c = remove_instance(image, mask, fill="noise", seed=4).image
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("fill", ["grey", "black", "mean", "blur", "noise", "image"])
def test_background_removed_keeps_object_pixels(scene, fill):
    image, mask = scene
    background = np.full((20, 20, 3), 9, dtype=np.uint8)
    out = remove_background(image, mask, fill=fill, background=background, grey_value=100, seed=2)
    assert np.array_equal(out.image[mask], image[mask])
    outside = out.image[~mask]
    if fill == "grey":
        assert np.all(outside == 100)
    elif fill == "black":
        assert np.all(outside == 0)
    elif fill == "mean":
        assert np.all(outside == np.round(image[~mask].mean(axis=0)).astype(np.uint8))
    elif fill == "image":
        assert np.all(outside == 9)
    else:
        assert not np.array_equal(outside, image[~mask])


def test_background_image_fill_needs_an_image(scene):
    image, mask = scene
    with pytest.raises(HarnessError, match="needs a background"):
        remove_background(image, mask, fill="image")


def test_square_sticker_on_object_has_the_right_size_and_colour(scene):
    image, mask = scene
    out = add_sticker(image, mask, size=0.25, color=(0, 255, 0), seed=5)
    side = round(0.25 * 20)
    assert out.sticker_mask.sum() == side * side
    assert np.all(out.image[out.sticker_mask] == (0, 255, 0))
    assert np.all(mask[out.sticker_mask]), "on_object stickers lie inside the object"
    assert np.array_equal(out.image[~out.sticker_mask], image[~out.sticker_mask])


def test_sticker_placement_is_seeded(scene):
    image, mask = scene
    a = add_sticker(image, mask, seed=1).sticker_mask
    b = add_sticker(image, mask, seed=1).sticker_mask
    assert np.array_equal(a, b)
    placements = {add_sticker(image, mask, seed=s).sticker_mask.tobytes() for s in range(6)}
    assert len(placements) > 1


def test_circle_sticker_and_corner_and_off_object(scene):
    image, mask = scene
    circle = add_sticker(image, mask, shape="circle", size=0.5, position="object_center")
    square_area = round(0.5 * 20) ** 2
    assert 0.6 * square_area < circle.sticker_mask.sum() < square_area
    corner = add_sticker(image, mask, size=0.2, relative_to="image", position="top_left")
    # relative_to: image measures against the image's larger side (50): a 10-pixel square.
    assert corner.sticker_mask[0, 0] and corner.sticker_mask.sum() == round(0.2 * 50) ** 2
    off = add_sticker(image, mask, size=0.2, position="off_object", seed=0)
    assert not np.any(off.sticker_mask & mask)


def test_sticker_at_xy_centre(scene):
    image, mask = scene
    out = add_sticker(image, mask, size=0.2, position=(25, 20))
    rows, cols = np.nonzero(out.sticker_mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (18, 21, 23, 26)


def test_rgba_sticker_respects_alpha(scene):
    image, mask = scene
    patch = np.zeros((4, 4, 4), dtype=np.uint8)
    patch[..., 2] = 255  # blue
    patch[:2, :, 3] = 255  # top half opaque, bottom half transparent
    out = add_sticker(image, mask, sticker=patch, size=0.2, position=(25, 20))
    assert out.sticker_mask.sum() == 8
    assert np.all(out.image[out.sticker_mask] == (0, 0, 255))


def test_off_object_without_room_is_an_error():
    image = np.zeros((10, 10, 3), np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[1:9, 1:9] = True
    with pytest.raises(HarnessError, match="no room"):
        add_sticker(image, mask, size=0.5, position="off_object")


def test_apply_variant_dispatches_with_settings(scene):
    image, mask = scene
    out = apply_variant(
        "instance_removed", InstanceRemovedSettings(fill="grey", dilate=0), image, mask, lambda p: None, lambda p: None
    )
    assert np.all(out.image[mask] == 128)
    sticker = apply_variant(
        "sticker_added", StickerAddedSettings(size=0.1), image, mask, lambda p: None, lambda p: None
    )
    assert sticker.sticker_mask.sum() == 4


@pytest.mark.parametrize(
    ("settings", "values"),
    [
        (StickerAddedSettings, {"color": (300, -5, 0)}),
        (StickerAddedSettings, {"seed": -1}),
        (StickerAddedSettings, {"size": float("nan")}),
        (StickerAddedSettings, {"position": (True, 3)}),
        (StickerAddedSettings, {"position": (10**7, 3)}),
        (InstanceRemovedSettings, {"seed": -1}),
        (InstanceRemovedSettings, {"grey_value": True}),
    ],
)
def test_settings_out_of_range_are_refused_not_clipped(settings, values):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        settings.model_validate(values)


def test_largest_seed_still_renders(scene):
    image, mask = scene
    settings = InstanceRemovedSettings.model_validate({"fill": "noise", "seed": 2**63 - 1})
    out = apply_variant("instance_removed", settings, image, mask, None, None)
    assert out.image.dtype == np.uint8 and not np.array_equal(out.image, image)
