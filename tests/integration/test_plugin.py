"""End-to-end runs of the plugin through pytester, with probe models whose right and
wrong answers are known by construction."""

import re
import xml.etree.ElementTree as ET

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
  - id: scene
    image: scene.png
    object: {{mask: scene_mask.png}}
  - id: boxed
    image: scene.png
    object: {{box: [10, 10, 22, 22]}}
"""


def outcomes_by_item(result):
    """{'scene[original]': 'passed', ...} from the -rA short summary."""
    out = {}
    for line in result.outlines:
        for word in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL"):
            if line.startswith(word + " "):
                nodeid = line.split(" ")[1]
                out[nodeid.split("::")[-1]] = word.lower()
    return out


def test_object_model_passes_every_variant(world, results_rows):
    world.makefile(".xai.yaml", signs=SUITE.format(model="looks-at-object"))
    result = world.runpytest("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    rows = results_rows(world.path)
    assert len(rows) == 8
    assert {r["verdict"] for r in rows} == {"passed"}
    original = next(r for r in rows if r["case_id"] == "scene" and r["variant"] == "original")
    assert float(original["mass_object"]) == pytest.approx(1.0)
    assert original["predicted"] == "thing" and original["model"] == "looks-at-object"


def test_background_model_is_caught(world, results_rows):
    world.makefile(".xai.yaml", signs=SUITE.format(model="looks-at-background"))
    result = world.runpytest("-rA", "-p", "no:cacheprovider")
    outcomes = outcomes_by_item(result)
    assert outcomes == {
        "scene[original]": "failed",
        "scene[instance_removed]": "failed",
        "scene[background_removed]": "failed",
        "scene[sticker_added]": "passed",
        "boxed[original]": "failed",
        "boxed[instance_removed]": "failed",
        "boxed[background_removed]": "failed",
        "boxed[sticker_added]": "passed",
    }
    verdicts = {(r["case_id"], r["variant"]): r["verdict"] for r in results_rows(world.path)}
    assert verdicts[("scene", "original")] == "wrong_reasons"
    assert verdicts[("scene", "instance_removed")] == "false_positive"
    assert verdicts[("scene", "background_removed")] == "false_negative"
    result.stdout.fnmatch_lines(
        [
            "false positive: instance removed, model still predicts thing (p=0.73); positive relevance for thing "
            "inside removed region 0 %, outside 100 % (lrp/epsilon_plus_flat) — signs.xai.yaml:10",
            "*FAIL label not predicted without the object: predicted = thing (required != thing)",
            ">   10 |   - id: scene",
        ]
    )


def test_model_option_overrides_the_suite(world):
    world.makefile(".xai.yaml", signs=SUITE.format(model="looks-at-background"))
    result = world.runpytest("--xai-model", "looks-at-object", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


def test_keyword_selects_single_items(world, results_rows):
    world.makefile(".xai.yaml", signs=SUITE.format(model="looks-at-background"))
    result = world.runpytest("-k", "scene and instance_removed", "-rA", "-p", "no:cacheprovider")
    assert outcomes_by_item(result) == {"scene[instance_removed]": "failed"}
    assert len(results_rows(world.path)) == 1


def test_sticker_that_flips_the_prediction_is_artifact_reliance(world):
    world.makefile(
        ".xai.yaml",
        signs="""\
model: two-corners
defaults: {label: thing}
cases:
  - id: dark
    image: scene.png
    object: {mask: scene_mask.png}
    variants:
      sticker_added: {position: top_left, size: 0.35, relative_to: image, color: [0, 0, 0]}
""",
    )
    # "thing" is read from the bright top-left corner; a black sticker there flips the
    # prediction to "other", whose evidence is the bottom-right corner.
    result = world.runpytest("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["artifact reliance: sticker added, prediction changes from thing to other*"])
    # Two images (the sticker's comparison needs the original's prediction); the
    # flipped sticker row gets a second pass for the predicted class's relevance.
    result.stdout.fnmatch_lines(["2 images in 1 batches (3 LRP rows)*"])


def test_broken_cases_fail_alone(world, results_rows):
    world.makefile(
        ".xai.yaml",
        signs="""\
model: looks-at-object
defaults:
  label: thing
  variants: [original, instance_removed]
cases:
  - id: good
    image: scene.png
    object: {mask: scene_mask.png}
  - id: missing_image
    image: nothere.png
    object: {mask: scene_mask.png}
  - id: small_mask
    image: scene.png
    object: {mask: small_mask.png}
  - id: odd_variant
    image: scene.png
    object: {mask: scene_mask.png}
    variants: [original, blurred]
  - id: zebra
    image: scene.png
    label: zebra
    object: {mask: scene_mask.png}
""",
    )
    world.makefile(".xai.yaml", other="model: looks-at-object\ncases:\n  - id: [unclosed\n")
    result = world.runpytest("-rA", "-p", "no:cacheprovider")
    outcomes = outcomes_by_item(result)
    assert outcomes["good[original]"] == outcomes["good[instance_removed]"] == "passed"
    assert outcomes["odd_variant[original]"] == "passed"
    for name in (
        "missing_image[original]",
        "missing_image[instance_removed]",
        "small_mask[original]",
        "odd_variant[blurred]",
        "zebra[original]",
        "other.xai.yaml",
    ):
        assert outcomes[name] == "error", name
    text = result.stdout.str()
    for expected in (
        "signs.xai.yaml:10: cases[1].image: image file not found: nothere.png",
        "signs.xai.yaml:12: mask ",
        "small_mask.png is 16x16 (w x h) but the image is 32x32",
        "signs.xai.yaml:18: cases[3].variants.blurred: unknown variant 'blurred'; allowed values: original, "
        "instance_removed, background_removed, sticker_added",
        "signs.xai.yaml:21: cases[4].label: unknown class 'zebra' for model 'looks-at-object'; allowed values: "
        "thing, other",
        "invalid suite: other.xai.yaml:3: YAML syntax error",
    ):
        assert expected in text, expected
    assert "During handling of the above exception" not in text
    rows = results_rows(world.path)
    assert len(rows) == 11  # every item of signs.xai.yaml, broken ones as 'error', and the broken file's row
    assert sum(r["verdict"] == "error" for r in rows) == 8
    assert any(r["suite"] == "other.xai.yaml" and r["line"] == "3" and r["verdict"] == "error" for r in rows)


def test_empty_object_region_is_an_error_of_the_case(world):
    world.makefile(
        ".xai.yaml",
        signs="""\
model: looks-at-object
defaults: {label: thing, variants: [original]}
cases:
  - {id: outside, image: scene.png, object: {box: [40, 40, 50, 50]}}
""",
    )
    result = world.runpytest("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*object region is empty*"])


def test_skip_xfail_and_tags(world, results_rows):
    world.makefile(
        ".xai.yaml",
        signs="""\
model: looks-at-background
defaults: {label: thing, variants: [instance_removed]}
cases:
  - {id: a, image: scene.png, object: {mask: scene_mask.png}, skip: "annotation under review"}
  - {id: b, image: scene.png, object: {mask: scene_mask.png}, xfail: "known shortcut", tags: [regression]}
""",
    )
    result = world.runpytest("-rA", "-p", "no:cacheprovider", "-m", "regression or not regression")
    result.assert_outcomes(skipped=1, xfailed=1)
    rows = {r["case_id"]: r for r in results_rows(world.path)}
    assert rows["a"]["verdict"] == "skipped" and rows["b"]["verdict"] == "false_positive"


def test_junit_properties_and_pictures(world, results_rows):
    world.makefile(".xai.yaml", signs=SUITE.format(model="looks-at-background"))
    world.runpytest("--junitxml=junit.xml", "-p", "no:cacheprovider")
    tree = ET.parse(world.path / "junit.xml")
    case = next(tc for tc in tree.iter("testcase") if tc.get("name") == "scene[instance_removed]")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["xai.verdict"] == "false_positive" and props["xai.model"] == "looks-at-background"
    assert float(props["xai.mass_removed"]) == pytest.approx(0.0)
    row = next(r for r in results_rows(world.path) if r["variant"] == "sticker_added")
    import json

    images = json.loads(row["images"])
    for kind in ("input", "annotated", "heatmap", "overlay"):
        assert (world.path / "reports" / "assets").exists()
        assert images[kind].endswith(f"_{kind}.png")


def test_batches_are_planned_not_per_item(world):
    world.makefile(".xai.yaml", signs=SUITE.format(model="looks-at-object"))
    result = world.runpytest("-p", "no:cacheprovider", "--xai-batch-size", "3")
    # instance_removed flips to "other" in both cases, but only a sticker verdict reads
    # the predicted class's relevance, so no row needs a second pass.
    result.stdout.fnmatch_lines(["8 images in 3 batches (8 LRP rows)*"])


def test_xdist_workers_share_the_work_and_the_controller_writes_results(world, results_rows):
    world.makefile(".xai.yaml", signs=SUITE.format(model="looks-at-background"))
    result = world.runpytest(
        "-n", "2", "-v", "-p", "no:cacheprovider", "--xai-batch-size", "4", "--junitxml=parallel.xml"
    )
    result.assert_outcomes(passed=2, failed=6)
    rows = results_rows(world.path)
    assert len(rows) == 8
    # Workers send rows packed (harness.plugin); the controller restores exactly the
    # user properties a serial run has.
    world.runpytest("-p", "no:cacheprovider", "--xai-batch-size", "4", "--junitxml=serial.xml")

    def properties(name):
        cases = ET.parse(world.path / name).getroot().iter("testcase")
        return {case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")] for case in cases}

    def comparable(value):
        # One torch thread per worker against two: the last float digits may differ.
        try:
            return round(float(value), 5)
        except ValueError:
            return value

    parallel, serial = properties("parallel.xml"), properties("serial.xml")
    assert len(serial) == 8 and all(len(props) > 20 for props in serial.values())
    assert {case: [(n, comparable(v)) for n, v in props] for case, props in parallel.items()} == {
        case: [(n, comparable(v)) for n, v in props] for case, props in serial.items()
    }
    assert sorted(r["verdict"] for r in rows).count("false_positive") == 2
    # A batch of 4 is one case per work unit: each case's four items run on one worker.
    workers: dict[str, set[str]] = {}
    for line in result.outlines:
        match = re.match(r"\[(gw\d)\] .*(PASSED|FAILED) .*::(\w+)\[", line)
        if match:
            workers.setdefault(match.group(3), set()).add(match.group(1))
    assert sorted(workers) == ["boxed", "scene"]
    assert all(len(ws) == 1 for ws in workers.values()), workers


def test_plugin_does_not_import_torch_for_sessions_without_suites(pytester):
    # The plugin is installed for every pytest run of the environment; a project's
    # ordinary tests should not pay for importing torch.
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain():
            assert "harness.plugin" in sys.modules
            assert "torch" not in sys.modules
    """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_backend_per_model_is_announced_once_and_zennit_takes_over_what_the_fast_engine_lacks(world, results_rows):
    world.makefile(".xai.yaml", signs=SUITE.format(model="wrapped-object"), fast=SUITE.format(model="looks-at-object"))
    result = world.runpytest("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=16)
    # Same network, same verdicts, whichever backend explains it.
    rows = results_rows(world.path)
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[(row["case_id"], row["variant"])] = row["verdict"]
    assert by_model["wrapped-object"] == by_model["looks-at-object"]
    text = result.stdout.str()
    assert "xai: looks-at-object / lrp/epsilon_plus_flat: fast" in text
    fallback = "xai: wrapped-object / lrp/epsilon_plus_flat: zennit — fast LRP does not cover model 'wrapped-object'"
    assert text.count(fallback) == 1
    assert "note: " not in text  # said in the header, not again in the summary


def test_under_xdist_the_summary_gathers_the_workers_notes_and_counts(world):
    world.makefile(".xai.yaml", signs=SUITE.format(model="wrapped-object"))
    result = world.runpytest("-n", "2", "-p", "no:cacheprovider", "--xai-batch-size", "4")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        [
            "note: wrapped-object / lrp/epsilon_plus_flat: zennit — fast LRP does not cover model 'wrapped-object'*",
            "8 images in 2 batches (8 LRP rows) on 2 workers*",
        ]
    )
    assert result.stdout.str().count("note: wrapped-object") == 1
