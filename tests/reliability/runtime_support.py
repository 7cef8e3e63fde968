"""A small world for the run-time reliability tests: 32×32 scenes, probe models whose
behaviour (and misbehaviour) is known by construction (harness.probes), and a helper
that runs one pytest session over it in a subprocess and reads back what it wrote."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]

PRE = "preprocessing: {size: [32, 32], mean: [0, 0, 0], std: [1, 1, 1]}"
PROBE_ARGS = "size: [32, 32], region: [10, 10, 22, 22], threshold: 0.9"


# Faults that strike only images carrying a pure red pixel (the "trigger"), so one batch
# holds faulty and healthy images. They are injected around the explainer by the
# world's conftest.py (CONFTEST), since the LRP backends rightly refuse to explain a
# model with data-dependent branches inside.
FAULTS = (
    "nan_logits",
    "inf_logits",
    "zero_logits",
    "tie",
    "raise",
    "nan_relevance",
    "inf_relevance",
    "zero_relevance",
    "blown_relevance",
)

CONFTEST = """\
import torch

import harness.engine

FACTORS = {"nan_relevance": float("nan"), "inf_relevance": float("inf"), "zero_relevance": 0.0,
           "blown_relevance": 100.0}


def triggered(x):
    red = (x[:, 0] > 0.99) & (x[:, 1] < 0.01) & (x[:, 2] < 0.01)
    return red.flatten(1).any(dim=1)


class Faulty:
    def __init__(self, inner, fault):
        self.inner, self.fault = inner, fault
        self.name, self.backend, self.note = inner.name, inner.backend, inner.note

    def __call__(self, x, targets):
        rows = triggered(x)
        if self.fault == "raise" and bool(rows.any()):
            raise RuntimeError("the probe refuses images with a red pixel")
        logits, relevance = self.inner(x, targets)
        hit = rows.view(-1, 1)
        if self.fault == "nan_logits":
            logits = torch.where(hit & (torch.arange(logits.shape[1]) == 0), float("nan"), logits)
        elif self.fault == "inf_logits":
            logits = torch.where(hit, float("inf"), logits)
        elif self.fault == "zero_logits":
            logits = torch.where(hit, 0.0, logits)
        elif self.fault == "tie":
            logits = torch.where(hit, logits[:, :1].expand_as(logits), logits)
        elif self.fault in FACTORS:
            relevance = torch.where(rows.view(-1, 1, 1, 1), relevance * FACTORS[self.fault], relevance)
        return logits, relevance


real = harness.engine.make_explainer


def make_explainer(name, model, backend="auto"):
    explainer = real(name, model, backend)
    return Faulty(explainer, model.name[len("fault-"):]) if model.name.startswith("fault-") else explainer


harness.engine.make_explainer = make_explainer
"""


def registry_text(extra: dict[str, str] | None = None) -> str:
    """The registry: ``good`` (a healthy probe), one ``fault-<kind>`` per fault of
    :data:`FAULTS` (the same probe; the fault is injected by :data:`CONFTEST`), plus
    ``extra`` entries (name -> YAML body)."""
    lines = ["models:"]
    for name in ("good", *(f"fault-{fault}" for fault in FAULTS)):
        lines += [
            f"  {name}:",
            "    architecture: harness.probes:region_probe",
            f"    args: {{{PROBE_ARGS}}}",
            "    classes: [thing, other]",
            f"    {PRE}",
        ]
    for name, body in (extra or {}).items():
        lines.append(f"  {name}:")
        lines += ["    " + line for line in body.strip().splitlines()]
    return "\n".join(lines) + "\n"


def scene(trigger: bool = False) -> np.ndarray:
    """Grey-white scene with a white square object; ``trigger`` adds pure red pixels in
    a corner and in the object's centre, which every variant keeps at least one of."""
    image = np.full((32, 32, 3), 204, np.uint8)
    image[10:22, 10:22] = 255
    if trigger:
        image[0, 0] = (255, 0, 0)
        image[16, 16] = (255, 0, 0)
    return image


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), out)


def bomb_png(path: Path, side: int = 100_000) -> None:
    """A PNG whose header claims ``side``×``side`` pixels (a decompression bomb as far as
    any reader that trusts the header is concerned), with a tiny body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def make_world(root: Path, extra_models: dict[str, str] | None = None) -> None:
    """Images, masks, the registry and the fault-injecting conftest under ``root``
    (suites are written by each test)."""
    write_png(root / "scene.png", scene())
    write_png(root / "trigger.png", scene(trigger=True))
    mask = np.zeros((32, 32), np.uint8)
    mask[10:22, 10:22] = 255
    write_png(root / "scene_mask.png", mask)
    (root / "not_an_image.png").write_bytes(b"this is text, not a PNG\n" * 10)
    bomb_png(root / "bomb_mask.png")
    (root / "models.yaml").write_text(registry_text(extra_models))
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text("[pytest]\nxai_models = models.yaml\n")


VARIANTS = """\
  variants:
    original: {}
    instance_removed: {fill: mean}
    background_removed: {fill: grey}
    sticker_added: {size: 0.25}
"""


def suite(
    model: str, cases: str, *, explainer: str = "lrp/epsilon_plus_flat", thresholds: str = "", variants: str = VARIANTS
) -> str:
    """A suite text with the standard variants; ``cases`` is the YAML list body."""
    extra = f"  thresholds: {thresholds}\n" if thresholds else ""
    return f"model: {model}\nexplainer: {explainer}\ndefaults:\n  label: thing\n{extra}{variants}cases:\n" + cases


CLEAN_AND_BAD = """\
  - id: clean
    image: scene.png
    object: {mask: scene_mask.png}
  - id: bad
    image: trigger.png
    object: {mask: scene_mask.png}
"""


@dataclass
class Session:
    """What one pytest run left behind."""

    returncode: int
    output: str
    rows: list[dict[str, str]]

    def row(self, suite: str, case: str, variant: str) -> dict[str, str]:
        found = [r for r in self.rows if r["suite"] == suite and r["case_id"] == case and r["variant"] == variant]
        assert len(found) == 1, (suite, case, variant, found)
        return found[0]

    def suite_rows(self, suite: str) -> list[dict[str, str]]:
        return [r for r in self.rows if r["suite"] == suite]


def run_session(root: Path, *args: str, results: str = "reports/results.csv", timeout: int = 300) -> Session:
    """Run pytest on ``root`` in a fresh interpreter (what a user runs) and read the table."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    table = root / results
    rows: list[dict[str, Any]] = []
    if table.is_file():
        with open(table, newline="") as handle:
            rows = list(csv.DictReader(handle))
    return Session(done.returncode, done.stdout + done.stderr, rows)


ONE_CLEAN_CASE = """\
  - id: clean
    image: scene.png
    object: {mask: scene_mask.png}
"""
