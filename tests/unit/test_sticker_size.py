"""What a sticker's ``size`` is measured against, pinned in pixels (docs/writing-test-cases.md).

``relative_to: image``: a fraction of the image's smaller side; ``relative_to: object``:
a fraction of the larger side of the object's bounding box.
"""

import numpy as np
import pytest

from harness.perturb import StickerAddedSettings, apply_variant


def no_file(path: str) -> np.ndarray:
    raise AssertionError(f"no file should be read ({path})")


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 40 x 100 image (smaller side 40, larger 100); the object's box is 30 tall and 12 wide."""
    image = np.full((40, 100, 3), 200, np.uint8)
    mask = np.zeros((40, 100), bool)
    mask[5:35, 10:22] = True
    return image, mask


def sticker_box(settings: dict, scene: tuple[np.ndarray, np.ndarray]) -> tuple[int, int, int]:
    """(height, width, pixel count) of the pasted sticker."""
    image, mask = scene
    out = apply_variant("sticker_added", StickerAddedSettings.model_validate(settings), image, mask, no_file, no_file)
    rows, cols = np.nonzero(out.sticker_mask)
    assert np.all(out.image[out.sticker_mask] == (0, 0, 0))
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1), int(out.sticker_mask.sum())


@pytest.mark.parametrize("size, side", [(0.25, 10), (0.5, 20), (1.0, 40), (0.01, 1)])
def test_relative_to_image_is_a_fraction_of_the_smaller_side(scene, size, side):
    # 0.25 of the larger side (100) would be 25 pixels; of the smaller (40) it is 10.
    settings = {"relative_to": "image", "size": size, "position": "top_left"}
    assert sticker_box(settings, scene) == (side, side, side * side)


@pytest.mark.parametrize("size, side", [(0.5, 15), (0.2, 6), (1.0, 30)])
def test_relative_to_object_is_a_fraction_of_the_larger_side_of_its_box(scene, size, side):
    # The box is 30 x 12: 0.5 of its larger side is 15 pixels (of the smaller, 6).
    settings = {"relative_to": "object", "size": size, "position": "bottom_right"}
    assert sticker_box(settings, scene) == (side, side, side * side)
