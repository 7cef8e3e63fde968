"""Reading images and masks with errors that name the file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from harness.errors import HarnessError


def _read_unchanged(path: str | Path, what: str = "image") -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{what} file not found: {path}")
    try:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        # OpenCV refuses a header claiming more than CV_IO_MAX_IMAGE_PIXELS (a decompression bomb).
        why = (
            "its header claims more pixels than an image may have"
            if "MAX_IMAGE_PIXELS" in str(exc)
            else str(exc).strip().splitlines()[-1]
        )
        raise HarnessError(f"cannot decode {what}: {path}: {why}") from None
    if data is None:
        raise HarnessError(f"cannot decode {what}: {path} (expected PNG/JPEG/BMP/TIFF)")
    if data.dtype == np.uint16:
        data = (data // 257).astype(np.uint8)
    return data


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); grey and RGBA inputs are converted.

    Raises
    ------
    HarnessError
        If the file is missing or cannot be decoded.
    """
    data = _read_unchanged(path)
    if data.ndim == 2:
        return cv2.cvtColor(data, cv2.COLOR_GRAY2RGB)
    if data.shape[2] == 4:
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def read_rgba(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGBA (H, W, 4); images without alpha get an opaque one."""
    data = _read_unchanged(path)
    if data.ndim == 2:
        return cv2.cvtColor(data, cv2.COLOR_GRAY2RGBA)
    if data.shape[2] == 3:
        return cv2.cvtColor(data, cv2.COLOR_BGR2RGBA)
    return cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA)


def read_label_image(path: str | Path) -> np.ndarray:
    """Read a mask/label PNG as a 2-D integer array (colour masks: max over channels)."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"mask file not found: {path}")
    with Image.open(path) as probe:
        if probe.mode == "P":
            # Palette PNGs (Pascal VOC segmentations) store class/instance indices;
            # OpenCV would expand them to colours, so read the indices themselves.
            return np.asarray(probe)
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise HarnessError(f"cannot decode mask: {path} (expected a PNG)")
    if data.ndim == 3:
        # Colour masks: any non-black colour is foreground; alpha is ignored.
        data = data[..., :3].max(axis=2)
    return data


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 RGB (or grey) array as PNG, creating parent folders.

    The file is written beside its target and renamed over it: a reader never sees
    half a PNG, and a hard link to the previous file (a report's copy of it) keeps
    the previous picture instead of changing under the report.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", out)
    if not ok:
        raise HarnessError(f"cannot encode image for {path}")
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        partial.write_bytes(data.tobytes())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise HarnessError(f"cannot write image: {path}: {exc}") from None
