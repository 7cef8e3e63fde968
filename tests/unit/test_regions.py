"""Rasterising mask / polygon / box annotations."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.errors import HarnessError
from harness.regions import Region, check_usable, rasterize


def test_box_covers_pixel_edges():
    mask = rasterize([Region(box=(1, 2, 4, 5))], (8, 8), Path("."))
    expected = np.zeros((8, 8), bool)
    expected[2:5, 1:4] = True
    assert np.array_equal(mask, expected)


def test_polygon_and_union():
    square = Region(polygon=[(0, 0), (3, 0), (3, 3), (0, 3)])
    box = Region(box=(5, 5, 7, 7))
    mask = rasterize([square, box], (8, 8), Path("."))
    assert mask[:4, :4].all() and mask[5:7, 5:7].all() and mask.sum() == 16 + 4


def test_mask_png_with_and_without_value(tmp_path):
    labels = np.zeros((6, 6), np.uint8)
    labels[0:2, 0:2] = 1
    labels[3:6, 3:6] = 2
    cv2.imwrite(str(tmp_path / "m.png"), labels)
    assert rasterize([Region(mask="m.png")], (6, 6), tmp_path).sum() == 4 + 9
    assert rasterize([Region(mask="m.png", mask_value=2)], (6, 6), tmp_path).sum() == 9


def test_mask_of_wrong_size_names_both_sizes(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(HarnessError, match=r"m\.png is 4x4 .* image is 6x5"):
        rasterize([Region(mask="m.png")], (5, 6), tmp_path)


def test_unusable_masks():
    with pytest.raises(HarnessError, match="empty"):
        check_usable(np.zeros((3, 3), bool))
    with pytest.raises(HarnessError, match="whole image"):
        check_usable(np.ones((3, 3), bool))


def test_palette_mask_is_read_as_indices(tmp_path):
    from PIL import Image

    indices = np.zeros((4, 4), np.uint8)
    indices[1:3, 1:3] = 1
    indices[0, :] = 255  # VOC's void border
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192])
    image.save(tmp_path / "seg.png")
    mask = rasterize([Region(mask="seg.png", mask_value=1)], (4, 4), tmp_path)
    assert mask.sum() == 4 and mask[1:3, 1:3].all()
