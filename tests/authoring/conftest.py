"""Fixtures of the authoring tests: tiny registries, image writers, a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.cli import main

# Two registry models built from the probe network: no weights file is needed.
# 'pets' only lends its class names to the import tests; 'probe' is run by `sample`.
REGISTRY = """\
models:
  pets:
    architecture: harness.probes:region_probe
    args: {size: [32, 32], region: [8, 8, 24, 24]}
    classes: [canine, feline]
    preprocessing: {size: [32, 32]}
  probe:
    architecture: harness.probes:region_probe
    args: {size: [32, 32], region: [8, 8, 24, 24], threshold: 0.5, gain: 10.0}
    classes: [bright, other]
    preprocessing: {size: [32, 32]}
"""


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A models.yaml with the probe models 'pets' (canine, feline) and 'probe' (bright, other)."""
    path = tmp_path / "models.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    return path


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Write a seeded random RGB image (or a given array) as PNG/JPEG; returns the path."""

    def write(path: Path, height: int = 30, width: int = 40, seed: int = 0, array: np.ndarray | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if array is None:
            array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        out = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(path), out)
        return path

    return write


@pytest.fixture
def write_mask() -> Callable[..., Path]:
    """Write a boolean mask as a 0/255 PNG; returns the path."""

    def write(path: Path, mask: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255)
        return path

    return write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``main(argv)``; returns (exit status, stdout, stderr)."""

    def run(*argv: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
