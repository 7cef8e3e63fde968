"""Fabricated rows and images of the data contract, for tests, benchmarks and demos.

``python -m harness.report.sample OUT.html [N_ITEMS]`` writes a demo report, which is
the quickest way to look at the page without running a model.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from harness.render import save_heatmap_data

from .model import VARIANTS

__all__ = ["sample_rows", "signed_colormap"]

_CLASSES = ("speed_50", "speed_70", "stop", "yield", "tench", "husky")
_EXPLAINER = "lrp/epsilon_plus_flat"


def signed_colormap(relevance: np.ndarray, scale: float) -> np.ndarray:
    """Map a signed relevance map to BGR: blue negative, white zero, red positive.

    Parameters
    ----------
    relevance
        2-D float array.
    scale
        Absolute value that maps to full red/blue (symmetric).

    Returns
    -------
    numpy.ndarray
        ``uint8`` BGR image of the same height and width.
    """
    r = np.clip(relevance / max(scale, 1e-12), -1.0, 1.0)
    pos, neg = np.clip(r, 0, 1), np.clip(-r, 0, 1)
    blue = 255 * (1 - pos)
    green = 255 * (1 - pos - neg)
    red = 255 * (1 - neg)
    return np.stack([blue, green, red], axis=-1).clip(0, 255).astype(np.uint8)


def _blob(size: int, cx: float, cy: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def _images(out: Path, stem: str, rng: np.random.Generator, size: int, variant: str) -> tuple[dict[str, str], float]:
    base = rng.integers(60, 200, size=3)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = base
    noise = rng.normal(0, 12, size=(size, size, 3))
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    cx, cy, radius = size * rng.uniform(0.35, 0.65), size * rng.uniform(0.35, 0.65), size * 0.22
    centre = (int(cx), int(cy))
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, centre, int(radius), 255, -1)
    if variant != "instance_removed":
        cv2.circle(image, centre, int(radius), (30, 30, 200), -1)
        cv2.circle(image, centre, int(radius * 0.7), (245, 245, 245), -1)
    if variant == "background_removed":
        image[mask == 0] = (128, 128, 128)
    sticker = None
    if variant == "sticker_added":
        s = max(3, size // 8)
        x0, y0 = int(cx + radius * 0.2), int(cy - radius * 0.6)
        sticker = (x0, y0, x0 + s, y0 + s)
        cv2.rectangle(image, sticker[:2], sticker[2:], (20, 20, 20), -1)

    annotated = image.copy()
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(annotated, contours, -1, (0, 220, 0), 1)
    if sticker:
        cv2.rectangle(annotated, sticker[:2], sticker[2:], (0, 220, 255), 1)

    relevance = _blob(size, cx, cy, radius * 0.6) * rng.uniform(0.3, 1.0)
    relevance += _blob(size, size * rng.uniform(0, 1), size * rng.uniform(0, 1), size * 0.12) * rng.uniform(0.2, 1.0)
    relevance -= _blob(size, size * rng.uniform(0, 1), size * rng.uniform(0, 1), size * 0.1) * rng.uniform(0.1, 0.6)
    scale = float(np.abs(relevance).max())
    heatmap = signed_colormap(relevance, scale)
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    overlay = cv2.addWeighted(grey, 0.45, heatmap, 0.55, 0)

    paths = {}
    for kind, picture in (("input", image), ("annotated", annotated), ("heatmap", heatmap), ("overlay", overlay)):
        path = out / f"{stem}_{kind}.png"
        cv2.imwrite(str(path), picture)
        paths[kind] = str(path.resolve())
    # What the core saves too: the signed map and the masks, for the case's shared colour scale.
    sticker_mask = np.zeros((size, size), bool)
    if sticker:
        sticker_mask[sticker[1] : sticker[3] + 1, sticker[0] : sticker[2] + 1] = True
    data = out / f"{stem}_heatmap.npz"
    save_heatmap_data(data, relevance, mask > 0, sticker_mask if sticker else None)
    paths["heatmap_data"] = str(data.resolve())
    return paths, scale


def _verdict(variant: str, rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        return "passed"
    return {
        "original": str(rng.choice(["false_negative", "wrong_reasons"])),
        "instance_removed": "false_positive",
        "background_removed": "false_negative",
        "sticker_added": "artifact_reliance",
    }[variant]


def sample_rows(
    out_dir: str | Path,
    n_items: int = 24,
    seed: int = 0,
    size: int = 64,
    models: tuple[str, ...] = ("signs-shortcut", "signs-clean"),
    errors: int = 1,
) -> list[dict[str, Any]]:
    """Fabricate rows of the data contract with real PNG images.

    Parameters
    ----------
    out_dir
        Folder for the PNG files (created).
    n_items
        Number of rows; cases get the four variants in turn.
    seed
        Seed of the random generator; equal seeds give equal rows and images.
    size
        Image side in pixels.
    models
        Model names, assigned round-robin per case.
    errors
        How many of the last rows become ``error`` rows without images.

    Returns
    -------
    list of dict
        Rows as the core attaches them to ``("xai", row)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for index in range(n_items):
        case_no, variant = divmod(index, len(VARIANTS))
        variant_name = VARIANTS[variant]
        label = _CLASSES[case_no % len(_CLASSES)]
        suite = f"testcases/{label.split('_')[0]}/{label}.xai.yaml"
        case_id = f"{label}-{case_no:04d}"
        line = 3 + 12 * (case_no // len(_CLASSES))
        verdict = _verdict(variant_name, rng)
        is_error = index >= n_items - errors
        if is_error:
            verdict = "error"
        images, scale = ({}, None) if is_error else _images(out, f"{case_id}_{variant_name}", rng, size, variant_name)
        other = _CLASSES[(case_no + 1) % len(_CLASSES)]
        keeps_label = verdict == "false_positive" or (
            verdict in ("passed", "wrong_reasons") and variant_name != "instance_removed"
        )
        predicted = None if is_error else (label if keeps_label else other)
        mass_object = None if is_error else float(rng.uniform(0.05, 0.95))
        mass_removed = float(rng.uniform(0, 0.6)) if variant_name == "instance_removed" and not is_error else None
        mass_sticker = float(rng.uniform(0, 0.6)) if variant_name == "sticker_added" and not is_error else None
        p_predicted = None if is_error else float(rng.uniform(0.4, 0.99))
        checks = []
        if not is_error:
            # Values agree with the verdict, so the demo page reads sensibly.
            label_ok = verdict in ("passed", "wrong_reasons")
            p_label = float(
                rng.uniform(0.5, 1.0) if (label_ok != (variant_name == "instance_removed")) else rng.uniform(0, 0.5)
            )
            checks.append(
                {
                    "name": "expected class",
                    "metric": "p_label",
                    "value": p_label,
                    "threshold": 0.5,
                    "op": "<=" if variant_name == "instance_removed" else ">=",
                    "passed": verdict != "false_positive" and verdict != "false_negative",
                }
            )
            mass_object = float(rng.uniform(0.05, 0.45) if verdict == "wrong_reasons" else rng.uniform(0.5, 0.95))
            checks.append(
                {
                    "name": "relevance on object",
                    "metric": "mass_object",
                    "value": mass_object,
                    "threshold": 0.5,
                    "op": ">=",
                    "passed": verdict != "wrong_reasons",
                }
            )
            if mass_sticker is not None:
                mass_sticker = float(rng.uniform(0.25, 0.6) if verdict == "artifact_reliance" else rng.uniform(0, 0.15))
                checks.append(
                    {
                        "name": "relevance on sticker",
                        "metric": "mass_sticker",
                        "value": mass_sticker,
                        "threshold": 0.2,
                        "op": "<=",
                        "passed": verdict == "passed",
                    }
                )
        if checks and predicted == label:
            p_predicted = max(float(checks[0]["value"]), 0.5)  # type: ignore[arg-type]
            checks[0]["value"] = p_predicted
        if checks:
            checks.insert(
                0,
                {
                    "name": "label predicted",
                    "metric": "predicted",
                    "value": predicted,
                    "threshold": label,
                    "op": "!=" if variant_name == "instance_removed" else "==",
                    "passed": verdict not in ("false_positive", "false_negative", "artifact_reliance"),
                },
            )
        location = f"{suite}:{line}"
        message = {
            "passed": f"passed: {variant_name.replace('_', ' ')} behaves as expected ({_EXPLAINER}) — {location}",
            "false_positive": f"false positive: instance removed, model still predicts {label} "
            f"(p={p_predicted or 0:.2f}); positive relevance inside removed region "
            f"{100 * (mass_removed or 0):.0f} % ({_EXPLAINER}) — {location}",
            "false_negative": f"false negative: {variant_name.replace('_', ' ')}, "
            f"model predicts {other} instead of {label} — {location}",
            "artifact_reliance": f"artifact reliance: sticker changes the prediction to {other}; "
            f"relevance inside sticker {100 * (mass_sticker or 0):.0f} % — {location}",
            "wrong_reasons": f"wrong reasons: relevance on the object {100 * (mass_object or 0):.0f} % < 50 % "
            f"— {location}",
            "error": f"error: relevance map is all zero, relevance mass undefined — {location}",
        }[verdict]
        rows.append(
            {
                "suite": suite,
                "line": line,
                "case_id": case_id,
                "description": f"A {label.replace('_', ' ')} sign photographed at a crossing." if case_no % 3 else "",
                "variant": variant_name,
                "model": models[case_no % len(models)],
                "explainer": _EXPLAINER,
                "device": "cpu",
                "label": label,
                "predicted": predicted,
                "p_predicted": p_predicted,
                "p_label": None if is_error else checks[1]["value"],
                "original_predicted": None if is_error else label,
                "mass_object": mass_object,
                "mass_removed": mass_removed,
                "mass_sticker": mass_sticker,
                "rank_accuracy": None if is_error else float(rng.uniform(0, 1)),
                "pointing_game": None if is_error else bool(rng.random() < 0.6),
                "signed_object": None if is_error else float(rng.uniform(-0.2, 0.9)),
                "negative_object": None if is_error else float(rng.uniform(0, 0.3)),
                "verdict": verdict,
                "passed": verdict == "passed",
                "message": message,
                "checks": checks,
                "images": images,
                "heatmap_scale": scale,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Write a demo report: ``python -m harness.report.sample OUT.html [N_ITEMS]``."""
    from .render import write_report

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__)
        return 2
    target = Path(args[0])
    count = int(args[1]) if len(args) > 1 else 24
    rows = sample_rows(target.with_name(target.stem + "_sources"), count)
    print(write_report(rows, target, meta={"title": "XAI test report (demo data)"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
