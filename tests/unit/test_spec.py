"""Schema validation: defaults, overrides and located error messages."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.perturb import InstanceRemovedSettings, StickerAddedSettings
from harness.spec import DEFAULT_THRESHOLDS, check_labels, load_suite, suite_json_schema


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    cv2.imwrite(str(tmp_path / "a_mask.png"), mask)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "s.xai.yaml"
    path.write_text(text)
    return path


def errors_of(suite):
    out = [e.format() for case in suite.cases for e in case.errors]
    out += [e.format() for case in suite.cases for v in case.variants for e in v.errors]
    return out


def test_defaults_cases_and_variants_merge_in_order(folder):
    suite = load_suite(write(folder, """\
model: m
defaults:
  label: cat
  thresholds: {min_object_mass: 0.4, max_sticker_share: 0.2}
  variants:
    original: {}
    instance_removed: {fill: blur, dilate: 4}
    sticker_added: {size: 0.3, thresholds: {max_sticker_share: 0.25}}
cases:
  - id: one
    image: a.png
    object: {mask: a_mask.png}
  - id: two
    image: a.png
    label: dog
    object: {box: [1, 1, 5, 5]}
    thresholds: {min_object_mass: 0.6}
    variants:
      instance_removed: {fill: grey}
      sticker_added: {thresholds: {max_sticker_share: 0.5}}
"""))
    assert suite.error is None and suite.models == ["m"] and suite.explainer == "lrp/epsilon_plus_flat"
    one, two = suite.cases
    assert errors_of(suite) == []
    assert [v.name for v in one.variants] == ["original", "instance_removed", "sticker_added"]
    assert one.label == "cat" and two.label == "dog"
    assert one.variants[0].thresholds == {**DEFAULT_THRESHOLDS, "min_object_mass": 0.4, "max_sticker_share": 0.2}
    assert one.variants[1].settings == InstanceRemovedSettings(fill="blur", dilate=4)
    assert one.variants[2].thresholds["max_sticker_share"] == 0.25
    # The case chooses its variants; each one's settings merge over the defaults.
    assert [v.name for v in two.variants] == ["instance_removed", "sticker_added"]
    assert two.variants[0].settings == InstanceRemovedSettings(fill="grey", dilate=4)
    assert two.variants[1].settings == StickerAddedSettings(size=0.3)
    assert two.variants[1].thresholds["max_sticker_share"] == 0.5
    assert two.variants[1].thresholds["min_object_mass"] == 0.6
    assert two.image == (folder / "a.png").resolve()


def test_all_four_variants_by_default_and_list_form(folder):
    suite = load_suite(write(folder, """\
model: m
defaults: {label: cat}
cases:
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4]}}
  - {id: b, image: a.png, object: {box: [0, 0, 4, 4]}, variants: [original, {sticker_added: {shape: circle}}]}
"""))
    assert [v.name for v in suite.cases[0].variants] == ["original", "instance_removed", "background_removed",
                                                          "sticker_added"]
    assert [v.name for v in suite.cases[1].variants] == ["original", "sticker_added"]
    assert suite.cases[1].variants[1].settings.shape == "circle"


def test_unknown_key_names_line_field_and_allowed_keys(folder):
    suite = load_suite(write(folder, """\
model: m
defaults: {label: cat}
cases:
  - id: ok
    image: a.png
    object: {box: [0, 0, 4, 4]}
  - id: bad
    image: a.png
    colour: red
    object: {box: [0, 0, 4, 4]}
"""))
    assert suite.cases[0].errors == []
    (error,) = suite.cases[1].errors
    assert error.line == 9 and error.field == "cases[1].colour"
    assert "unknown key 'colour'" in error.message and "allowed keys: id, image, label" in error.message


def test_wrong_type_unknown_variant_and_bad_setting(folder):
    suite = load_suite(write(folder, """\
model: m
defaults: {label: cat}
cases:
  - id: a
    image: a.png
    object: {box: [0, 0, 4, 4]}
    thresholds: {min_object_mass: high}
  - id: b
    image: a.png
    object: {box: [0, 0, 4, 4]}
    variants:
      original: {}
      blurred: {}
      instance_removed: {fill: magic}
"""))
    assert "cases[0].thresholds.min_object_mass" in suite.cases[0].errors[0].format()
    assert ":7:" in suite.cases[0].errors[0].format()
    variants = {v.name: v for v in suite.cases[1].variants}
    assert variants["original"].errors == []
    assert "unknown variant 'blurred'; allowed values: original, instance_removed" in variants["blurred"].errors[0].format()
    fill = variants["instance_removed"].errors[0]
    assert fill.line == 14 and "'inpaint_telea'" in fill.message and "(got 'magic')" in fill.message


def test_missing_files_and_missing_label(folder):
    suite = load_suite(write(folder, """\
model: m
cases:
  - id: a
    image: nope.png
    object: {mask: nomask.png}
"""))
    messages = [e.format() for e in suite.cases[0].errors]
    assert any("cases[0].label: no label" in m for m in messages)
    assert any(":4: cases[0].image: image file not found: nope.png" in m for m in messages)
    assert any(":5: cases[0].object.mask: mask file not found: nomask.png" in m for m in messages)


def test_region_needs_exactly_one_shape_and_valid_box(folder):
    suite = load_suite(write(folder, """\
model: m
defaults: {label: cat}
cases:
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4], polygon: [[0, 0], [1, 1], [2, 0]]}}
  - {id: b, image: a.png, object: {box: [5, 5, 1, 1]}}
"""))
    assert "exactly one of 'mask', 'polygon' or 'box'" in suite.cases[0].errors[0].message
    assert "x1 > x0" in suite.cases[1].errors[0].message


def test_duplicate_ids_are_reported(folder):
    suite = load_suite(write(folder, """\
model: m
defaults: {label: cat}
cases:
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4]}}
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4]}}
"""))
    assert suite.cases[0].errors == []
    assert "duplicate case id 'a'" in suite.cases[1].errors[0].message


def test_syntax_and_header_errors_are_suite_errors(folder):
    syntax = load_suite(write(folder, "model: m\ncases:\n  - id: [unclosed\n"))
    assert syntax.error is not None and "YAML syntax error" in syntax.error.message and syntax.error.line
    header = load_suite(write(folder, "modle: m\ncases: []\n"))
    assert "unknown key 'modle'" in header.error.format()


def test_check_labels_lists_allowed_classes(folder):
    suite = load_suite(write(folder, "model: m\ncases:\n  - {id: a, image: a.png, label: zebra, object: {box: [0, 0, 4, 4]}}\n"))
    check_labels(suite, ["cat", "dog"], "m")
    assert "unknown class 'zebra' for model 'm'; allowed values: cat, dog" in suite.cases[0].errors[0].message


def test_json_schema_lists_variants_and_thresholds():
    schema = suite_json_schema()
    assert schema["properties"]["cases"]["items"] == {"$ref": "#/$defs/CaseModel"}
    assert "StickerAddedSettings" in schema["$defs"] and "Thresholds" in schema["$defs"]


def test_shipped_json_schema_is_current():
    import json

    shipped = Path(__file__).resolve().parents[2] / "docs" / "suite.schema.json"
    assert json.loads(shipped.read_text()) == suite_json_schema(), \
        "regenerate with: python -m harness schema --output docs/suite.schema.json"
