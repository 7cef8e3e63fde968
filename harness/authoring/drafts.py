"""Cases before they are written: what every importer produces and the writer consumes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

RegionKind = Literal["mask", "mask_array", "polygon", "box", "todo"]

# The placeholder `sample` writes where no annotation exists. It is not a valid region
# (unknown key), so neither pytest nor `validate` lets such a case run unnoticed.
TODO_KEY = "todo"
TODO_TEXT = "annotate the object"


@dataclass
class RegionDraft:
    """One region of a case's object.

    ``kind`` decides what ``value`` holds: ``mask`` a :class:`~pathlib.Path` to an
    existing PNG, ``mask_array`` a boolean array the writer saves under ``masks/``,
    ``polygon`` a list of (x, y), ``box`` (x0, y0, x1, y1), ``todo`` nothing.
    """

    kind: RegionKind
    value: Any = None
    mask_value: int | None = None

    @classmethod
    def todo(cls) -> RegionDraft:
        return cls("todo")


@dataclass
class CaseDraft:
    """A case with absolute paths; ids are made unique when the suite is written.

    Parameters
    ----------
    id
        Proposed id (sanitised and de-duplicated on writing).
    image
        Absolute image path.
    label
        Expected class (already mapped onto the model's class names).
    regions
        The object's regions; a single ``todo`` region marks a case still to annotate.
    comment
        Written as ``# comment`` lines above the case (provenance, confidences, TODOs).
    """

    id: str
    image: Path
    label: str | None
    regions: list[RegionDraft]
    description: str = ""
    tags: list[str] = field(default_factory=list)
    comment: str | None = None
    skip: bool | str = False
    xfail: bool | str = False
    source_label: str | None = None

    @property
    def needs_annotation(self) -> bool:
        return any(r.kind == "todo" for r in self.regions)


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def sanitise_id(text: str) -> str:
    """A case id usable in pytest node ids and ``-k`` expressions.

    Everything but letters, digits, ``_`` and ``-`` becomes ``_``.

    >>> sanitise_id("2008_000123 (copy).jpg #1")
    '2008_000123_copy_jpg_1'
    """
    cleaned = _UNSAFE.sub("_", text).strip("_-")
    return cleaned or "case"


def unique_ids(proposed: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """Sanitise ids and resolve clashes (with each other and with ``taken``) by ``_2``, ``_3``..."""
    used = set(taken)
    out: list[str] = []
    for raw in proposed:
        base = sanitise_id(raw)
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        out.append(candidate)
    return out


def instance_id(stem: str, index: int) -> str:
    """Id of the ``index``-th annotated instance of the image ``stem``."""
    return sanitise_id(f"{stem}_{index}")


def relative_to_suite(path: Path, suite_dir: Path) -> str:
    """POSIX path of ``path`` as written in a suite that lives in ``suite_dir``."""
    return Path(os.path.relpath(Path(path).resolve(), Path(suite_dir).resolve())).as_posix()


def mask_from_array(mask: np.ndarray) -> RegionDraft:
    """Region that the writer saves as a 0/255 PNG beside the suite."""
    return RegionDraft("mask_array", np.asarray(mask, dtype=bool))
