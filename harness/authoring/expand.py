"""One case per image of a glob, with the mask found by a naming pattern.

Suites stay explicit: instead of a glob inside the YAML, the glob is expanded here and
one concrete case is written per image, which the expert can then review one by one.
"""

from __future__ import annotations

import glob as globbing
import re
from dataclasses import dataclass
from pathlib import Path

from harness.authoring.drafts import CaseDraft, RegionDraft, sanitise_id
from harness.authoring.importers import IMAGE_SUFFIXES, ImportResult
from harness.errors import HarnessError

DEFAULT_MASK_PATTERN = "{stem}_mask.png"


@dataclass(frozen=True)
class Pair:
    """An image and the mask the pattern names for it (``None`` when that file is missing)."""

    image: Path
    mask: Path | None


def mask_path(image: Path, pattern: str) -> Path:
    """The mask file ``pattern`` names for ``image``.

    ``pattern`` is relative to the image's folder and may use ``{stem}`` (file name
    without suffix), ``{name}`` (file name) and ``{suffix}`` (e.g. ``.png``):
    ``{stem}_mask.png``, ``../masks/{stem}.png``, ``{stem}.mask{suffix}``.
    """
    try:
        relative = pattern.format(stem=image.stem, name=image.name, suffix=image.suffix)
    except (KeyError, IndexError, ValueError) as exc:
        raise HarnessError(f"mask pattern {pattern!r}: use {{stem}}, {{name}} or {{suffix}} ({exc})") from None
    return image.parent / relative


def _mask_name_regex(pattern: str) -> re.Pattern[str] | None:
    """Matches file names that *are* masks under ``pattern`` (same-folder patterns only)."""
    if "/" in pattern or "\\" in pattern:
        return None
    parts = re.split(r"(\{stem\}|\{name\}|\{suffix\})", pattern)
    regex = "".join({"{stem}": ".+", "{name}": ".+", "{suffix}": r"\.[^.]+"}.get(p, re.escape(p)) for p in parts)
    return re.compile(f"^{regex}$", re.IGNORECASE)


def expand(image_glob: str | Path, mask_pattern: str = DEFAULT_MASK_PATTERN) -> list[Pair]:
    """Images matching ``image_glob`` (a folder means all its images) and their masks.

    Files that are themselves masks under ``mask_pattern`` are not treated as images.
    The result is sorted by path so suites come out in a stable order.
    """
    text = str(image_glob)
    if Path(text).is_dir():
        text = str(Path(text) / "*")
    found = sorted(
        {
            Path(p)
            for p in globbing.glob(text, recursive=True)
            if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES
        }
    )
    masks_of_others = {mask_path(p, mask_pattern).resolve() for p in found}
    name_regex = _mask_name_regex(mask_pattern)
    pairs: list[Pair] = []
    for path in found:
        if path.resolve() in masks_of_others:
            continue
        mask = mask_path(path, mask_pattern)
        if (
            name_regex is not None
            and name_regex.match(path.name)
            and mask.resolve() != path.resolve()
            and not mask.is_file()
        ):
            continue  # a mask whose image is missing, not an image without a mask
        pairs.append(Pair(path.resolve(), mask.resolve() if mask.is_file() else None))
    return pairs


def label_from_stem(stem: str, regex: str) -> str | None:
    """The class named by a file name: group ``label`` of ``regex``, or its first group."""
    match = re.search(regex, stem)
    if match is None:
        return None
    if "label" in match.groupdict():
        return match.group("label")
    return match.group(1) if match.groups() else match.group(0)


def expand_cases(
    image_glob: str | Path,
    mask_pattern: str = DEFAULT_MASK_PATTERN,
    *,
    label: str | None = None,
    label_regex: str | None = None,
    id_pattern: str = "{stem}",
    missing: str = "skip",
) -> ImportResult:
    """Cases for every image of ``image_glob`` that has a mask.

    Parameters
    ----------
    label, label_regex
        The class of every case, or a regex whose group ``label`` (or first group)
        takes the class from the image's file stem (``^(?P<label>.+)_\\d+$``).
    id_pattern
        Case id; ``{stem}`` is replaced by the image's file stem.
    missing
        ``skip`` images without a mask (with a warning), or write them as ``todo``
        cases that ``validate`` reports until they are annotated.
    """
    result = ImportResult()
    pairs = expand(image_glob, mask_pattern)
    if not pairs:
        result.warnings.append(f"no images match {str(image_glob)!r}")
    for pair in pairs:
        case_label = label
        if label_regex:
            case_label = label_from_stem(pair.image.stem, label_regex) or label
            if case_label is None:
                result.warnings.append(f"{pair.image.name}: --label-regex {label_regex!r} does not match; skipped")
                continue
        if pair.mask is None and missing == "skip":
            result.warnings.append(f"{pair.image.name}: no mask {mask_path(pair.image, mask_pattern).name}; skipped")
            continue
        region = RegionDraft("mask", pair.mask) if pair.mask is not None else RegionDraft.todo()
        result.cases.append(
            CaseDraft(
                id=sanitise_id(id_pattern.replace("{stem}", pair.image.stem)),
                image=pair.image,
                label=case_label,
                source_label=case_label,
                regions=[region],
            )
        )
    return result
