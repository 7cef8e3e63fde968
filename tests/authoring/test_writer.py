"""Suite text: the scaffold, appending as text, id de-duplication, long polygons."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.authoring.drafts import CaseDraft, RegionDraft, sanitise_id, unique_ids
from harness.authoring.validate import validate_suite
from harness.authoring.writer import SuiteHead, write_suite
from harness.errors import HarnessError
from harness.models import load_registry
from harness.perturb import VARIANTS
from harness.spec import DEFAULT_THRESHOLDS, load_suite

EXISTING = """\
# A suite an expert wrote by hand. Keep this comment!
model: pets
defaults:
  label: canine   # every case is a dog
cases:
- id: first      # the one from the meeting
  image: img.png
  object: {box: [1, 1, 10, 10]}

# trailing comment that belongs to the list
"""

WITH_LATER_KEY = """\
model: pets
cases:
    - id: first
      image: img.png
      label: canine
      object: {box: [1, 1, 10, 10]}
# the explainer comes last in this file
explainer: lrp/epsilon_gamma_box
"""


def _case(tmp_path: Path, case_id: str = "new case!", **kwargs) -> CaseDraft:
    return CaseDraft(
        id=case_id, image=tmp_path / "img.png", label="canine", regions=[RegionDraft("box", (2, 2, 12, 12))], **kwargs
    )


def test_ids_are_sanitised_and_unique() -> None:
    assert sanitise_id("2008_000123 (copy).jpg #1") == "2008_000123_copy_jpg_1"
    assert sanitise_id("???") == "case"
    assert unique_ids(["a", "a", "a b", "first"], taken=["first"]) == ["a", "a_2", "a_b", "first_2"]


def test_scaffold_spells_out_every_default(tmp_path: Path, write_image, registry: Path) -> None:
    write_image(tmp_path / "img.png")
    suite = tmp_path / "new.xai.yaml"
    write_suite(suite, [_case(tmp_path)], SuiteHead(model="pets", schema="../docs/suite.schema.json"))
    text = suite.read_text()
    assert text.startswith("# yaml-language-server: $schema=../docs/suite.schema.json\n")
    spec = load_suite(suite)
    assert spec.error is None and not spec.cases[0].errors
    case = spec.cases[0]
    assert case.case_id == "new_case"
    assert [v.name for v in case.variants] == list(VARIANTS)
    assert case.variants[0].thresholds == DEFAULT_THRESHOLDS
    for variant in case.variants:  # written-out defaults equal the built-in ones
        assert variant.settings == VARIANTS[variant.name].settings()
    assert validate_suite(suite, load_registry(registry))[1] == []


def test_append_keeps_the_text(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "img.png")
    suite = tmp_path / "hand.xai.yaml"
    suite.write_text(EXISTING)
    result = write_suite(
        suite, [_case(tmp_path, "first"), _case(tmp_path, "second", xfail="known issue")], SuiteHead(model=None)
    )
    assert result.appended and result.ids == ["first_2", "second"]
    text = suite.read_text()
    assert text.startswith(EXISTING.split("\n# trailing")[0])
    assert "# trailing comment that belongs to the list" in text
    spec = load_suite(suite)
    assert [c.case_id for c in spec.cases] == ["first", "first_2", "second"]
    assert spec.cases[2].xfail == "known issue"
    assert all(not c.errors for c in spec.cases)
    assert "- id: first_2\n" in text  # the file's own indentation (items at column 0)


def test_append_before_a_later_key(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "img.png")
    suite = tmp_path / "later.xai.yaml"
    suite.write_text(WITH_LATER_KEY)
    write_suite(suite, [_case(tmp_path, "second")], SuiteHead(model=None))
    text = suite.read_text()
    spec = load_suite(suite)
    assert [c.case_id for c in spec.cases] == ["first", "second"] and spec.explainer == "lrp/epsilon_gamma_box"
    assert text.index("- id: second") < text.index("# the explainer comes last")
    assert "    - id: second\n      image: img.png\n" in text


@pytest.mark.parametrize(
    "content, message",
    [
        ("model: pets\ncases: [{id: a, image: img.png, object: {box: [1, 1, 2, 2]}}]\n", "flow-style"),
        ("model: pets\ncases:\n  - id: a\n   image: b\n", "syntax error"),
        ("just: a mapping\n", "not a suite"),
    ],
)
def test_append_refuses_what_it_cannot_extend(tmp_path: Path, content: str, message: str) -> None:
    suite = tmp_path / "odd.xai.yaml"
    suite.write_text(content)
    with pytest.raises(HarnessError, match=message):
        write_suite(suite, [_case(tmp_path)], SuiteHead(model=None))
    assert suite.read_text() == content


def test_long_polygons_wrap_and_parse_back(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "img.png", 200, 200)
    points = [(100 + 80 * math.cos(a / 10), 100 + 80 * math.sin(a / 10)) for a in range(63)]
    suite = tmp_path / "poly.xai.yaml"
    case = CaseDraft(
        id="ring",
        image=tmp_path / "img.png",
        label="canine",
        regions=[RegionDraft("polygon", points), RegionDraft("box", (0, 0, 5, 5))],
    )
    write_suite(suite, [case], SuiteHead(model="pets"))
    case_text = suite.read_text().split("cases:\n", 1)[1]
    assert len(case_text.splitlines()) > 8 and max(len(line) for line in case_text.splitlines()) <= 100
    spec = load_suite(suite)
    assert not spec.cases[0].errors
    written = spec.cases[0].regions[0].polygon
    assert len(written) == 63 and all(abs(a - b) < 0.01 for p, q in zip(written, points) for a, b in zip(p, q))
