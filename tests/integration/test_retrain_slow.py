"""Retrain a reduced shortcut model from scratch and check that the harness detects the
sticker shortcut, so the detection is not an accident of the shipped weights."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_retrained_sticker_shortcut_is_detected(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "fixtures" / "signs" / "train.py"), "--out", str(tmp_path), "--quick"],
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    weights = tmp_path / "signs-shortcut.pt"
    assert weights.is_file()
    registry = (ROOT / "fixtures" / "models.yaml").read_text().replace("models/signs-shortcut.pt", str(weights))
    (tmp_path / "models.yaml").write_text(registry)
    results = tmp_path / "results.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "testcases/signs/speed_50.xai.yaml",
            "-q",
            "-p",
            "no:cacheprovider",
            "--xai-models",
            str(tmp_path / "models.yaml"),
            "--xai-model",
            "signs-shortcut",
            "--xai-results",
            str(results),
            "--xai-assets",
            "",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:]
    rows = list(csv.DictReader(open(results, newline="")))
    stickers = [r for r in rows if r["variant"] == "sticker_added"]
    originals = [r for r in rows if r["variant"] == "original"]
    assert sum(r["predicted"] == "speed_50" for r in originals) / len(originals) >= 0.8
    assert sum(r["verdict"] == "artifact_reliance" for r in stickers) / len(stickers) >= 0.8
