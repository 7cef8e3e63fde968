"""End to end: ``--xai-baseline`` / ``--xai-baseline-save`` through pytester, with two
probe models whose verdicts are known by construction (tests/conftest.py): ``looks-at-object``
passes every variant; ``looks-at-background`` decides from the top-left corner, so it fails
the original (wrong reasons), the removed instance (false positive) and the removed
background (false negative), and passes the sticker with its relevance off the object."""

import csv

import pytest

SUITE = """\
model: {model}
defaults:
  label: thing
  variants:
    original: {{}}
    instance_removed: {{fill: mean}}
    background_removed: {{fill: grey}}
    sticker_added: {{size: 0.25}}
cases:
{cases}"""

CASE = """\
  - id: {case_id}
    image: scene.png
    object: {{mask: scene_mask.png}}
"""

VARIANTS = ("original", "instance_removed", "background_removed", "sticker_added")
RUN = ("-p", "no:cacheprovider", "-rA")


def suite(world, model="looks-at-object", cases=("scene",)):
    text = SUITE.format(model=model, cases="".join(CASE.format(case_id=c) for c in cases))
    world.makefile(".xai.yaml", signs=text)


def rows(world):
    with open(world.path / "reports" / "results.csv", newline="") as handle:
        return {(r["case_id"], r["variant"], r["model"]): r for r in csv.DictReader(handle)}


def baseline_line(result):
    return next(line for line in result.outlines if line.startswith("xai baseline:"))


def save(world, *args, path="base.parquet"):
    result = world.runpytest(*RUN, "--xai-baseline-save", path, *args)
    assert (world.path / path).is_file(), result.outlines[-20:]
    assert any(line.startswith("baseline saved:") for line in result.outlines)
    return result


@pytest.mark.parametrize("workers", [0, 2])
def test_pass_to_fail_and_a_mass_drop_are_regressions(world, workers):
    suite(world)
    save(world).assert_outcomes(passed=4)
    extra = ["-n", str(workers)] if workers else []
    result = world.runpytest(
        *RUN, *extra, "--xai-baseline", "base.parquet", "--xai-model", "looks-at-background", "--xai-report", "r.html"
    )
    result.assert_outcomes(failed=4)
    html = (world.path / "r.html").read_text()
    assert "4 items regressed, 0 improved, 0 unchanged" in html
    assert html.count('<tr class="baseline-regressed"') == 4
    # The baseline run's pictures are still there (assets/<model>/...): shown beside this run's.
    assert html.count('class="side-img"') == 8
    table = rows(world)
    for variant in VARIANTS:
        row = table[("scene", variant, "looks-at-background")]
        assert row["verdict"] == "regression" and row["passed"] == "False"
        assert row["regression_status"] == "regressed"
        assert row["baseline_verdict"] == "passed" and row["baseline_model"] == "looks-at-object"
    oracle = {v: table[("scene", v, "looks-at-background")]["oracle_verdict"] for v in VARIANTS}
    assert oracle == {
        "original": "wrong_reasons",
        "instance_removed": "false_positive",
        "background_removed": "false_negative",
        # Passes on its own, but the label's relevance left the object: a mass-drop regression.
        "sticker_added": "passed",
    }
    sticker = table[("scene", "sticker_added", "looks-at-background")]
    assert float(sticker["baseline_mass_object"]) == pytest.approx(1.0)
    assert float(sticker["delta_mass_object"]) == pytest.approx(-1.0)
    # The object is painted out: its relevance share is not compared.
    assert table[("scene", "instance_removed", "looks-at-background")]["delta_mass_object"] == ""
    assert baseline_line(result) == "xai baseline: 4 items regressed, 0 improved, 0 unchanged (against base.parquet)"
    result.stdout.fnmatch_lines(
        [
            "regression (baseline looks-at-object: passed): passed there, now false positive — false positive: "
            "instance removed*",
            "regression (baseline looks-at-object: passed): positive relevance on the object fell from 100 % to 0 %, "
            "by 100 points > 20 allowed (max_mass_drop) — passed: sticker added*",
            "*FAIL relevance on object against the baseline: delta_mass_object = -1.000 (required >= -0.200)",
            "regression: 4",
        ]
    )


def test_max_mass_drop_is_a_threshold(world):
    suite(world)
    save(world)
    result = world.runpytest(
        *RUN,
        "--xai-baseline",
        "base.parquet",
        "--xai-model",
        "looks-at-background",
        "--xai-threshold",
        "max_mass_drop=null",
    )
    result.assert_outcomes(failed=3, passed=1)
    sticker = rows(world)[("scene", "sticker_added", "looks-at-background")]
    assert sticker["verdict"] == "passed" and sticker["regression_status"] == "unchanged"
    assert baseline_line(result).startswith("xai baseline: 3 items regressed, 0 improved, 1 unchanged")


def test_improvements_are_reported_not_failed(world):
    suite(world, model="looks-at-background")
    save(world).assert_outcomes(failed=3, passed=1)
    result = world.runpytest(*RUN, "--xai-baseline", "base.parquet", "--xai-model", "looks-at-object")
    result.assert_outcomes(passed=4)
    assert result.ret == 0
    statuses = {key[1]: row["regression_status"] for key, row in rows(world).items()}
    # Three fail -> pass; the sticker passed before, but its relevance moved onto the object.
    assert statuses == dict.fromkeys(VARIANTS, "improved")
    assert baseline_line(result) == "xai baseline: 0 items regressed, 4 improved, 0 unchanged (against base.parquet)"
    original = rows(world)[("scene", "original", "looks-at-object")]
    assert original["message"].endswith(
        "; improved against the baseline (baseline looks-at-background: wrong reasons): it failed there, "
        "relevance on the object up 100 points"
    )


def test_unchanged_new_and_missing_items(world):
    suite(world, cases=("scene", "gone"))
    save(world).assert_outcomes(passed=8)
    suite(world, cases=("scene", "boxed"))
    result = world.runpytest(*RUN, "--xai-baseline", "base.parquet")
    result.assert_outcomes(passed=8)
    table = rows(world)
    assert {table[("scene", v, "looks-at-object")]["regression_status"] for v in VARIANTS} == {"unchanged"}
    assert {table[("boxed", v, "looks-at-object")]["regression_status"] for v in VARIANTS} == {"new"}
    assert table[("scene", "original", "looks-at-object")]["delta_mass_object"] == "0.0"
    assert baseline_line(result) == (
        "xai baseline: 0 items regressed, 0 improved, 4 unchanged, 4 new (not in the baseline), "
        "4 missing (in the baseline, not in this run: deselected, or gone from the suites) (against base.parquet)"
    )


def test_items_match_on_the_model_role_not_its_name(world):
    """Slot 0 is the first model of the run, slot 1 the second: swapping the models swaps
    what each slot is compared with."""
    suite(world)
    save(world, "--xai-model", "looks-at-object,looks-at-background").assert_outcomes(passed=5, failed=3)
    result = world.runpytest(
        *RUN, "--xai-baseline", "base.parquet", "--xai-model", "looks-at-background,looks-at-object"
    )
    table = rows(world)
    assert {table[("scene", v, "looks-at-background")]["regression_status"] for v in VARIANTS} == {"regressed"}
    assert {table[("scene", v, "looks-at-object")]["regression_status"] for v in VARIANTS} == {"improved"}
    assert {table[("scene", v, "looks-at-object")]["baseline_model"] for v in VARIANTS} == {"looks-at-background"}
    assert table[("scene", "original", "looks-at-object")]["model_slot"] == "1"
    result.assert_outcomes(passed=4, failed=4)


def test_errors_are_not_regressions(world):
    suite(world)
    save(world)
    world.makefile(
        ".xai.yaml",
        signs=SUITE.format(model="looks-at-object", cases=CASE.format(case_id="scene")).replace(
            "scene.png", "missing.png"
        ),
    )
    result = world.runpytest(*RUN, "--xai-baseline", "base.parquet")
    result.assert_outcomes(errors=4)
    table = rows(world)
    assert {row["verdict"] for row in table.values()} == {"error"}
    assert {row["regression_status"] for row in table.values()} == {"not_compared"}
    assert {row["baseline_verdict"] for row in table.values()} == {"passed"}
    assert "4 not compared (errors or skipped)" in baseline_line(result)


def test_a_csv_baseline_and_the_previous_results_table_serve_too(world):
    suite(world)
    save(world, path="base.csv")
    assert (world.path / "base.csv").read_text().startswith("# xai-harness-baseline version=1 ")
    result = world.runpytest(*RUN, "--xai-baseline", "base.csv", "--xai-model", "looks-at-background")
    result.assert_outcomes(failed=4)
    # Every results.parquet carries the marker: the last run's table is a baseline as it is.
    (world.path / "reports" / "results.parquet").rename(world.path / "previous.parquet")
    result = world.runpytest(*RUN, "--xai-baseline", "previous.parquet", "--xai-model", "looks-at-background")
    # Its rows say "regression", but what is compared is what the oracle said of the model
    # then (oracle_verdict): the same model again is unchanged.
    assert baseline_line(result).startswith("xai baseline: 0 items regressed, 0 improved, 4 unchanged")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: None, "missing.parquet: baseline file not found"),
        (
            lambda root: __import__("pandas").DataFrame({"a": [1]}).to_parquet(root / "missing.parquet"),
            "missing.parquet: not an xai-harness baseline",
        ),
    ],
)
def test_an_unusable_baseline_is_a_usage_error(world, make, expected):
    suite(world)
    make(world.path)
    result = world.runpytest(*RUN, "--xai-baseline", "missing.parquet")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --xai-baseline: *{expected}*"])


def test_a_baseline_that_cannot_be_written_fails_alone(world):
    suite(world)
    (world.path / "blocked").write_text("a file, not a folder")
    result = world.runpytest(*RUN, "--xai-baseline-save", "blocked/base.parquet")
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["xai: baseline not written: *blocked*base.parquet*"])
