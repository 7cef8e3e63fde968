"""Property tests of regions: any polygon, box or mask either is refused with a clear
error or rasterises to a boolean mask of the image's size; nothing else happens."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from harness.errors import HarnessError
from harness.regions import MAX_COORDINATE, Region, check_usable, rasterize, read_mask

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SHAPE = (24, 32)

coordinates = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-40, max_value=70),  # mostly near the image, where pixels are drawn
    st.integers(min_value=-(2**40), max_value=2**40),
)
points = st.lists(st.tuples(coordinates, coordinates), min_size=0, max_size=8)


def _finite_in_range(values: list[float]) -> bool:
    return all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in values)


@SETTINGS
@given(points)
def test_any_polygon_is_refused_or_rasterised(polygon: list[tuple[float, float]]) -> None:
    flat = [v for point in polygon for v in point]
    try:
        region = Region.model_validate({"polygon": [list(p) for p in polygon]})
    except ValidationError:
        assert len(polygon) < 3 or not _finite_in_range(flat)
        return
    assert len(polygon) >= 3 and _finite_in_range(flat)
    mask = rasterize([region], SHAPE, Path("."))
    assert mask.dtype == bool and mask.shape == SHAPE
    # A polygon inside the image never spills: every drawn pixel lies within its bounding box.
    if mask.any():
        rows, cols = np.nonzero(mask)
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        assert cols.min() >= math.floor(min(xs)) - 1 and cols.max() <= math.ceil(max(xs)) + 1
        assert rows.min() >= math.floor(min(ys)) - 1 and rows.max() <= math.ceil(max(ys)) + 1


@SETTINGS
@given(st.tuples(coordinates, coordinates, coordinates, coordinates))
def test_any_box_is_refused_or_covers_exactly_its_pixels(box: tuple[float, float, float, float]) -> None:
    try:
        region = Region.model_validate({"box": list(box)})
    except ValidationError:
        x0, y0, x1, y1 = box
        assert not _finite_in_range(list(box)) or not (x1 > x0 and y1 > y0)
        return
    mask = rasterize([region], SHAPE, Path("."))
    x0, y0, x1, y1 = box
    expected = np.zeros(SHAPE, bool)
    c0, r0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
    c1, r1 = min(math.ceil(x1), SHAPE[1]), min(math.ceil(y1), SHAPE[0])
    if c1 > c0 and r1 > r0:
        expected[r0:r1, c0:c1] = True
    assert np.array_equal(mask, expected)
    # An empty or full region is an error of the case, never a metric.
    if not mask.any() or mask.all():
        with pytest.raises(HarnessError):
            check_usable(mask)


@SETTINGS
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    channels=st.sampled_from([0, 3, 4]),
    fill=st.sampled_from(["zeros", "full", "random", "max"]),
    seed=st.integers(0, 2**16),
    mask_value=st.one_of(st.none(), st.integers(0, 70000)),
)
def test_any_mask_file_is_refused_or_read_at_the_image_size(
    tmp_path: Path, height: int, width: int, dtype: type, channels: int, fill: str, seed: int, mask_value: int | None
) -> None:
    shape = (height, width) if channels == 0 else (height, width, channels)
    info = np.iinfo(dtype)
    data = {
        "zeros": np.zeros(shape, dtype),
        "full": np.full(shape, info.max, dtype),
        "max": np.full(shape, 1, dtype),
        "random": np.random.default_rng(seed).integers(0, info.max, size=shape, dtype=dtype),
    }[fill]
    path = tmp_path / "mask.png"
    assert cv2.imwrite(str(path), data)
    try:
        region = Region.model_validate({"mask": "mask.png", "mask_value": mask_value})
    except ValidationError:
        assert mask_value is not None and mask_value > 65535
        return
    image_shape = (20, 20)
    try:
        mask = rasterize([region], image_shape, tmp_path)
    except HarnessError as exc:
        assert (height, width) != image_shape and "must have the image's size" in str(exc)
        return
    assert (height, width) == image_shape and mask.dtype == bool and mask.shape == image_shape
    labels = read_mask(path, image_shape)
    expected = labels == mask_value if mask_value is not None else labels > 0
    assert np.array_equal(mask, expected)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_as_a_mask_are_refused_with_a_harness_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    try:
        labels = read_mask(path, (8, 8))
    except HarnessError as exc:
        assert str(path) in str(exc)
    else:
        assert labels.shape == (8, 8)
