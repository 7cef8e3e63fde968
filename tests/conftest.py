"""A tiny world for pytester runs: a bright square on a lighter background, and probe
"classifiers" whose behaviour is known by construction (harness.probes). Shared by the
integration and regression tests (``world``); ``looks-at-object`` passes every variant,
``looks-at-background`` decides from the top-left corner."""

import csv
import importlib.util
import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

if importlib.util.find_spec("pyarrow") is not None:
    import pandas as pd

    # pytester's in-process runs drop modules first imported inside them; pandas'
    # Arrow extension types cannot be registered twice, so load them out here once.
    pd.DataFrame({"warm": [1]}).to_parquet(io.BytesIO())
    import pyarrow.parquet  # noqa: F401

# Same reason for torch extensions: import everything a run needs before pytester's
# snapshot, so inner runs reuse these modules instead of registering operators again.
import zennit.attribution  # noqa: E402,F401
import zennit.composites  # noqa: E402,F401

import harness.attribution  # noqa: E402,F401
import harness.attribution.graph  # noqa: E402,F401
import harness.baseline  # noqa: E402,F401
import harness.collect  # noqa: E402,F401
import harness.results  # noqa: E402,F401

MODELS_YAML = """\
models:
  looks-at-object:
    architecture: harness.probes:region_probe
    args: {size: [32, 32], region: [10, 10, 22, 22], threshold: 0.9}
    classes: [thing, other]
    preprocessing: {size: [32, 32], mean: [0, 0, 0], std: [1, 1, 1]}
  looks-at-background:
    architecture: harness.probes:region_probe
    args: {size: [32, 32], region: [0, 0, 8, 8], threshold: 0.7}
    classes: [thing, other]
    preprocessing: {size: [32, 32], mean: [0, 0, 0], std: [1, 1, 1]}
  two-corners:
    architecture: harness.probes:region_probe
    args: {size: [32, 32], region: [0, 0, 8, 8], threshold: 0.7, other_region: [24, 24, 32, 32], other_threshold: 0.75}
    classes: [thing, other]
    preprocessing: {size: [32, 32], mean: [0, 0, 0], std: [1, 1, 1]}
  wrapped-object:
    architecture: harness.probes:wrapped_region_probe
    args: {size: [32, 32], region: [10, 10, 22, 22], threshold: 0.9}
    classes: [thing, other]
    preprocessing: {size: [32, 32], mean: [0, 0, 0], std: [1, 1, 1]}
"""


def make_world(root: Path) -> None:
    """Write the scene image, its mask and the model registry under ``root``."""
    image = np.full((32, 32, 3), 204, np.uint8)  # background brightness 0.8
    image[10:22, 10:22] = 255  # the object, brightness 1.0
    cv2.imwrite(str(root / "scene.png"), image)
    mask = np.zeros((32, 32), np.uint8)
    mask[10:22, 10:22] = 255
    cv2.imwrite(str(root / "scene_mask.png"), mask)
    cv2.imwrite(str(root / "small_mask.png"), mask[:16, :16])
    (root / "models.yaml").write_text(MODELS_YAML)
    (root / "pytest.ini").write_text("[pytest]\nxai_models = models.yaml\n")


@pytest.fixture
def world(pytester: pytest.Pytester) -> pytest.Pytester:
    make_world(pytester.path)
    return pytester


def _read_results(root: Path) -> list[dict[str, str]]:
    with open(root / "reports" / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def results_rows() -> Callable[[Path], list[dict[str, str]]]:
    """``results_rows(root)``: the rows of the results table a run under ``root`` wrote
    (``reports/results.csv``, the default path)."""
    return _read_results
