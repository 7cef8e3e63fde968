"""What a sticker's ``size`` is measured against, pinned in pixels (docs/writing-test-cases.md).

``size`` is a fraction of the larger side of the object's bounding box (``relative_to:
object``) or of the image (``relative_to: image``), applied to the sticker's larger side;
an image sticker keeps its aspect ratio, ``size: native`` its own pixel size.
"""

import numpy as np
import pytest

from harness.perturb import StickerAddedSettings, apply_variant


def no_file(path: str) -> np.ndarray:
    raise AssertionError(f"no file should be read ({path})")


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 60 x 100 image (smaller side 60, larger 100); the object's box is 30 tall and 12 wide."""
    image = np.full((60, 100, 3), 200, np.uint8)
    mask = np.zeros((60, 100), bool)
    mask[5:35, 10:22] = True
    return image, mask


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the pixels set in ``mask``."""
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def sticker_box(settings: dict, scene: tuple[np.ndarray, np.ndarray], patch: np.ndarray | None = None) -> tuple:
    """(top, left, height, width, pixel count) of the pasted sticker."""
    image, mask = scene
    load = (lambda path: patch) if patch is not None else no_file
    out = apply_variant("sticker_added", StickerAddedSettings.model_validate(settings), image, mask, no_file, load)
    return (*box_of(out.sticker_mask), int(out.sticker_mask.sum()))


def watermark(height: int = 9, width: int = 16) -> np.ndarray:
    """An opaque RGBA patch whose every pixel differs from the scene's grey 200."""
    patch = np.zeros((height, width, 4), np.uint8)
    patch[..., 0] = 255
    patch[..., 3] = 255
    return patch


@pytest.mark.parametrize("size, side", [(0.25, 25), (0.5, 50), (0.01, 1)])
def test_relative_to_image_is_a_fraction_of_the_larger_side(scene, size, side):
    # 0.25 of the larger side (100) is 25 pixels; of the smaller (60) it would be 15.
    settings = {"relative_to": "image", "size": size, "position": "top_left"}
    assert sticker_box(settings, scene) == (0, 0, side, side, side * side)


@pytest.mark.parametrize("size, side", [(0.5, 15), (0.2, 6), (1.0, 30)])
def test_relative_to_object_is_a_fraction_of_the_larger_side_of_its_box(scene, size, side):
    # The box is 30 x 12: 0.5 of its larger side is 15 pixels (of the smaller, 6).
    settings = {"relative_to": "object", "size": size, "position": "bottom_right"}
    assert sticker_box(settings, scene) == (60 - side, 100 - side, side, side, side * side)


@pytest.mark.parametrize(
    "position, top, left",
    [("top_left", 1, 1), ("top_right", 1, 100 - 16 - 1), ("bottom_left", 60 - 9 - 1, 1), ("bottom_right", 50, 83)],
)
def test_native_16x9_png_lands_as_16x9_at_the_corner_and_margin(scene, position, top, left):
    settings = {"image": "w.png", "size": "native", "position": position, "margin": 1}
    assert sticker_box(settings, scene, watermark()) == (top, left, 9, 16, 16 * 9)


def test_native_pixels_are_the_png_itself(scene):
    image, mask = scene
    patch = np.zeros((9, 16, 4), np.uint8)
    patch[..., :3] = np.arange(16 * 9 * 3, dtype=np.uint8).reshape(9, 16, 3)
    patch[..., 3] = 255
    settings = StickerAddedSettings.model_validate({"image": "w.png", "size": "native", "position": "top_left"})
    out = apply_variant("sticker_added", settings, image, mask, no_file, lambda path: patch)
    assert np.array_equal(out.image[0:9, 0:16], patch[..., :3])
    assert np.array_equal(out.image[9:, :], image[9:, :]) and np.array_equal(out.image[:, 16:], image[:, 16:])


@pytest.mark.parametrize("size, height, width", [(0.32, 18, 32), (0.16, 9, 16), (0.5, 28, 50)])
def test_scaled_image_sticker_keeps_its_aspect_ratio(scene, size, height, width):
    # The larger side (width 16) becomes size * 100; the height follows at 9/16 of it.
    settings = {"image": "w.png", "size": size, "relative_to": "image", "position": "top_left"}
    assert sticker_box(settings, scene, watermark()) == (0, 0, height, width, height * width)


def test_portrait_sticker_scales_its_height(scene):
    # A 16 tall, 9 wide patch: its larger side is the height, 0.5 of the object's 30 = 15.
    settings = {"image": "w.png", "size": 0.5, "position": "top_left"}
    assert sticker_box(settings, scene, watermark(16, 9)) == (0, 0, 15, 8, 15 * 8)


@pytest.mark.parametrize("opacity", [1.0, 0.5, 0.25])
def test_opacity_blends_the_sticker_with_the_image(scene, opacity):
    image, mask = scene
    settings = StickerAddedSettings.model_validate(
        {"size": 0.1, "relative_to": "image", "position": "top_left", "color": [0, 0, 0], "opacity": opacity}
    )
    out = apply_variant("sticker_added", settings, image, mask, no_file, no_file)
    # Grey 200 under black at opacity a: 200 * (1 - a), everywhere the sticker is.
    assert np.all(out.image[out.sticker_mask] == round(200 * (1 - opacity)))
    assert out.sticker_mask.sum() == 100


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"size": "native"}, "size 'native' needs 'image'"),
        ({"size": "big"}, "0 < size <= 1 or 'native'"),
        ({"size": 1.5}, "less than or equal to 1"),
        ({"size": -0.3}, "greater than 0"),
        ({"margin": 2, "position": "on_object"}, "margin applies to the corner positions only"),
        ({"opacity": 0}, "greater than 0"),
        ({"opacity": 1.2}, "less than or equal to 1"),
    ],
)
def test_inconsistent_sticker_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StickerAddedSettings.model_validate(settings)
