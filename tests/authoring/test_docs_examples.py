"""Every full-suite example in docs/writing-test-cases.md validates.

A ```yaml block whose first line is ``# suite`` is a complete suite. The files it names
are generated here (64x64 images, masks with a square object), and the labels are
checked against the repository's model registry, as a reader would run it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness.authoring.validate import validate_suite
from harness.models import load_registry

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "writing-test-cases.md"
SIZE = 64


def _suite_blocks() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [b for b in blocks if b.startswith("# suite\n")]


def _files(node: Any, out: dict[str, int | None], key: str | None = None) -> None:
    """Collect every file the suite names: path -> mask value (None: an image)."""
    if isinstance(node, dict):
        if isinstance(node.get("glob"), str):  # a sweep over files: three that match
            for stem in ("a", "b", "c"):
                out.setdefault(node["glob"].replace("*", stem, 1), None)
        if isinstance(node.get("mask"), str):
            out[node["mask"]] = int(node.get("mask_value") or 255)
        for k, v in node.items():
            if k != "mask":
                _files(v, out, k)
    elif isinstance(node, list):
        for item in node:
            _files(item, out, key)
    elif key == "image" and isinstance(node, str):
        out.setdefault(node, None)


def _materialise(suite_text: str, folder: Path, write_image, write_mask) -> None:
    files: dict[str, int | None] = {}
    _files(yaml.safe_load(suite_text), files)
    for n, (name, value) in enumerate(sorted(files.items())):
        path = folder / name
        if value is None:
            write_image(path, SIZE, SIZE, seed=n)
        else:
            labels = np.zeros((SIZE, SIZE), np.uint8)
            labels[16:48, 16:48] = value
            write_image(path, array=labels)


def test_the_docs_have_suite_examples() -> None:
    assert len(_suite_blocks()) >= 5


@pytest.mark.parametrize("index", range(len(_suite_blocks())))
def test_suite_example_validates(index: int, tmp_path: Path, write_image, write_mask) -> None:
    text = _suite_blocks()[index]
    suite = tmp_path / f"example_{index}.xai.yaml"
    suite.write_text(text, encoding="utf-8")
    _materialise(text, tmp_path, write_image, write_mask)
    cases, errors = validate_suite(suite, load_registry(ROOT / "fixtures" / "models.yaml"))
    assert cases >= 1
    assert errors == [], "\n".join(e.format() for e in errors) + "\n\n" + text
