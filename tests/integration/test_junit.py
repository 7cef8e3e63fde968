"""JUnit XML that CI tools can read: each value of an item's row once, as plain text."""

import xml.etree.ElementTree as ET

import pytest

from harness.junit import junit_properties

SUITE = """\
model: looks-at-background
defaults:
  label: thing
  variants:
    original: {}
    instance_removed: {fill: mean}
cases:
  - id: scene
    image: scene.png
    object: {mask: scene_mask.png}
"""


def _properties(path):
    cases = ET.parse(path).getroot().iter("testcase")
    return {case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")] for case in cases}


def _check(props):
    names = [name for name, _ in props]
    assert len(names) == len(set(names)), "a property is written twice"
    assert all(name.startswith("xai.") for name in names)
    values = dict(props)
    assert not any(value.startswith(("{", "[")) or value == "None" for value in values.values())
    return values


# Under xdist (slow: starting workers) the controller writes what a serial run writes;
# test_plugin's xdist test compares the two files property by property on every run.
@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_junit_properties_are_plain_values(world, workers, tmp_path):
    world.makefile(".xai.yaml", signs=SUITE)
    extra = ["-n", str(workers)] if workers else []
    result = world.runpytest(
        "-p", "no:cacheprovider", "--junitxml=junit.xml", "--xai-report=reports/index.html", *extra
    )
    result.assert_outcomes(failed=2)
    props = _properties(world.path / "junit.xml")
    assert set(props) == {"scene[original]", "scene[instance_removed]"}
    removed = _check(props["scene[instance_removed]"])
    assert removed["xai.verdict"] == "false_positive"
    assert removed["xai.passed"] == "false"
    assert removed["xai.model"] == "looks-at-background"
    assert float(removed["xai.mass_removed"]) == pytest.approx(0.0)
    assert 0.0 <= float(removed["xai.p_predicted"]) <= 1.0
    assert removed["xai.thresholds.max_sticker_share"] == "0.3"  # one level of nesting, flattened
    original = _check(props["scene[original]"])
    assert original["xai.verdict"] == "wrong_reasons" and original["xai.pointing_game"] in ("true", "false")
    # The HTML report still reads the whole row from the user properties.
    html = (world.path / "reports" / "index.html").read_text(encoding="utf-8")
    assert "false_positive" in html and "wrong_reasons" in html


def test_junit_properties_flatten_dicts_and_drop_repeats():
    row = {"verdict": "passed", "mass_object": 0.73, "passed": True, "sweep": None, "images": {"heatmap": "h.png"},
           "checks": [{"name": "x"}], "thresholds": {"min_object_mass": 0.5}, "nodeid": "a::b"}  # fmt: skip
    props = [("verdict", "passed"), ("mass_object", 0.73), ("owner", "team-a"), ("xai", row),
             ("xai_sanity", {"rank": 0.1, "passed": False})]  # fmt: skip
    assert junit_properties(props) == [
        ("owner", "team-a"),
        ("xai.verdict", "passed"),
        ("xai.mass_object", "0.73"),
        ("xai.passed", "true"),
        ("xai.thresholds.min_object_mass", "0.5"),
        ("xai_sanity.rank", "0.1"),
        ("xai_sanity.passed", "false"),
    ]
