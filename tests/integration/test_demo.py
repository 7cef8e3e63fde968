"""The shipped demo: both models through the shipped suites, and the outcome matrix.

Which verdicts fire where is the point of the demo: against ``signs-shortcut`` the
planted shortcuts must be caught (stickers on 50 km/h signs → artifact reliance; yield,
learnt from brick walls → false positive without the sign and false negative without the
wall), and against ``signs-clean`` the same items must pass. The compositions (issue 12)
tell the same stories with variants made of steps, a sweep and negative cases.
"""

import csv
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, model: str) -> list[dict[str, str]]:
    results = tmp_path / f"{model}.csv"
    import subprocess

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "testcases",
            "-q",
            "-p",
            "no:cacheprovider",
            "--xai-model",
            model,
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
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    with open(results, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def shortcut_rows(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo"), "signs-shortcut")


@pytest.fixture(scope="module")
def clean_rows(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo"), "signs-clean")


# Suites of variants made of steps, sweeps and negative cases; the matrix tests read the others.
COMPOSED = {
    "testcases/signs/speed_70_sticker_kept.xai.yaml",
    "testcases/signs/yield_other_walls.xai.yaml",
    "testcases/signs/empty_walls.xai.yaml",
}
BUILT_IN = {"original", "instance_removed", "background_removed", "sticker_added"}


def classic(rows):
    return [r for r in rows if r["suite"] not in COMPOSED]


def composed(rows, suite):
    return [r for r in rows if r["suite"] == f"testcases/signs/{suite}.xai.yaml"]


def matrix(rows):
    """{(label, variant): Counter(verdict)}"""
    out: dict[tuple[str, str], Counter] = {}
    for row in rows:
        out.setdefault((row["label"], row["variant"]), Counter())[row["verdict"]] += 1
    return out


def rate(cell: Counter, verdict: str) -> float:
    return cell[verdict] / sum(cell.values())


def test_suites_have_enough_cases_and_every_variant(shortcut_rows):
    cases = {(r["suite"], r["case_id"]) for r in shortcut_rows}
    assert len(cases) >= 20
    assert {r["variant"] for r in classic(shortcut_rows)} == BUILT_IN
    assert {r["variant"] for r in shortcut_rows} == BUILT_IN | {"sticker_kept_sign_removed", "on_other_walls"}
    assert {r["suite"] for r in shortcut_rows} >= COMPOSED
    assert not [r for r in shortcut_rows if r["verdict"] == "error"]


def test_shortcut_model_is_caught(shortcut_rows):
    m = matrix(classic(shortcut_rows))
    assert rate(m[("speed_50", "sticker_added")], "artifact_reliance") >= 0.8
    assert rate(m[("yield", "instance_removed")], "false_positive") >= 0.8
    assert rate(m[("yield", "background_removed")], "false_negative") >= 0.5
    # The sticker really flips 50 km/h signs to 70 km/h in most cases (not only draws relevance).
    flips = [r for r in shortcut_rows if r["label"] == "speed_50" and r["variant"] == "sticker_added"]
    assert sum(r["predicted"] == "speed_70" for r in flips) / len(flips) >= 0.5


def test_shortcut_model_verdicts_only_fire_where_shortcuts_are(shortcut_rows):
    m = matrix(classic(shortcut_rows))
    allowed = {
        "original": {"passed", "wrong_reasons"},  # yield: relevance on the wall
        "instance_removed": {"passed", "false_positive"},
        "background_removed": {"passed", "false_negative"},
        "sticker_added": {"passed", "artifact_reliance"},
    }
    for (label, variant), cell in m.items():
        assert set(cell) <= allowed[variant], (label, variant, cell)
        if label in ("speed_30", "stop") and variant in ("original", "instance_removed", "background_removed"):
            assert set(cell) == {"passed"}, (label, variant, cell)
        if label == "speed_50" and variant != "sticker_added":
            assert set(cell) == {"passed"}, (label, variant, cell)


def test_clean_model_passes_the_same_items(clean_rows, shortcut_rows):
    assert len(clean_rows) == len(shortcut_rows)
    passed = sum(r["verdict"] == "passed" for r in clean_rows) / len(clean_rows)
    assert passed >= 0.95
    m = matrix(classic(clean_rows))
    assert rate(m[("yield", "instance_removed")], "false_positive") == 0
    assert rate(m[("yield", "background_removed")], "false_negative") == 0
    assert rate(m[("speed_50", "sticker_added")], "artifact_reliance") <= 0.1


def test_compound_variant_catches_the_sticker_without_the_sign(shortcut_rows, clean_rows):
    """Sign painted out, black sticker kept (the horse-© story): the shortcut model still
    says 70 km/h from the sticker alone; the clean model does not."""
    shortcut = composed(shortcut_rows, "speed_70_sticker_kept")
    clean = composed(clean_rows, "speed_70_sticker_kept")
    kept = [r for r in shortcut if r["variant"] == "sticker_kept_sign_removed"]
    assert len(kept) == 10 and {r["sweep"] for r in kept} == {""}
    assert sum(r["verdict"] == "false_positive" for r in kept) >= 7
    assert {r["verdict"] for r in kept} <= {"false_positive", "passed"}
    assert {r["verdict"] for r in shortcut if r["variant"] == "original"} == {"passed"}
    assert len(clean) == 20 and {r["verdict"] for r in clean} == {"passed"}


def test_sweep_over_backgrounds_finds_the_brick_shortcut(shortcut_rows, clean_rows):
    """Yield signs on five walls, one item per wall: the shortcut model needs brick."""
    shortcut = composed(shortcut_rows, "yield_other_walls")
    walls = {"brick", "coffee", "grass", "gravel", "moon"}
    assert {r["sweep"] for r in shortcut} == walls and {r["variant"] for r in shortcut} == {"on_other_walls"}
    assert len(shortcut) == 6 * len(walls)
    assert all(r["nodeid"].endswith(f"[on_other_walls-{r['sweep']}]") for r in shortcut)
    for row in shortcut:
        expected = "passed" if row["sweep"] == "brick" else "false_negative"
        assert row["verdict"] == expected, (row["case_id"], row["sweep"], row["predicted"])
    clean = composed(clean_rows, "yield_other_walls")
    assert len(clean) == 30 and {r["verdict"] for r in clean} == {"passed"}


def test_negative_cases_catch_a_wall_called_yield(shortcut_rows, clean_rows):
    """Empty images, expect: absent: a bare brick wall is "yield" to the shortcut model only."""
    shortcut = composed(shortcut_rows, "empty_walls")
    assert len(shortcut) == 8
    for row in shortcut:
        brick = row["case_id"].startswith("brick_wall")
        assert row["verdict"] == ("false_positive" if brick else "passed"), (row["case_id"], row["predicted"])
    clean = composed(clean_rows, "empty_walls")
    assert len(clean) == 8 and {r["verdict"] for r in clean} == {"passed"}
    assert {r["predicted"] for r in clean} <= {"background", "speed_30", "speed_50", "speed_70", "stop"}
