"""Annotation importers: each reads one export format into :class:`CaseDraft` objects.

Importers never write files and never look at the model: class mapping, id
de-duplication and mask PNGs happen when the suite is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.authoring.drafts import CaseDraft

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ImportResult:
    """Cases read from annotation files, and what was skipped (one warning per problem)."""

    cases: list[CaseDraft] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: ImportResult) -> None:
        self.cases += other.cases
        self.warnings += other.warnings


def files_under(paths: Iterable[str | Path], suffixes: Sequence[str]) -> list[Path]:
    """The given files, plus files with one of ``suffixes`` found (recursively) in given folders."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        else:
            out.append(path)
    return out


def clip_points(
    points: Sequence[tuple[float, float]], width: int, height: int, tolerance: float = 1.0
) -> tuple[list[tuple[float, float]], bool]:
    """Clip polygon points to the image; report whether any lay more than ``tolerance`` outside.

    Annotation tools routinely put points a fraction of a pixel past the border; those
    are clipped silently, anything further is worth a warning.
    """
    clipped: list[tuple[float, float]] = []
    far = False
    for x, y in points:
        cx, cy = min(max(float(x), 0.0), float(width)), min(max(float(y), 0.0), float(height))
        far |= abs(cx - x) > tolerance or abs(cy - y) > tolerance
        clipped.append((cx, cy))
    return clipped, far


def find_image(folder: Path, stem: str) -> Path | None:
    """An image called ``stem`` with any common suffix in ``folder``."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None
