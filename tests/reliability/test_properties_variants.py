"""Property tests of variant settings: any settings mapping is refused by the schema,
or the variant renders a uint8 image of the input's size (with boolean regions), or it
fails with a :class:`HarnessError` that says why; no other outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from harness.errors import HarnessError
from harness.imageio import read_rgb, read_rgba
from harness.perturb import VARIANTS, apply_variant

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-300, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2, 2),
    st.text(max_size=6),
    st.lists(st.integers(-400, 400), max_size=4),
    st.lists(st.floats(allow_nan=True), max_size=3),
)

# Values each setting is likely to meet in a real suite, next to anything at all.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "fill": st.sampled_from(
        ["inpaint_telea", "inpaint_ns", "blur", "mean", "grey", "noise", "black", "image", "smudge"]
    ),
    "dilate": st.integers(-2, 70),
    "inpaint_radius": st.integers(0, 40),
    "grey_value": st.integers(-5, 260),
    "seed": st.integers(-3, 2**64),
    "blur_sigma": st.one_of(st.floats(-1, 120), st.sampled_from([float("nan"), float("inf")])),
    "image": st.sampled_from(["bg.png", "patch.png", "missing.png", "", "junk.png"]),
    "shape": st.sampled_from(["square", "circle", "star"]),
    "color": st.lists(st.integers(-10, 300), min_size=2, max_size=4),
    "size": st.one_of(st.floats(-0.5, 1.5), st.sampled_from([float("nan"), float("inf"), 1e-300, "native", "big"])),
    "margin": st.integers(-2, 40),
    "opacity": st.one_of(st.floats(-0.2, 1.3), st.sampled_from([float("nan"), 1e-300])),
    "relative_to": st.sampled_from(["object", "image", "moon"]),
    "position": st.one_of(
        st.sampled_from(["on_object", "object_center", "off_object", "top_left", "bottom_right", "middle"]),
        st.lists(st.integers(-50, 80), min_size=1, max_size=3),
        st.lists(st.integers(-(2**40), 2**40), min_size=2, max_size=2),
    ),
}


@st.composite
def variant_settings(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(VARIANTS)))
    fields = list(VARIANTS[name].settings.model_fields)
    if draw(st.integers(0, 3)) == 0:
        # Anything at all, unknown keys included.
        keys = draw(st.lists(st.sampled_from([*fields, "bogus"]), unique=True, max_size=len(fields) + 1))
        return name, {key: draw(anything) for key in keys}
    # One to three settings with values a suite might hold: rendering is reached as often as refusal.
    keys = draw(st.lists(st.sampled_from(fields), unique=True, min_size=1, max_size=3)) if fields else []
    return name, {key: draw(PLAUSIBLE.get(key, anything)) for key in keys}


def _scene(tmp: Path, seed: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    mask = np.zeros((24, 32), bool)
    if shape == "small":
        mask[10:14, 12:16] = True
    elif shape == "large":
        mask[1:23, 1:31] = True
    else:
        mask[0, 0] = True
    return image, mask


@SETTINGS
@given(variant_settings(), st.integers(0, 1000), st.sampled_from(["small", "large", "pixel"]))
def test_any_settings_are_refused_or_render_a_valid_image(
    tmp_path: Path, named: tuple[str, dict[str, Any]], seed: int, shape: str
) -> None:
    cv2.imwrite(str(tmp_path / "bg.png"), np.full((10, 12, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "patch.png"), np.full((6, 6, 4), 200, np.uint8))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    name, raw = named
    kind = VARIANTS[name]
    try:
        validated = kind.settings.model_validate(raw)
    except ValidationError as exc:
        # Every refusal names a setting (or the settings as a whole) and says what is expected.
        assert all(err["msg"] for err in exc.errors())
        event("refused")
        return
    # What the schema accepts lies within the documented ranges.
    for key in ("seed",):
        if hasattr(validated, key):
            assert getattr(validated, key) >= 0
    if hasattr(validated, "color"):
        assert all(0 <= c <= 255 for c in validated.color)
    # No boolean was taken for a number (`yes` is not 1).
    for key, value in raw.items():
        numeric = ("seed", "dilate", "inpaint_radius", "grey_value", "size", "blur_sigma", "color", "position")
        if key in (*numeric, "margin", "opacity"):
            assert not isinstance(value, bool) and not (
                isinstance(value, list) and any(isinstance(v, bool) for v in value)
            ), (key, value)
    image, mask = _scene(tmp_path, seed, shape)
    try:
        out = apply_variant(
            name, validated, image, mask, lambda p: read_rgb(tmp_path / p), lambda p: read_rgba(tmp_path / p)
        )
    except HarnessError as exc:
        assert str(exc)
        event("harness error")
        return
    event(f"rendered {name}")
    assert out.image.dtype == np.uint8 and out.image.shape == image.shape
    assert out.object_mask.dtype == bool and np.array_equal(out.object_mask, mask)
    for region in (out.removed_mask, out.sticker_mask):
        if region is not None:
            assert region.dtype == bool and region.shape == mask.shape
    if name == "background_removed":
        assert np.array_equal(out.image[mask], image[mask])  # the object stays identical
    if name == "instance_removed":
        assert out.removed_mask is not None
        assert np.array_equal(out.image[~out.removed_mask], image[~out.removed_mask])  # only the object changes
    if name == "sticker_added":
        assert out.sticker_mask is not None
        assert np.array_equal(out.image[~out.sticker_mask], image[~out.sticker_mask])
