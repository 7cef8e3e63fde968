"""Variants made of steps: remove the object, replace the background, add a sticker, in order.

A step takes the settings of the built-in variant it is named after (``remove_object``:
``instance_removed``, ``replace_background``: ``background_removed``, ``add_sticker``:
``sticker_added``). The regions each step creates are kept for the metrics, clipped by
whatever a later step paints over: a sticker painted out by ``remove_object`` is no
sticker any more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ConfigDict

from harness.perturb import VARIANTS, VariantImage, VariantSettings, apply_variant

# step name -> the built-in variant whose settings and function it uses
STEP_KINDS: dict[str, str] = {
    "remove_object": "instance_removed",
    "replace_background": "background_removed",
    "add_sticker": "sticker_added",
}

# The verdict rules a variant made of steps may name with `judge`.
JUDGES: tuple[str, ...] = tuple(VARIANTS)


class StepsSettings(VariantSettings):
    """A variant's steps, each ``(step name, validated settings of its built-in variant)``."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    steps: tuple[tuple[str, Any], ...]


def step_settings(step: str) -> type[VariantSettings]:
    """The settings model a step accepts."""
    return VARIANTS[STEP_KINDS[step]].settings


def apply_steps(
    settings: StepsSettings,
    image: np.ndarray,
    object_mask: np.ndarray,
    load_rgb: Callable[[str], np.ndarray],
    load_rgba: Callable[[str], np.ndarray],
) -> VariantImage:
    """Apply the steps in order; union the regions they create, minus what later steps cover."""
    current = image
    removed: np.ndarray | None = None
    sticker: np.ndarray | None = None
    for step, step_set in settings.steps:
        out = apply_variant(STEP_KINDS[step], step_set, current, object_mask, load_rgb, load_rgba)
        if step == "remove_object" and out.removed_mask is not None:
            removed = out.removed_mask if removed is None else removed | out.removed_mask
            if sticker is not None:
                sticker = sticker & ~out.removed_mask
        elif step == "replace_background":
            # Everything outside the object is new: a sticker pasted there earlier is gone.
            if sticker is not None:
                sticker = sticker & object_mask
        elif step == "add_sticker" and out.sticker_mask is not None:
            sticker = out.sticker_mask if sticker is None else sticker | out.sticker_mask
        current = out.image
    if sticker is not None and not sticker.any():
        sticker = None
    return VariantImage(image=current, object_mask=object_mask.copy(), removed_mask=removed, sticker_mask=sticker)
