"""The baseline table: save -> load round trip, its format marker and version, and the
comparison rules on fabricated rows (no model needed)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import baseline as bl
from harness.baseline import BaselineError, Match, compare, load_baseline, save_baseline
from harness.verdicts import Judgement

pq = pytest.importorskip("pyarrow.parquet")


def row(case_id="scene", variant="original", slot=0, verdict="passed", mass=0.8, **extra):
    out = {
        "suite": "signs.xai.yaml",
        "line": 10,
        "case_id": case_id,
        "variant": variant,
        "sweep": None,
        "model": "old-net",
        "model_slot": slot,
        "explainer": "lrp/epsilon_plus_flat",
        "label": "thing",
        "verdict": verdict,
        "passed": verdict == "passed",
        "mass_object": mass,
        "mass_sticker": None,
        "p_label": 0.9,
        "images": {"overlay": "/nowhere/overlay.png"},
        "checks": [],
    }
    out.update(extra)
    return out


@pytest.mark.parametrize("name", ["base.parquet", "base.csv"])
def test_round_trip(tmp_path, name):
    rows = [
        row(),
        row(variant="sticker_added", verdict="artifact_reliance", mass=None),
        row(variant="background_removed", sweep="brick", slot=1),
        # Not an item of a case (a suite that could not be collected): kept out of the keys.
        row(case_id="", variant="", verdict="error", model_slot=None),
    ]
    path = save_baseline(rows, tmp_path / name)
    loaded = load_baseline(path)
    assert loaded.meta["format"] == "xai-harness-baseline" and loaded.meta["version"] == 1
    assert len(loaded.rows) == 3
    original = loaded.rows[("signs.xai.yaml", "scene", "original", "", 0, "lrp/epsilon_plus_flat")]
    assert original["passed"] is True and original["mass_object"] == pytest.approx(0.8)
    assert original["images"] == {"overlay": "/nowhere/overlay.png"}
    sticker = loaded.rows[("signs.xai.yaml", "scene", "sticker_added", "", 0, "lrp/epsilon_plus_flat")]
    assert sticker["passed"] is False and sticker["mass_object"] is None
    assert ("signs.xai.yaml", "scene", "background_removed", "brick", 1, "lrp/epsilon_plus_flat") in loaded.rows
    # Values are plain Python: rows cross xdist's pipe as JSON.
    json.dumps(list(loaded.rows.values()))


def test_a_repeated_key_keeps_the_first_row(tmp_path):
    path = save_baseline([row(mass=0.8), row(mass=0.1)], tmp_path / "base.parquet")
    loaded = load_baseline(path)
    assert [r["mass_object"] for r in loaded.rows.values()] == [pytest.approx(0.8)]
    assert loaded.duplicates == 1 and "1 row(s) with a repeated key ignored" in loaded.describe()


def test_missing_file(tmp_path):
    with pytest.raises(
        BaselineError, match=r"nope\.parquet: baseline file not found; expected an xai-harness baseline"
    ):
        load_baseline(tmp_path / "nope.parquet")


def test_foreign_parquet(tmp_path):
    pd.DataFrame([row()]).drop(columns=["images", "checks"]).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(BaselineError, match=r"other\.parquet: not an xai-harness baseline \(no 'xai-harness-baseline'"):
        load_baseline(tmp_path / "other.parquet")


def _rewrite_meta(path: Path, **changes) -> None:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"xai_harness"])
    meta.update(changes)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"xai_harness": json.dumps(meta)}), path)


@pytest.mark.parametrize(("version", "words"), [(2, "a newer"), (0, "an older or unknown"), ("x", "an older")])
def test_other_format_version(tmp_path, version, words):
    path = save_baseline([row()], tmp_path / "base.parquet")
    _rewrite_meta(path, version=version)
    with pytest.raises(BaselineError, match=f"format version {version!r} comes from {words}.*reads version 1"):
        load_baseline(path)


def test_missing_columns(tmp_path):
    path = save_baseline([row()], tmp_path / "base.parquet")
    table = pq.read_table(path).drop_columns(["model_slot", "mass_object"])
    pq.write_table(table, path)  # the metadata travels with the schema
    with pytest.raises(BaselineError, match=r"lacks the column\(s\) model_slot, mass_object; expected at least suite"):
        load_baseline(path)


def test_foreign_and_newer_csv(tmp_path):
    foreign = tmp_path / "results.csv"
    pd.DataFrame([row()]).to_csv(foreign, index=False)
    with pytest.raises(BaselineError, match=r"results\.csv: not an xai-harness baseline \(the first line is not"):
        load_baseline(foreign)
    path = save_baseline([row()], tmp_path / "base.csv")
    text = path.read_text().replace("version=1 ", "version=7 ", 1)
    path.write_text(text)
    with pytest.raises(BaselineError, match="format version 7 comes from a newer xai-harness"):
        load_baseline(path)


def test_a_truncated_parquet_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(BaselineError, match=r"cut\.parquet: cannot read the Parquet file"):
        load_baseline(path)


def test_writing_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    real = bl.importlib.util.find_spec
    monkeypatch.setattr(bl.importlib.util, "find_spec", lambda name: None if name == "pyarrow" else real(name))
    with pytest.raises(BaselineError, match=r"needs pyarrow .* or give a path ending in \.csv"):
        save_baseline([row()], tmp_path / "base.parquet")
    assert save_baseline([row()], tmp_path / "base.csv").is_file()


# ------------------------------------------------------------------ the rules


def judged(verdict="passed"):
    return Judgement(verdict, f"{verdict}: the oracle's sentence", [])


T = {"max_mass_drop": 0.2}


def test_new_item_keeps_its_verdict():
    judgement, columns = compare(Match(None, "b"), "original", judged(), {"mass_object": 0.5}, T)
    assert judgement.verdict == "passed" and columns["regression_status"] == "new"
    assert columns["oracle_verdict"] == "passed"


def test_a_drop_of_exactly_the_limit_is_no_regression():
    base = Match(row(mass=0.7), "b")
    judgement, columns = compare(base, "original", judged(), {"mass_object": 0.45}, {"max_mass_drop": 0.25})
    assert judgement.verdict == "passed" and columns["regression_status"] == "unchanged"
    assert judgement.checks[-1].name == "relevance on object against the baseline" and judgement.checks[-1].passed
    judgement, columns = compare(base, "original", judged(), {"mass_object": 0.44}, {"max_mass_drop": 0.25})
    assert judgement.verdict == "regression" and not judgement.passed
    assert "fell from 70 % to 44 %, by 26 points > 25 allowed (max_mass_drop)" in judgement.message


def test_a_failure_that_stays_a_failure_is_unchanged():
    base = Match(row(verdict="false_positive"), "b")
    judgement, columns = compare(base, "instance_removed", judged("false_positive"), {"mass_object": 0.0}, T)
    # The object was painted out: its relevance share is not compared.
    assert columns["delta_mass_object"] is None and columns["regression_status"] == "unchanged"
    assert judgement.verdict == "false_positive"


def test_a_failing_item_whose_mass_dropped_is_a_regression_too():
    base = Match(row(verdict="wrong_reasons", mass=0.45), "b")
    judgement, columns = compare(base, "original", judged("wrong_reasons"), {"mass_object": 0.1}, T)
    assert judgement.verdict == "regression" and columns["oracle_verdict"] == "wrong_reasons"
    assert judgement.message.startswith("regression (baseline old-net: wrong reasons): positive relevance")


def test_an_unjudged_baseline_row_is_not_compared():
    judgement, columns = compare(Match(row(verdict="error"), "b"), "original", judged(), {"mass_object": 0.1}, T)
    assert judgement.verdict == "passed" and columns["regression_status"] == "not_compared"
    assert columns["baseline_verdict"] == "error"


def test_the_baseline_oracle_verdict_counts_not_its_regression():
    base = Match(row(verdict="regression", oracle_verdict="passed"), "b")
    judgement, columns = compare(base, "original", judged(), {"mass_object": 0.8}, T)
    assert columns["regression_status"] == "unchanged" and columns["baseline_verdict"] == "passed"


def test_the_summary_line():
    baseline = bl.Baseline(Path("b.parquet"), {bl.row_key(row(case_id=c)): row(case_id=c) for c in "abc"})
    rows = [
        {**row(case_id="a"), "regression_status": "regressed"},
        {**row(case_id="b"), "regression_status": "unchanged"},
        {**row(case_id="z"), "regression_status": "new"},
    ]
    found = bl.comparison(baseline, rows)
    assert found.line() == (
        "1 item regressed, 0 improved, 1 unchanged, 1 new (not in the baseline), "
        "1 missing (in the baseline, not in this run: deselected, or gone from the suites)"
    )
    assert found.as_dict()["missing_examples"] == ["signs.xai.yaml::c[original] (model slot 0, lrp/epsilon_plus_flat)"]
