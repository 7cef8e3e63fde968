"""COCO run-length encoding (RLE), decoded without pycocotools.

A COCO RLE is ``{"size": [height, width], "counts": ...}``. The counts alternate
background and foreground run lengths, starting with background, over the pixels in
column-major order (down the first column, then the next). ``counts`` is either a
list of integers ("uncompressed", used for crowd annotations) or a string
("compressed"): each count is written in 5-bit groups, least significant first, one
character per group (``chr(48 + group)``), with bit 0x20 set on every group but the
last and bit 0x10 of the last group carrying the sign. From the fourth count on, the
string stores the difference to the count two places earlier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.errors import HarnessError


def decode_counts(text: str) -> list[int]:
    """Run lengths of a compressed COCO counts string."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise HarnessError("truncated RLE counts string")
            group = ord(text[pos]) - 48
            if not 0 <= group < 64:
                raise HarnessError(f"invalid character {text[pos]!r} in an RLE counts string")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value -= 1 << shift  # sign-extend the last group
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_counts(counts: Sequence[int]) -> str:
    """Compressed counts string for run lengths (the inverse of :func:`decode_counts`)."""
    chars: list[str] = []
    for i, count in enumerate(counts):
        value = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            # Stop once the rest is pure sign: zeros after a positive group, ones after a negative.
            more = not ((value == 0 and not group & 0x10) or (value == -1 and group & 0x10))
            chars.append(chr(48 + (group | (0x20 if more else 0))))
    return "".join(chars)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Boolean (height, width) mask of a COCO RLE (compressed or uncompressed).

    Raises
    ------
    HarnessError
        The RLE is malformed or its runs do not add up to height × width.
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise HarnessError("an RLE needs 'size': [height, width] and 'counts'") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = decode_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(r < 0 for r in runs):
        raise HarnessError("negative run length in an RLE")
    total = height * width
    if sum(runs) != total:
        raise HarnessError(f"RLE runs add up to {sum(runs)} pixels, but size {height}x{width} has {total}")
    flat = np.zeros(total, dtype=bool)
    values = np.arange(len(runs)) % 2 == 1
    flat[:] = np.repeat(values, runs)
    return flat.reshape((width, height)).T  # column-major: the flat order runs down columns


def mask_to_rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed run lengths of a boolean mask (column-major, background first)."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return runs
