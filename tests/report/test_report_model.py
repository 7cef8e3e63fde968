"""Pure tests of the report data model: parsing rows, grouping cases, counting verdicts."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from harness.report.model import (
    VERDICTS,
    build_report,
    environment_versions,
    error_item,
    item_from_row,
)


def row(case_id: str = "c1", variant: str = "original", verdict: str = "passed", **extra):
    base = {
        "suite": "testcases/signs.xai.yaml",
        "line": 4,
        "case_id": case_id,
        "variant": variant,
        "model": "m1",
        "explainer": "lrp/epsilon_plus_flat",
        "device": "cpu",
        "label": "speed_50",
        "verdict": verdict,
        "passed": verdict == "passed",
        "message": f"{verdict}: something",
    }
    base.update(extra)
    return base


def test_item_from_row_turns_nan_and_junk_into_none():
    item = item_from_row(
        row(mass_object=math.nan, p_label="0.25", rank_accuracy=math.inf, line="12", pointing_game=None)
    )
    assert item.mass_object is None
    assert item.rank_accuracy is None
    assert item.p_label == 0.25
    assert item.line == 12
    assert item.pointing_game is None


def test_item_from_row_tolerates_missing_keys():
    item = item_from_row({})
    assert item.verdict == "error"
    assert item.passed is False
    assert item.checks == [] and item.images == {}


def test_checks_and_images_are_parsed_and_empty_paths_dropped():
    item = item_from_row(
        row(
            checks=[
                {
                    "name": "on object",
                    "metric": "mass_object",
                    "value": 0.3,
                    "threshold": 0.5,
                    "op": ">=",
                    "passed": False,
                },
                "junk",
            ],
            images={"input": "/a.png", "heatmap": "", "overlay": None},
        )
    )
    assert [(c.name, c.value, c.threshold, c.op, c.passed) for c in item.checks] == [
        ("on object", 0.3, 0.5, ">=", False)
    ]
    assert item.images == {"input": "/a.png"}


def test_checks_on_the_prediction_keep_class_names():
    item = item_from_row(
        row(
            checks=[
                {
                    "name": "label predicted",
                    "metric": "predicted",
                    "value": "stop",
                    "threshold": "stop",
                    "op": "==",
                    "passed": True,
                },
                {
                    "name": "peak",
                    "metric": "pointing_game",
                    "value": True,
                    "op": "==",
                    "threshold": True,
                    "passed": True,
                },
            ]
        )
    )
    assert [(c.value, c.threshold) for c in item.checks] == [("stop", "stop"), (True, True)]


def test_longrepr_is_kept_for_errors_only():
    assert item_from_row(row(verdict="false_positive"), longrepr="trace").longrepr == ""
    assert item_from_row(row(verdict="error"), longrepr="trace").longrepr == "trace"


def test_error_item_parses_nodeid_and_uses_last_line_as_message():
    item = error_item("testcases/a.xai.yaml::stop sign[sticker_added]", "Traceback\n  ...\nValueError: empty mask\n")
    assert (item.suite, item.case_id, item.variant) == ("testcases/a.xai.yaml", "stop sign", "sticker_added")
    assert item.verdict == "error"
    assert item.message == "ValueError: empty mask"
    assert "Traceback" in item.longrepr


def test_summary_counts_per_verdict_model_class_and_variant():
    rows = [
        row("a", "original", "passed"),
        row("a", "instance_removed", "false_positive"),
        row("b", "original", "false_negative", label="stop", model="m2"),
        row("b", "sticker_added", "artifact_reliance", label="stop", model="m2"),
        row("c", "original", "wrong_reasons"),
        row("c", "background_removed", "error"),
    ]
    summary = build_report(rows).summary
    assert summary.total == 6
    assert summary.failed == 4 and summary.errors == 1  # an error is not a model failure
    assert list(summary.by_verdict) == list(VERDICTS)
    assert summary.by_verdict == {
        "passed": 1, "false_positive": 1, "false_negative": 1,
        "artifact_reliance": 1, "wrong_reasons": 1, "error": 1,
    }  # fmt: skip
    tables = {table.field: table for table in summary.tables}
    by_model = {value: (counts, total) for value, counts, total in tables["model"].rows}
    assert by_model["m1"][1] == 4 and by_model["m2"][1] == 2
    assert by_model["m2"][0]["artifact_reliance"] == 1
    by_class = {value: total for value, _, total in tables["label"].rows}
    assert by_class == {"speed_50": 4, "stop": 2}
    assert [value for value, _, _ in tables["variant"].rows] == [
        "original", "instance_removed", "background_removed", "sticker_added",
    ]  # fmt: skip


def test_unknown_verdicts_are_counted_after_the_known_ones():
    summary = build_report([row(verdict="skipped"), row("d", verdict="passed")]).summary
    assert list(summary.by_verdict)[-1] == "skipped"
    assert summary.by_verdict["skipped"] == 1
    assert summary.failed == 0  # a skip is nothing to review


def test_review_is_asked_for_model_failures_and_unknown_verdicts_only():
    needs = {v: item_from_row(row(verdict=v)).needs_review for v in (*VERDICTS, "skipped", "mystery")}
    assert needs == {
        "passed": False, "false_positive": True, "false_negative": True, "artifact_reliance": True,
        "wrong_reasons": True, "error": False, "skipped": False, "mystery": True,
    }  # fmt: skip


def test_xfail_outcomes_and_errors_are_counted_apart_from_model_failures():
    items = [item_from_row(row("a", verdict="false_positive")), item_from_row(row("b", verdict="false_positive"))]
    items[1].outcome = "xfailed"
    xpass = item_from_row(row("c", verdict="passed"))
    xpass.outcome = "xpassed"
    items += [xpass, item_from_row(row("d", verdict="error")), item_from_row(row("e", verdict="passed"))]
    summary = build_report(items).summary
    assert (summary.total, summary.failed, summary.errors, summary.expected) == (5, 1, 1, 2)
    assert list(summary.by_verdict) == [*VERDICTS, "xfailed", "xpassed"]
    assert summary.by_verdict["false_positive"] == 1 and summary.by_verdict["passed"] == 1
    assert summary.by_verdict["xfailed"] == 1 and summary.by_verdict["xpassed"] == 1
    assert [item.needs_review for item in items] == [True, False, False, False, False]
    assert items[1].group == "xfailed" and items[1].verdict == "false_positive"
    by_model = {value: counts for value, counts, _ in summary.tables[0].rows}
    assert by_model["m1"]["xfailed"] == 1 and by_model["m1"]["false_positive"] == 1


def test_cases_group_variants_in_canonical_order_and_failures_sort_first():
    rows = [
        row("ok", "sticker_added", line=1),
        row("ok", "original", line=1),
        row("bad", "background_removed", "false_negative", line=9),
        row("bad", "original", line=9),
        row("err", "original", "error", line=20),
    ]
    cases = build_report(rows).cases
    assert [case.case_id for case in cases] == ["bad", "err", "ok"]
    assert [item.variant for item in cases[0].items] == ["original", "background_removed"]
    assert [item.variant for item in cases[2].items] == ["original", "sticker_added"]
    assert cases[0].location == "testcases/signs.xai.yaml:9"


def _check(value: float, threshold: float) -> dict:
    return {"name": "relevance on object", "metric": "mass_object", "value": value, "threshold": threshold,
            "op": ">=", "passed": value >= threshold}  # fmt: skip


def test_worst_cases_first_most_failed_variants_then_widest_miss():
    rows = [
        # "near": one failure, just below the threshold; "far": one failure, far below; "two": two failures.
        row("near", "original", "wrong_reasons", line=1, checks=[_check(0.49, 0.5)]),
        row("near", "sticker_added", line=1),
        row("far", "original", "wrong_reasons", line=5, checks=[_check(0.05, 0.5)]),
        row("two", "original", "wrong_reasons", line=9, checks=[_check(0.45, 0.5)]),
        row("two", "instance_removed", "false_positive", line=9),
        row("fine", "original", line=13),
    ]
    cases = build_report(rows).cases
    assert [case.case_id for case in cases] == ["two", "far", "near", "fine"]
    assert [case.failed for case in cases] == [2, 1, 1, 0]
    assert cases[1].margin == pytest.approx(0.45) and cases[2].margin == pytest.approx(0.01)


def test_variants_with_their_own_lines_stay_in_one_case():
    cases = build_report([row("a", "original", line=3), row("a", "sticker_added", line=7)]).cases
    assert len(cases) == 1
    assert cases[0].line == 3


def test_error_without_row_joins_its_case_when_unambiguous():
    crash = error_item("testcases/signs.xai.yaml::c1[sticker_added]", "RuntimeError: boom")
    cases = build_report([row("c1", "original"), crash]).cases
    assert len(cases) == 1
    assert [item.variant for item in cases[0].items] == ["original", "sticker_added"]


def test_duplicate_keys_are_made_unique():
    report = build_report([row(), row()])
    keys = [item.key for item in report.items]
    assert len(set(keys)) == 2


def test_meta_reads_timestamps_command_and_items():
    start = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    report = build_report(
        [row(), row("x", model="m2", device="cuda")],
        {
            "started": start.timestamp(),
            "finished": start.timestamp() + 75,
            "command": ["pytest", "-k", "x"],
            "versions": {"torch": "9.9"},
        },
    )
    meta = report.meta
    assert meta.duration_s == 75
    assert meta.command == "pytest -k x"
    assert meta.models == ["m1", "m2"]
    assert meta.devices == ["cpu", "cuda"]
    assert meta.versions["torch"] == "9.9"
    assert meta.started == start


def test_environment_versions_tolerate_missing_packages():
    versions = environment_versions()
    assert versions["python"]
    assert set(versions) >= {"harness", "torch", "zennit", "pytest"}
    assert versions["pytest"]  # installed here; the others may be None


def test_explainer_disagreements_per_case_and_in_the_summary():
    lrp, cam = "lrp/epsilon_plus_flat", "cam/gradcam"
    rows = [
        row("c1", "original", "passed", explainer=lrp),
        row("c1", "background_removed", "passed", explainer=lrp),
        row("c1", "original", "passed", explainer=cam),
        row("c1", "background_removed", "wrong_reasons", explainer=cam),
        # The same image under another model agrees: not a disagreement of m1's.
        row("c1", "background_removed", "passed", explainer=lrp, model="m2"),
        row("c1", "background_removed", "passed", explainer=cam, model="m2"),
        # A case judged by one explainer only has nobody to disagree with.
        row("c2", "original", "false_negative", explainer=lrp),
    ]
    report = build_report(rows)
    assert report.summary.disagreements == 1
    (found,) = report.disagreements
    assert (found.case_id, found.variant, found.model) == ("c1", "background_removed", "m1")
    assert found.verdicts == {cam: "wrong_reasons", lrp: "passed"}
    assert found.sentence() == (
        "explainers disagree: cam/gradcam says wrong reasons, lrp/epsilon_plus_flat says passed on background removed"
    )
    lines = {(c.case_id, c.model, c.explainer): c.disagreements for c in report.cases}
    assert lines[("c1", "m1", lrp)] == [found] and lines[("c1", "m1", cam)] == [found]
    assert lines[("c1", "m2", lrp)] == [] and lines[("c2", "m1", lrp)] == []


def test_the_payload_names_each_case_s_disagreeing_variants(tmp_path, payload_of):
    from harness.report import write_report

    rows = [
        row("c1", "original", "passed", explainer="lrp/epsilon_plus_flat"),
        row("c1", "original", "wrong_reasons", explainer="cam/gradcam"),
    ]
    cases = payload_of(write_report(rows, tmp_path / "r.html"))["cases"]
    assert [c["disagree"] for c in cases] == [
        [["original", [["cam/gradcam", "wrong_reasons"], ["lrp/epsilon_plus_flat", "passed"]]]]
    ] * 2
