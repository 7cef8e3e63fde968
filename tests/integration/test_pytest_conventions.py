"""pytest's everyday conventions on suite items: --lf, --ff, --sw, ids printed by -v
that select exactly their item when pasted back, and xfail_strict.

Each run goes through pytester with the cache on (the conventions live in it); the
probe model that looks at the background fails the first three variants of every
case and passes the sticker, by construction (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import re

import pytest

from harness.report.render import decode_payload

SUITE = """\
model: looks-at-background
defaults:
  label: thing
  thresholds: {min_object_mass: 0.5}
  variants:
    sticker_added: {size: 0.25}
    original: {}
    instance_removed: {fill: mean}
cases:
  - id: scene
    image: scene.png
    object: {mask: scene_mask.png}
  - id: img.001
    image: scene.png
    object: {box: [10, 10, 22, 22]}
"""

# -v prints "<nodeid> <OUTCOME>" (followed by a progress percentage).
_VERBOSE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def ran(result: pytest.RunResult) -> list[tuple[str, str]]:
    """(node id, outcome) of every item a -v run reported, in run order."""
    out = []
    for line in result.outlines:
        match = _VERBOSE.match(line)
        if match:
            out.append((match.group(1), match.group(2).lower()))
    return out


FAILING = [
    "signs.xai.yaml::scene[original]",
    "signs.xai.yaml::scene[instance_removed]",
    "signs.xai.yaml::img.001[original]",
    "signs.xai.yaml::img.001[instance_removed]",
]
PASSING = ["signs.xai.yaml::scene[sticker_added]", "signs.xai.yaml::img.001[sticker_added]"]


@pytest.fixture
def suite(world: pytest.Pytester) -> pytest.Pytester:
    world.makefile(".xai.yaml", signs=SUITE)
    return world


def test_verbose_ids_are_node_ids(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-v", "-p", "no:cacheprovider")
    assert sorted(ran(result)) == sorted([(i, "failed") for i in FAILING] + [(i, "passed") for i in PASSING])
    assert "::xai::yaml" not in result.stdout.str()


@pytest.mark.parametrize("nodeid", ["signs.xai.yaml::scene[original]", "signs.xai.yaml::img.001[sticker_added]"])
def test_a_printed_id_pasted_back_selects_exactly_its_item(suite: pytest.Pytester, nodeid: str) -> None:
    first = suite.runpytest("-v", "-p", "no:cacheprovider")
    assert nodeid in dict(ran(first))
    again = suite.runpytest("-v", "-p", "no:cacheprovider", nodeid)
    assert [item for item, _ in ran(again)] == [nodeid]


def test_a_case_id_without_variant_selects_the_cases_items(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-v", "-p", "no:cacheprovider", "signs.xai.yaml::scene")
    assert sorted(item for item, _ in ran(result)) == sorted(i for i in FAILING + PASSING if "::scene[" in i)


def test_last_failed_reruns_only_the_failures(suite: pytest.Pytester) -> None:
    first = suite.runpytest("-v")
    assert len(ran(first)) == 6
    again = suite.runpytest("-v", "--lf")
    assert sorted(ran(again)) == sorted((i, "failed") for i in FAILING)
    again.stdout.fnmatch_lines(["run-last-failure: rerun previous 4 failures*"])
    # Now the model looks at the object: the failures pass, and --lf has nothing left.
    fixed = suite.runpytest("-v", "--lf", "--xai-model", "looks-at-object")
    assert sorted(ran(fixed)) == sorted((i, "passed") for i in FAILING)
    after = suite.runpytest("-v", "--lf", "--xai-model", "looks-at-object")
    after.stdout.fnmatch_lines(["run-last-failure: no previously failed tests*"])
    assert len(ran(after)) == 6


def test_failed_first_runs_the_failures_before_the_rest(suite: pytest.Pytester) -> None:
    suite.runpytest("-v")
    again = suite.runpytest("-v", "--ff")
    order = [item for item, _ in ran(again)]
    assert sorted(order[:4]) == sorted(FAILING) and sorted(order[4:]) == sorted(PASSING)
    again.stdout.fnmatch_lines(["run-last-failure: rerun previous 4 failures first*"])


def test_stepwise_resumes_at_the_item_that_failed(suite: pytest.Pytester) -> None:
    first = suite.runpytest("-v", "--sw")
    assert ran(first) == [
        ("signs.xai.yaml::scene[sticker_added]", "passed"),
        ("signs.xai.yaml::scene[original]", "failed"),
    ]
    # The failure is still there: the next run starts at it and stops at it.
    second = suite.runpytest("-v", "--sw")
    assert ran(second) == [("signs.xai.yaml::scene[original]", "failed")]
    second.stdout.fnmatch_lines(["*skipping 1 already passed items*"])
    # Fixed: the run resumes there and goes on to the end.
    third = suite.runpytest("-v", "--sw", "--xai-model", "looks-at-object")
    assert [item for item, _ in ran(third)][0] == "signs.xai.yaml::scene[original]"
    assert len(ran(third)) == 5 and {outcome for _, outcome in ran(third)} == {"passed"}


XFAIL_SUITE = """\
model: {model}
defaults: {{label: thing, variants: [instance_removed]}}
cases:
  - {{id: known, image: scene.png, object: {{mask: scene_mask.png}}, xfail: "known shortcut"}}
"""


@pytest.mark.parametrize(
    ("strict", "model", "outcomes"),
    [
        (None, "looks-at-background", {"xfailed": 1}),
        (None, "looks-at-object", {"xpassed": 1}),
        ("true", "looks-at-background", {"xfailed": 1}),
        ("true", "looks-at-object", {"failed": 1}),
    ],
)
def test_xfail_honours_xfail_strict(world: pytest.Pytester, strict: str | None, model: str, outcomes: dict) -> None:
    world.makefile(".xai.yaml", signs=XFAIL_SUITE.format(model=model))
    ini = "[pytest]\nxai_models = models.yaml\n" + (f"xfail_strict = {strict}\n" if strict else "")
    (world.path / "pytest.ini").write_text(ini)
    result = world.runpytest("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(**outcomes)
    if strict and "failed" in outcomes:
        result.stdout.fnmatch_lines(["*XPASS(strict)*known shortcut*"])


def test_xfail_and_input_errors_are_not_model_failures_in_summary_and_report(world: pytest.Pytester) -> None:
    world.makefile(
        ".xai.yaml",
        signs="""\
model: looks-at-background
defaults: {label: thing, variants: [instance_removed]}
cases:
  - {id: known, image: scene.png, object: {mask: scene_mask.png}, xfail: "known shortcut"}
  - {id: new, image: scene.png, object: {mask: scene_mask.png}}
  - {id: typo, image: scene.png, object: {mask: scene_mask.png}, label: thnig}
""",
    )
    result = world.runpytest("-rA", "-p", "no:cacheprovider", "--xai-report", "reports/index.html")
    result.assert_outcomes(failed=1, xfailed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "error: 1, false_positive: 1, xfailed: 1",
            "xai: 1 model failure(s); 1 item(s) could not be evaluated*; 1 marked xfail",
        ]
    )
    html = (world.path / "reports" / "index.html").read_text(encoding="utf-8")
    island = re.search(r'<script type="application/json" id="xai-data">(.*?)</script>', html, re.S)
    assert island is not None
    cases = decode_payload(json.loads(island.group(1)))["cases"]
    items = {it["nodeid"].split("::")[-1]: it for case in cases for it in case["items"]}
    # The pictures of a run are coloured per case from the saved relevance (not for the error: it has none).
    scales = {case["case_id"]: case["heatmap_scale"] for case in cases}
    assert scales["typo"] is None and scales["new"] > 0 and scales["known"] > 0
    assert "case-scale" in items["new[instance_removed]"]["images"]["heatmap"]
    assert {name: (it["group"], it["review"]) for name, it in items.items()} == {
        "known[instance_removed]": ("xfailed", False),
        "new[instance_removed]": ("false_positive", True),
        "typo[instance_removed]": ("error", False),
    }
