"""COCO RLE decoding against hand-worked examples and a string written by the COCO API."""

from __future__ import annotations

import numpy as np
import pytest

from harness.authoring.rle import decode_counts, encode_counts, mask_to_rle_counts, rle_to_mask
from harness.errors import HarnessError


def test_single_group_counts() -> None:
    # Values below 16 fit one 5-bit group without the sign bit: chr(48 + value).
    assert decode_counts("053") == [0, 5, 3]
    assert encode_counts([0, 5, 3]) == "053"


def test_multi_group_count() -> None:
    # 40 = 0b01000_01000 -> groups 8 (continued: 8 | 0x20 = 40 -> 'X') then 1 -> '1'.
    assert decode_counts("X1") == [40]
    assert encode_counts([40]) == "X1"


def test_counts_after_the_third_are_differences() -> None:
    # Stored 2, 3, 4, then -1 (a difference to counts[1] = 3): -1 is the group 0x1F -> 'O'.
    assert decode_counts("234O") == [2, 3, 4, 2]
    assert encode_counts([2, 3, 4, 2]) == "234O"


def test_string_written_by_the_coco_api() -> None:
    # A 50x70 mask published with a C-to-Python port of the COCO mask API (a ring-shaped
    # face). Decoding is right only if the runs add up to 50 * 70 exactly.
    text = (
        "0g05b08J4M2N2NA^O1`0OCO=0E090H080IO68DH;>@C>a0_O_O`0j0OWOF<:CM72I24NL43JM92FN;1ENKO72L0LO91J0MO92INO0N"
        "O122OO0M031O000NO31OO11MO40N011MO41MO21L06OL021L06OL021L06OL021L060J040L060J040L060J040L060J040L060J040L"
        "060J040L060KO31L060KO31L06OL021L06OL021L06OL021MO41MO21MO40N100NO310O00M0310O00NO1220NO92IONO91KOMO72M0<1"
        "EO:2GN63KM34OLM73JF<;=1G_O_Ob0=AC`07EH=1IO71H090F0:1DO>1_O1b0>2N2N3L6H]O"
    )
    counts = decode_counts(text)
    assert sum(counts) == 50 * 70
    assert encode_counts(counts) == text
    mask = rle_to_mask({"size": [50, 70], "counts": text})
    assert mask.shape == (50, 70)
    assert mask[0].all()  # the top row is foreground
    assert not mask[3, 30]  # inside the ring


def test_column_major_order() -> None:
    # 2x3 image, counts [1, 2, 3]: one background pixel, then two foreground pixels going
    # *down* the first column and into the second.
    mask = rle_to_mask({"size": [2, 3], "counts": [1, 2, 3]})
    assert mask.tolist() == [[False, True, False], [True, False, False]]


def test_random_round_trips() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        mask = rng.random((int(rng.integers(1, 20)), int(rng.integers(1, 20)))) < rng.random()
        counts = mask_to_rle_counts(mask)
        assert np.array_equal(rle_to_mask({"size": list(mask.shape), "counts": counts}), mask)
        assert np.array_equal(rle_to_mask({"size": list(mask.shape), "counts": encode_counts(counts)}), mask)


@pytest.mark.parametrize("rle", [{"size": [2, 2], "counts": [1, 2]}, {"counts": [4]}, {"size": [1, 2], "counts": "0{"}])
def test_malformed_rle_is_an_error(rle: dict) -> None:
    with pytest.raises(HarnessError):
        rle_to_mask(rle)
