"""Which "wrong reasons" criterion fits real models: the absolute mass vs the size-aware lift.

Runs the shipped demo suites' original images through both demo models (pytest, the
harness itself) and prints, per model and label, the object's share of the pixels, the
relevance mass on it and the lift (mass / area), then how many originals each criterion
would call "wrong reasons". The default ``min_object_lift`` (harness/spec.py) was chosen
from these figures: no false alarm on ``signs-clean``, the yield-on-brick context reliance
of ``signs-shortcut`` still caught.

    .venv/bin/python benchmarks/measure_reasons.py [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("signs-clean", "signs-shortcut")
# The shipped demo suites (the demo world's own cases; later suites may add other kinds).
SUITES = (
    "testcases/signs/controls.xai.yaml",
    "testcases/signs/speed_50.xai.yaml",
    "testcases/signs/yield_on_brick.xai.yaml",
)
MASS_THRESHOLDS = (0.3, 0.4, 0.5)
LIFT_THRESHOLDS = (1.0, 1.5, 2.0, 2.5, 3.0)


def original_rows(model: str, folder: Path) -> list[dict[str, str]]:
    """The original items' rows of the demo suites for ``model``."""
    results = folder / f"{model}.csv"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *SUITES,
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "original",
        "--xai-model",
        model,
        "--xai-results",
        str(results),
        "--xai-assets",
        "",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 1) or not results.exists():
        raise SystemExit(f"pytest failed for {model}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    with open(results, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["variant"] == "original"]
    errors = [row for row in rows if row["verdict"] == "error"]
    if errors or not rows:
        raise SystemExit(
            f"{model}: {len(errors)} of {len(rows)} originals errored: {errors[0]['message'] if errors else ''}"
        )
    return rows


def summarise(model: str, rows: list[dict[str, str]]) -> dict[str, object]:
    # Only originals whose label is predicted can be "wrong reasons" (else: false negative).
    judged = [r for r in rows if r["predicted"] == r["label"] and r["object_lift"]]
    by_label: dict[str, dict[str, float]] = {}
    for label in sorted({r["label"] for r in judged}):
        mine = [r for r in judged if r["label"] == label]
        by_label[label] = {
            "n": len(mine),
            "area": statistics.median(float(r["object_area"]) for r in mine),
            "mass": statistics.median(float(r["mass_object"]) for r in mine),
            "lift": statistics.median(float(r["object_lift"]) for r in mine),
            "lift_min": min(float(r["object_lift"]) for r in mine),
            "lift_max": max(float(r["object_lift"]) for r in mine),
        }
    flagged = {
        f"mass<{m}": {
            label: sum(float(r["mass_object"]) < m for r in judged if r["label"] == label) for label in by_label
        }
        for m in MASS_THRESHOLDS
    }
    flagged.update(
        {
            f"lift<{t}": {
                label: sum(float(r["object_lift"]) < t for r in judged if r["label"] == label) for label in by_label
            }
            for t in LIFT_THRESHOLDS
        }
    )
    return {"model": model, "originals": len(rows), "judged": len(judged), "by_label": by_label, "flagged": flagged}


def print_summary(summary: dict[str, object]) -> None:
    by_label = summary["by_label"]
    assert isinstance(by_label, dict)
    print(f"\n{summary['model']}: {summary['judged']} of {summary['originals']} originals predicted as labelled")
    print(f"{'label':<10} {'n':>3} {'area':>6} {'mass':>6} {'lift':>6} {'lift min':>9} {'lift max':>9}")
    for label, f in by_label.items():
        print(
            f"{label:<10} {f['n']:>3} {f['area']:>6.3f} {f['mass']:>6.3f} {f['lift']:>6.2f} "
            f"{f['lift_min']:>9.2f} {f['lift_max']:>9.2f}"
        )
    flagged = summary["flagged"]
    assert isinstance(flagged, dict)
    print("'wrong reasons' per criterion (count of judged originals per label):")
    labels = list(by_label)
    print(f"{'criterion':<10} " + " ".join(f"{label:>9}" for label in labels))
    for name, counts in flagged.items():
        print(f"{name:<10} " + " ".join(f"{counts[label]:>9}" for label in labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summaries = [summarise(model, original_rows(model, Path(tmp))) for model in MODELS]
    for summary in summaries:
        print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
