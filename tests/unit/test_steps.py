"""Variants made of steps: each step's pixels, and the regions kept for the metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.perturb import (
    BackgroundRemovedSettings,
    InstanceRemovedSettings,
    StickerAddedSettings,
    apply_variant,
)
from harness.steps import StepsSettings, apply_steps


def no_file(path: str) -> np.ndarray:
    raise AssertionError(f"no file should be read ({path})")


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 30 x 40 image: grey 100 background, a 10 x 10 object of colour (200, 50, 50) at rows 10-19, cols 15-24."""
    image = np.full((30, 40, 3), 100, np.uint8)
    image[10:20, 15:25] = (200, 50, 50)
    mask = np.zeros((30, 40), bool)
    mask[10:20, 15:25] = True
    return image, mask


def steps(*pairs: tuple[str, object]) -> StepsSettings:
    return StepsSettings(steps=tuple(pairs))


def run(settings: StepsSettings, scene, load_rgba=no_file, load_rgb=no_file):
    image, mask = scene
    return apply_variant("mine", settings, image, mask, load_rgb, load_rgba)


def test_remove_object_step_fills_the_object_with_grey(scene):
    image, mask = scene
    out = run(steps(("remove_object", InstanceRemovedSettings(fill="grey", grey_value=7, dilate=0))), scene)
    assert np.all(out.image[mask] == 7) and np.array_equal(out.image[~mask], image[~mask])
    assert np.array_equal(out.removed_mask, mask) and out.sticker_mask is None
    assert np.array_equal(out.object_mask, mask)


def test_replace_background_step_keeps_the_object_exactly(scene):
    image, mask = scene
    out = run(steps(("replace_background", BackgroundRemovedSettings(fill="black"))), scene)
    assert np.all(out.image[~mask] == 0) and np.array_equal(out.image[mask], image[mask])
    assert out.removed_mask is None and out.sticker_mask is None


def test_replace_background_with_an_image_resizes_it(scene):
    background = np.zeros((6, 8, 3), np.uint8)
    background[...] = (1, 2, 3)
    settings = BackgroundRemovedSettings(fill="image", image="bg.png")
    out = run(steps(("replace_background", settings)), scene, load_rgb=lambda path: background)
    assert np.all(out.image[~scene[1]] == (1, 2, 3))


def test_add_sticker_step_is_the_sticker_variant(scene):
    image, mask = scene
    settings = StickerAddedSettings(size=0.1, relative_to="image", position="top_right", margin=2, color=(9, 9, 9))
    alone = apply_variant("sticker_added", settings, image, mask, no_file, no_file)
    out = run(steps(("add_sticker", settings)), scene)
    assert np.array_equal(out.image, alone.image) and np.array_equal(out.sticker_mask, alone.sticker_mask)
    # 0.1 of the larger side (40) is 4 pixels, 2 pixels from the top and right edges.
    rows, cols = np.nonzero(out.sticker_mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 5, 34, 37)


def test_object_removed_and_sticker_kept_keeps_both_regions(scene):
    image, mask = scene
    out = run(
        steps(
            ("remove_object", InstanceRemovedSettings(fill="grey", grey_value=7, dilate=1)),
            ("add_sticker", StickerAddedSettings(size=0.1, relative_to="image", position="bottom_left")),
        ),
        scene,
    )
    assert out.removed_mask is not None and out.removed_mask.sum() > mask.sum()  # dilated by one pixel
    assert out.sticker_mask is not None and out.sticker_mask[26:30, 0:4].all() and out.sticker_mask.sum() == 16
    assert np.all(out.image[out.sticker_mask] == 0)
    assert np.all(out.image[out.removed_mask] == 7)


def test_a_later_step_clips_the_regions_it_paints_over(scene):
    image, mask = scene
    sticker = StickerAddedSettings(size=0.1, relative_to="image", position="top_left")
    # The background replaced after the sticker was pasted off the object: no sticker is left.
    gone = run(steps(("add_sticker", sticker), ("replace_background", BackgroundRemovedSettings(fill="grey"))), scene)
    assert gone.sticker_mask is None and np.all(gone.image[~mask] == 128)
    # A sticker on the object painted out with it: no sticker either.
    on_object = StickerAddedSettings(size=0.5, position="object_center")
    removed = run(steps(("add_sticker", on_object), ("remove_object", InstanceRemovedSettings(fill="mean"))), scene)
    assert removed.sticker_mask is None and removed.removed_mask is not None


def test_steps_apply_in_order(scene):
    image, mask = scene
    grey = ("remove_object", InstanceRemovedSettings(fill="grey", grey_value=7, dilate=0))
    black = ("replace_background", BackgroundRemovedSettings(fill="black"))
    a = run(steps(grey, black), scene)
    b = run(steps(black, grey), scene)
    # Either order gives the same picture here (disjoint regions), but the mean fill reads
    # what the earlier step left: after a black background the object's fill is black.
    assert np.array_equal(a.image, b.image)
    mean = ("remove_object", InstanceRemovedSettings(fill="mean", dilate=0))
    after_black = run(steps(black, mean), scene)
    assert np.all(after_black.image[mask] == 0)
    before_black = run(steps(mean, black), scene)
    assert np.all(before_black.image[mask] == 100)


def test_no_object_removes_nothing_and_replaces_everything(scene):
    image, _ = scene
    empty = np.zeros(image.shape[:2], bool)
    out = apply_variant("mine", steps(("remove_object", InstanceRemovedSettings())), image, empty, no_file, no_file)
    assert np.array_equal(out.image, image) and out.removed_mask is None
    whole = apply_variant(
        "mine", steps(("replace_background", BackgroundRemovedSettings(fill="black"))), image, empty, no_file, no_file
    )
    assert not whole.image.any()


def test_apply_steps_is_what_apply_variant_runs(scene):
    image, mask = scene
    settings = steps(("remove_object", InstanceRemovedSettings(fill="noise", seed=3)))
    direct = apply_steps(settings, image, mask, no_file, no_file)
    assert np.array_equal(direct.image, run(settings, scene).image)


STEP_SETTINGS = {
    "remove_object": st.builds(
        InstanceRemovedSettings,
        fill=st.sampled_from(["inpaint_telea", "blur", "mean", "grey", "noise"]),
        dilate=st.integers(0, 3),
        seed=st.integers(0, 9),
    ),
    "replace_background": st.builds(
        BackgroundRemovedSettings, fill=st.sampled_from(["grey", "black", "mean", "blur", "noise"])
    ),
    "add_sticker": st.builds(
        StickerAddedSettings,
        size=st.floats(0.05, 1.0),
        relative_to=st.sampled_from(["object", "image"]),
        position=st.sampled_from(["on_object", "object_center", "top_left", "bottom_right"]),
        opacity=st.floats(0.1, 1.0),
    ),
}
step_lists = st.lists(
    st.sampled_from(sorted(STEP_SETTINGS)).flatmap(lambda s: st.tuples(st.just(s), STEP_SETTINGS[s])),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(step_lists)
def test_any_steps_change_only_the_regions_they_report(pairs):
    """Whatever the steps, pixels outside the reported regions (and outside the object
    when the background was replaced) are the input's, and the regions are boolean masks."""
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[10:20, 15:25] = True
    out = apply_steps(steps(*pairs), image, mask, no_file, no_file)
    assert out.image.dtype == np.uint8 and out.image.shape == image.shape
    changed = np.zeros_like(mask)
    for region in (out.removed_mask, out.sticker_mask):
        if region is not None:
            assert region.dtype == bool and region.shape == mask.shape and region.any()
            changed |= region
    if any(step == "replace_background" for step, _ in pairs):
        changed |= ~mask
    # A sticker painted over by a later step leaves no region but may leave changed pixels
    # only inside what that step painted (the removed region or the background).
    assert np.array_equal(out.image[~changed], image[~changed])
