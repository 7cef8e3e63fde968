"""Pixel checks of the pictures the report shows."""

import numpy as np
import pytest

from harness import render

IMAGE = np.full((8, 8, 3), 100, dtype=np.uint8)
MASK = np.zeros((8, 8), dtype=bool)
MASK[2:6, 2:6] = True


def test_signed_heatmap_colours():
    relevance = np.array([[2.0, 0.0, -2.0, 1.0]])
    out = render.signed_heatmap(relevance)
    assert out[0, 0].tolist() == [255, 0, 0]  # strongest positive: red
    assert out[0, 1].tolist() == [255, 255, 255]  # zero: white
    assert out[0, 2].tolist() == [0, 0, 255]  # strongest negative: blue
    assert out[0, 3].tolist() == [255, 128, 128]  # half: light red


def test_signed_heatmap_of_an_all_zero_map_is_white():
    assert (render.signed_heatmap(np.zeros((3, 3))) == 255).all()


def test_annotated_input_is_upscaled_with_the_object_outlined():
    out = render.annotate(IMAGE, MASK)
    scale = render.display_scale(IMAGE.shape)
    assert scale * 8 >= render.DISPLAY_MIN_SIDE
    assert out.shape == (8 * scale, 8 * scale, 3)
    # The outline runs along the region's border, in the object colour; the centre
    # of the region and the far corner keep the input's pixels.
    assert tuple(out[2 * scale, 4 * scale]) == render.OBJECT_COLOUR
    assert out[4 * scale, 4 * scale].tolist() == [100, 100, 100]
    assert out[0, 0].tolist() == [100, 100, 100]


def test_heatmap_picture_outlines_the_sticker():
    sticker = np.zeros_like(MASK)
    sticker[0:2, 0:2] = True
    out = render.heatmap_image(np.zeros((8, 8)), None, sticker)
    colours = {tuple(px) for px in out.reshape(-1, 3)}
    assert colours == {(255, 255, 255), render.STICKER_COLOUR}


def test_overlay_keeps_the_input_resolution_and_shows_strong_relevance_opaque():
    relevance = np.zeros((8, 8))
    relevance[1, 1] = 4.0
    relevance[6, 6] = -4.0
    out = render.overlay(IMAGE, relevance)
    assert out.shape == (8, 8, 3)
    assert out[1, 1].tolist() == [255, 0, 0]
    assert out[6, 6].tolist() == [0, 0, 255]
    # No relevance: the dimmed grey input, 0.35 * 100 + 0.65 * 127.5.
    assert out[4, 4].tolist() == [pytest.approx(118, abs=1)] * 3
