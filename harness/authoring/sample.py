"""Choosing which images to test: the most and the least confident ones of a class.

The seed talk tested the 10 images a model was surest about and the 20 it was least
sure about; the first show what the model has learnt to rely on, the second where it
struggles. The model runs on the CPU, in batches, at its own input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.authoring.drafts import CaseDraft, RegionDraft, sanitise_id
from harness.authoring.expand import DEFAULT_MASK_PATTERN, expand
from harness.authoring.importers import ImportResult
from harness.errors import HarnessError
from harness.imageio import read_rgb
from harness.models import LoadedModel, resize_image


@dataclass(frozen=True)
class Scored:
    """One image with the model's probability for the class and its top-1 class."""

    image: Path
    mask: Path | None
    probability: float
    predicted: str
    predicted_probability: float


def score_images(model: LoadedModel, images: Sequence[Path], class_name: str, batch_size: int = 32) -> list[Scored]:
    """Softmax probability of ``class_name`` for every image (in the given order)."""
    if class_name not in model.classes:
        raise HarnessError(
            f"unknown class {class_name!r} for model {model.name!r}; allowed values: {', '.join(model.classes)}"
        )
    target = model.classes.index(class_name)
    size = model.preprocessing  # input size and resize policy, as in a run
    out: list[tuple[float, str, float]] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = model.to_input([resize_image(read_rgb(p), size) for p in chunk])
        with torch.no_grad():
            probs = torch.softmax(model.module(batch).float(), dim=1).cpu().numpy()
        for row in probs:
            top = int(np.argmax(row))
            out.append((float(row[target]), model.classes[top], float(row[top])))
    return [Scored(Path(p), None, *values) for p, values in zip(images, out)]


def choose(scored: Sequence[Scored], most: int, least: int) -> tuple[list[Scored], list[Scored]]:
    """The ``most`` highest and ``least`` lowest probabilities, without overlap.

    Ties are broken by file name, so the choice does not depend on folder order.
    """
    ranked = sorted(scored, key=lambda s: (-s.probability, s.image.name))
    top = ranked[:most]
    rest = ranked[len(top) :]
    bottom = list(reversed(rest[len(rest) - least :])) if least > 0 else []
    return top, bottom


def sample_cases(
    model: LoadedModel,
    class_name: str,
    images_glob: str | Path,
    most: int,
    least: int,
    mask_pattern: str = DEFAULT_MASK_PATTERN,
    annotations: dict[str, list[RegionDraft]] | None = None,
    batch_size: int = 32,
    label: str | None = None,
) -> ImportResult:
    """Cases for the most and least confident images of ``class_name``.

    Labels are never guessed from the class being ranked: an image's label comes from
    ``label`` (the user says what every image shows), an annotation of the class, or a
    folder named after the class. Images with none of these are left out (a warning
    says how many): a mixed folder must not become cases that all claim one class.

    Parameters
    ----------
    images_glob
        A folder or a glob of images; masks named by ``mask_pattern`` are skipped as
        images and attached to their image.
    annotations
        Regions by image file name (from a LabelMe or COCO file); used where no mask
        file exists.

    label
        The expected class of every image (``--label``); ``None``: from annotations or
        the folder name.

    Images with neither a mask nor an annotation get a placeholder object and a
    ``# TODO: annotate the object`` comment; ``validate`` and pytest report them as
    errors until the expert draws the object.
    """
    pairs = expand(images_glob, mask_pattern)
    if not pairs:
        raise HarnessError(f"no images match {str(images_glob)!r}")
    labels = {p.image: label_of(p.image, class_name, label, annotations) for p in pairs}
    unlabelled = [p for p in pairs if labels[p.image] is None]
    pairs = [p for p in pairs if labels[p.image] is not None]
    if not pairs:
        raise HarnessError(
            f"none of the {len(unlabelled)} images has a known label: give --label CLASS (what every image shows), "
            f"--annotations with {class_name} objects, or put them in a folder named {class_name}"
        )
    scored = score_images(model, [p.image for p in pairs], class_name, batch_size)
    masks = {p.image: p.mask for p in pairs}
    top, bottom = choose(scored, most, least)
    result = ImportResult()
    if unlabelled:
        result.warnings.append(
            f"{len(unlabelled)} of {len(unlabelled) + len(pairs)} images left out: no --label, no {class_name} "
            f"annotation and not in a folder named {class_name} (e.g. {unlabelled[0].image.name})"
        )
    if len(top) < most or len(bottom) < least:
        result.warnings.append(f"only {len(scored)} images: took {len(top)} most and {len(bottom)} least confident")
    total = len(scored)
    for group, picked in (("most", top), ("least", bottom)):
        count = most if group == "most" else least
        for rank, item in enumerate(picked, start=1):
            position = rank if group == "most" else total - rank + 1
            mask = masks.get(item.image)
            regions = (
                [RegionDraft("mask", mask)]
                if mask is not None
                else list((annotations or {}).get(item.image.name, [])) or [RegionDraft.todo()]
            )
            comment = (
                f"{group} confident ({rank} of {count}): p({class_name}) = {item.probability:.3f}, "
                f"rank {position} of {total}; predicted {item.predicted} ({item.predicted_probability:.3f})"
            )
            result.cases.append(
                CaseDraft(
                    id=sanitise_id(item.image.stem),
                    image=item.image,
                    label=labels[item.image],
                    source_label=labels[item.image],
                    regions=regions,
                    description=f"{group} confident {class_name} image no. {rank}",
                    comment=comment,
                )
            )
    return result


def label_of(
    image: Path, class_name: str, label: str | None, annotations: dict[str, list[RegionDraft]] | None
) -> str | None:
    """The label of one image: explicit, else from an annotation of ``class_name``, else
    from a folder named ``class_name``; ``None`` when nothing says what it shows."""
    if label is not None:
        return label
    if annotations and annotations.get(image.name):
        return class_name
    if image.parent.name == class_name:
        return class_name
    return None


def annotation_index(result: ImportResult, class_name: str) -> dict[str, list[RegionDraft]]:
    """Regions of ``class_name`` by image file name, from imported (and class-mapped) cases.

    Keyed by name, not path: a COCO file names images relative to a folder the
    annotation file does not record.
    """
    index: dict[str, list[RegionDraft]] = {}
    for case in result.cases:
        if case.label == class_name:
            index.setdefault(Path(case.image).name, []).extend(case.regions)
    return index
