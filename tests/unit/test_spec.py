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
    suite = load_suite(
        write(
            folder,
            """\
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
""",
        )
    )
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
    suite = load_suite(
        write(
            folder,
            """\
model: m
defaults: {label: cat}
cases:
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4]}}
  - {id: b, image: a.png, object: {box: [0, 0, 4, 4]}, variants: [original, {sticker_added: {shape: circle}}]}
""",
        )
    )
    assert [v.name for v in suite.cases[0].variants] == [
        "original",
        "instance_removed",
        "background_removed",
        "sticker_added",
    ]
    assert [v.name for v in suite.cases[1].variants] == ["original", "sticker_added"]
    assert suite.cases[1].variants[1].settings.shape == "circle"


def test_unknown_key_names_line_field_and_allowed_keys(folder):
    suite = load_suite(
        write(
            folder,
            """\
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
""",
        )
    )
    assert suite.cases[0].errors == []
    (error,) = suite.cases[1].errors
    assert error.line == 9 and error.field == "cases[1].colour"
    assert "unknown key 'colour'" in error.message and "allowed keys: id, image, label" in error.message


def test_wrong_type_unknown_variant_and_bad_setting(folder):
    suite = load_suite(
        write(
            folder,
            """\
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
""",
        )
    )
    assert "cases[0].thresholds.min_object_mass" in suite.cases[0].errors[0].format()
    assert ":7:" in suite.cases[0].errors[0].format()
    variants = {v.name: v for v in suite.cases[1].variants}
    assert variants["original"].errors == []
    message = variants["blurred"].errors[0].format()
    assert "unknown variant 'blurred'; allowed values: original, instance_removed" in message
    fill = variants["instance_removed"].errors[0]
    assert fill.line == 14 and "'inpaint_telea'" in fill.message and "(got 'magic')" in fill.message


def test_missing_files_and_missing_label(folder):
    suite = load_suite(
        write(
            folder,
            """\
model: m
cases:
  - id: a
    image: nope.png
    object: {mask: nomask.png}
""",
        )
    )
    messages = [e.format() for e in suite.cases[0].errors]
    assert any("cases[0].label: no label" in m for m in messages)
    assert any(":4: cases[0].image: image file not found: nope.png" in m for m in messages)
    assert any(":5: cases[0].object.mask: mask file not found: nomask.png" in m for m in messages)


def test_region_needs_exactly_one_shape_and_valid_box(folder):
    suite = load_suite(
        write(
            folder,
            """\
model: m
defaults: {label: cat}
cases:
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4], polygon: [[0, 0], [1, 1], [2, 0]]}}
  - {id: b, image: a.png, object: {box: [5, 5, 1, 1]}}
""",
        )
    )
    assert "exactly one of 'mask', 'polygon' or 'box'" in suite.cases[0].errors[0].message
    assert "x1 > x0" in suite.cases[1].errors[0].message


def test_duplicate_ids_are_reported(folder):
    suite = load_suite(
        write(
            folder,
            """\
model: m
defaults: {label: cat}
cases:
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4]}}
  - {id: a, image: a.png, object: {box: [0, 0, 4, 4]}}
""",
        )
    )
    assert suite.cases[0].errors == []
    assert "duplicate case id 'a'" in suite.cases[1].errors[0].message


@pytest.mark.parametrize("case_id", ["a::b", "a[1]", "x]", " a", "a\\tb"])
def test_ids_that_would_split_a_node_id_are_refused(folder, case_id):
    suite = load_suite(
        write(
            folder,
            f"""\
model: m
defaults: {{label: cat}}
cases:
  - {{id: "{case_id}", image: a.png, object: {{box: [0, 0, 4, 4]}}}}
  - {{id: fine.id-2_x, image: a.png, object: {{box: [0, 0, 4, 4]}}}}
""",
        )
    )
    assert len(suite.cases[0].errors) == 1
    message = suite.cases[0].errors[0].format()
    assert "node ids" in message and "s.xai.yaml:4: cases[0].id" in message
    assert suite.cases[1].errors == []


def test_syntax_and_header_errors_are_suite_errors(folder):
    syntax = load_suite(write(folder, "model: m\ncases:\n  - id: [unclosed\n"))
    assert syntax.error is not None and "YAML syntax error" in syntax.error.message and syntax.error.line
    header = load_suite(write(folder, "modle: m\ncases: []\n"))
    assert "unknown key 'modle'" in header.error.format()


def test_check_labels_lists_allowed_classes(folder):
    suite = load_suite(
        write(folder, "model: m\ncases:\n  - {id: a, image: a.png, label: zebra, object: {box: [0, 0, 4, 4]}}\n")
    )
    check_labels(suite, ["cat", "dog"], "m")
    assert "unknown class 'zebra' for model 'm'; allowed values: cat, dog" in suite.cases[0].errors[0].message


def test_json_schema_lists_variants_and_thresholds():
    schema = suite_json_schema()
    assert schema["properties"]["cases"]["items"] == {"$ref": "#/$defs/CaseModel"}
    assert "StickerAddedSettings" in schema["$defs"] and "Thresholds" in schema["$defs"]


def test_shipped_json_schema_is_current():
    import json

    shipped = Path(__file__).resolve().parents[2] / "docs" / "suite.schema.json"
    assert json.loads(shipped.read_text()) == suite_json_schema(), (
        "regenerate with: python -m harness schema --output docs/suite.schema.json"
    )


# ------------------------------------------------------------------ input-side reliability (issue 10)

CASE = """\
model: m
defaults: {label: cat}
cases:
  - id: a
    image: a.png
"""


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("{polygon: [[.nan, 1], [10, 1], [10, 10]]}", "coordinates must be finite numbers (got nan)"),
        ("{polygon: [[1, 1], [-.inf, 1], [10, 10]]}", "coordinates must be finite numbers (got -inf)"),
        ("{box: [0, 0, .inf, 10]}", "coordinates must be finite numbers (got inf)"),
        ("{box: [.nan, 0, 10, 10]}", "coordinates must be finite numbers (got nan)"),
        (
            "{polygon: [[1, 1], [1.0e+7, 1], [10, 10]]}",
            "coordinate 10000000.0 is out of range (at most 1000000 pixels)",
        ),
    ],
)
def test_non_finite_or_huge_coordinates_are_located_errors(folder, region, message):
    field = "polygon" if "polygon" in region else "box"
    suite = load_suite(write(folder, CASE + f"    object: {region}\n"))
    assert errors_of(suite) == [f"{folder / 's.xai.yaml'}:6: cases[0].object.{field}: {message}"]


@pytest.mark.parametrize("empty", ["[]", "{}"])
def test_empty_variants_are_located_errors_not_a_dropped_case(folder, empty):
    in_case = load_suite(write(folder, CASE + f"    object: {{box: [1, 1, 5, 5]}}\n    variants: {empty}\n"))
    assert in_case.cases[0].variants == []
    assert errors_of(in_case) == [
        f"{folder / 's.xai.yaml'}:7: cases[0].variants: no variants: list at least one "
        f"of original, instance_removed, background_removed, sticker_added (or leave the "
        f"key out for all of them)"
    ]
    in_defaults = load_suite(
        write(
            folder,
            CASE.replace("{label: cat}", f"{{label: cat, variants: {empty}}}") + "    object: {box: [1, 1, 5, 5]}\n",
        )
    )
    assert [e.split(": ", 1)[1] for e in errors_of(in_defaults)][0].startswith("defaults.variants: no variants")


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ("sticker_added: {color: [300, -5, 0]}", "sticker_added.color[0]", "less than or equal to 255 (got 300)"),
        ("sticker_added: {seed: -1}", "sticker_added.seed", "greater than or equal to 0 (got -1)"),
        ("instance_removed: {fill: noise, seed: -3}", "instance_removed.seed", "greater than or equal to 0 (got -3)"),
        ("background_removed: {fill: noise, seed: -1}", "background_removed.seed", "greater than or equal to 0"),
        ("background_removed: {fill: blur, blur_sigma: .nan}", "background_removed.blur_sigma", "finite number"),
        ("sticker_added: {size: .inf}", "sticker_added.size", "finite number"),
        ("sticker_added: {position: [1, 99999999]}", "sticker_added.position[1]", "less than or equal to 1000000"),
        ("sticker_added: {image: ''}", "sticker_added.image", "at least 1 character"),
    ],
)
def test_variant_settings_out_of_range_are_located_errors(folder, settings, field, message):
    suite = load_suite(write(folder, CASE + f"    object: {{box: [1, 1, 5, 5]}}\n    variants:\n      {settings}\n"))
    prefix = f"{folder / 's.xai.yaml'}:8: cases[0].variants.{field}: "
    assert any(e.startswith(prefix) and message in e for e in errors_of(suite)), errors_of(suite)


def test_sticker_colour_bounds_are_inclusive():
    assert StickerAddedSettings(color=(0, 255, 128)).color == (0, 255, 128)
    with pytest.raises(ValueError):
        StickerAddedSettings(color=(256, 0, 0))


@pytest.mark.parametrize("tag", ["_private", "a: b", "two words", "and", "9lives", ""])
def test_tags_must_be_words_pytest_can_select(folder, tag):
    suite = load_suite(write(folder, CASE + f"    object: {{box: [1, 1, 5, 5]}}\n    tags: [{tag!r}]\n"))
    assert errors_of(suite) == [
        f"{folder / 's.xai.yaml'}:7: cases[0].tags: tag {tag!r} is not a word pytest -m can "
        f"select: use letters, digits, '_' and '-', starting with a letter (not and/or/not)"
    ]


def test_good_tags_are_kept_with_their_line(folder):
    suite = load_suite(write(folder, CASE + "    object: {box: [1, 1, 5, 5]}\n    tags: [sticker, night-time]\n"))
    assert errors_of(suite) == []
    assert (suite.cases[0].tags, suite.cases[0].tags_line) == (["sticker", "night-time"], 7)


def test_image_symlink_loop_and_folder_are_located(folder):
    import os

    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    (folder / "dir.png").mkdir()
    suite = load_suite(write(folder, CASE.replace("a.png", "loop_a.png") + "    object: {mask: dir.png}\n"))
    assert errors_of(suite) == [
        f"{folder / 's.xai.yaml'}:5: cases[0].image: image path is a symlink loop: loop_a.png (looked in {folder})",
        f"{folder / 's.xai.yaml'}:6: cases[0].object.mask: mask path is not a file: dir.png (looked in {folder})",
    ]


def test_missing_variant_image_is_located_at_its_setting(folder):
    suite = load_suite(
        write(
            folder,
            CASE + "    object: {box: [1, 1, 5, 5]}\n    variants:\n"
            "      background_removed: {fill: image,\n"
            "                           image: nope.png}\n",
        )
    )
    assert errors_of(suite) == [
        f"{folder / 's.xai.yaml'}:9: cases[0].variants.background_removed.image: "
        f"image file not found: nope.png (looked in {folder})"
    ]


def test_non_utf8_file_is_located_at_its_line(folder):
    path = folder / "s.xai.yaml"
    path.write_bytes(b"model: m\ncases:\n  - id: caf\xe9\n")
    suite = load_suite(path)
    assert suite.error is not None and suite.error.line == 3
    assert suite.error.message.startswith("cannot read file: not UTF-8 text (byte 0xe9 at offset 27)")


def test_explainer_line_is_recorded(folder):
    suite = load_suite(
        write(
            folder, "model: m\n\nexplainer: lrp/nope\n" + CASE.split("\n", 1)[1] + "    object: {box: [1, 1, 5, 5]}\n"
        )
    )
    assert suite.explainer_line == 3 and suite.model_line == 1


@pytest.mark.parametrize(
    ("where", "text", "field"),
    [
        ("case", "    thresholds: {min_object_mass: yes}\n", "cases[0].thresholds.min_object_mass"),
        ("case", "    variants: {sticker_added: {color: [true, 0, 0]}}\n", "cases[0].variants.sticker_added.color"),
        ("case", "    variants: {instance_removed: {dilate: no}}\n", "cases[0].variants.instance_removed.dilate"),
        ("region", "{box: [true, 0, 5, 5]}", "cases[0].object.box"),
    ],
)
def test_booleans_are_not_numbers(folder, where, text, field):
    # pydantic alone would read `yes` as 1: a threshold of 1.0, a red channel of 1.
    body = f"    object: {text}\n" if where == "region" else "    object: {box: [1, 1, 5, 5]}\n" + text
    suite = load_suite(write(folder, CASE + body))
    errors = errors_of(suite)
    assert len(errors) == 1 and f": {field}: expected a number, got a boolean" in errors[0], errors


def test_booleans_stay_valid_where_a_boolean_belongs(folder):
    suite = load_suite(
        write(folder, CASE + "    object: {box: [1, 1, 5, 5]}\n    thresholds: {pointing_game: yes}\n    xfail: true\n")
    )
    assert errors_of(suite) == [] and suite.cases[0].xfail is True
    assert suite.cases[0].variants[0].thresholds["pointing_game"] is True


def test_empty_label_and_repeated_model_are_errors(folder):
    suite = load_suite(write(folder, CASE + "    object: {box: [1, 1, 5, 5]}\n    label: ''\n"))
    assert [e.split(": ", 1)[1] for e in errors_of(suite)] == [
        "cases[0].label: String should have at least 1 character (got '')"
    ]
    twice = load_suite(write(folder, CASE.replace("model: m", "models: [m, m]") + "    object: {box: [1, 1, 5, 5]}\n"))
    assert twice.error is not None and twice.error.line == 1
    assert twice.error.message == "a model is listed twice (got ['m', 'm'])"


# --------------------------------------------------------------------------- steps, sweeps, overrides, absent


COMPOSED = """\
model: m
defaults:
  label: horse
  variants:
    original: {}
    sticker_added: {image: w.png, size: native, position: bottom_right, margin: 1}
    no_horse:
      judge: instance_removed
      steps:
        - remove_object: {fill: grey, dilate: 1}
        - add_sticker: {image: w.png, size: native, position: bottom_right, margin: 1}
    corners:
      judge: sticker_added
      steps: [{add_sticker: {image: w.png, size: native, margin: 1}}]
      sweep: {position: [top_left, bottom_right]}
    walls:
      judge: background_removed
      steps: [{replace_background: {fill: image}}]
      sweep: {image: {glob: walls/*.png, sample: 3, seed: 4}}
cases:
"""


@pytest.fixture
def composed(folder: Path) -> Path:
    cv2.imwrite(str(folder / "w.png"), np.zeros((9, 16, 4), np.uint8))
    (folder / "walls").mkdir()
    for name in ("brick", "grass", "moon", "sand", "snow"):
        cv2.imwrite(str(folder / "walls" / f"{name}.png"), np.zeros((8, 8, 3), np.uint8))
    return folder


def test_variants_made_of_steps_and_sweeps_resolve(composed):
    suite = load_suite(write(composed, COMPOSED + "  - {id: a, image: a.png, object: {mask: a_mask.png}}\n"))
    (case,) = suite.cases
    assert errors_of(suite) == []
    names = [(v.name, v.sweep, v.rule) for v in case.variants]
    import random

    walls = sorted(random.Random(4).sample([f"walls/{n}.png" for n in ("brick", "grass", "moon", "sand", "snow")], 3))
    assert names == [
        ("original", None, "original"),
        ("sticker_added", None, "sticker_added"),
        ("no_horse", None, "instance_removed"),
        ("corners", "top_left", "sticker_added"),
        ("corners", "bottom_right", "sticker_added"),
        *[("walls", Path(w).stem, "background_removed") for w in walls],
    ]
    no_horse = case.variants[2].settings
    assert [step for step, _ in no_horse.steps] == ["remove_object", "add_sticker"]
    assert no_horse.steps[0][1] == InstanceRemovedSettings(fill="grey", dilate=1)
    corners = [v.settings.steps[0][1] for v in case.variants[3:5]]
    assert [(s.position, s.margin, s.size) for s in corners] == [
        ("top_left", 1, "native"),
        ("bottom_right", 1, "native"),
    ]
    assert [v.settings.steps[0][1].image for v in case.variants[5:]] == walls
    assert all(v.thresholds == case.variants[0].thresholds for v in case.variants)


def test_overrides_change_one_setting_of_one_variant(composed):
    text = COMPOSED + (
        "  - id: a\n    image: a.png\n    object: {mask: a_mask.png}\n"
        "    overrides: {sticker_added: {size: 0.4, margin: 0}, no_horse: {fill: mean}, corners: {margin: 3}}\n"
    )
    suite = load_suite(write(composed, text))
    assert errors_of(suite) == []
    variants = {(v.name, v.sweep): v.settings for v in suite.cases[0].variants}
    assert variants[("sticker_added", None)] == StickerAddedSettings(image="w.png", size=0.4, position="bottom_right")
    assert variants[("no_horse", None)].steps[0][1].fill == "mean"
    assert variants[("no_horse", None)].steps[1][1].margin == 1
    assert {variants[("corners", p)].steps[0][1].margin for p in ("top_left", "bottom_right")} == {3}


@pytest.mark.parametrize(
    "variants, field, message",
    [
        ("mine: {steps: [{add_sticker: {}}]}", "mine.judge", "needs 'judge'"),
        ("mine: {judge: nope, steps: [{add_sticker: {}}]}", "mine.judge", "(got 'nope')"),
        ("mine: {judge: original}", "mine", "unknown variant 'mine'"),
        ("mine: {judge: original, steps: []}", "mine.steps", "non-empty list of steps"),
        ("mine: {judge: original, steps: [{paint: {}}]}", "mine.steps[0]", "steps: remove_object"),
        ("mine: {judge: original, steps: [{add_sticker: {size: 2}}]}", "mine.steps[0].add_sticker", "less than"),
        ("mine: {judge: original, steps: [{add_sticker: {}}], colour: 1}", "mine.colour", "unknown key 'colour'"),
        ("mine: {judge: original, steps: [{add_sticker: {}}], sweep: {fill: [a]}}", "sweep.fill", "no setting 'fill'"),
        ("sticker_added: {sweep: {size: [0.1, 2]}}", "sticker_added.sweep", "value '2'"),
        ("sticker_added: {sweep: {size: []}}", "sweep.size", "non-empty list"),
        ("sticker_added: {sweep: {position: [[1, 2], '1_2']}}", "sticker_added.sweep", "same item name"),
        ("background_removed: {fill: image, sweep: {image: {glob: 'x/*.png'}}}", "sweep.image.glob", "no file"),
        ("background_removed: {fill: image, sweep: {image: [nope.png]}}", "sweep", "image file not found"),
    ],
)
def test_broken_steps_and_sweeps_are_located_errors(folder, variants, field, message):
    text = f"model: m\ndefaults:\n  label: cat\n  variants:\n    {variants}\ncases:\n"
    text += "  - {id: a, image: a.png, object: {mask: a_mask.png}}\n"
    suite = load_suite(write(folder, text))
    errors = errors_of(suite)
    assert any(field in e and message in e for e in errors), errors
    assert all(":5:" in e or ":7:" in e for e in errors), errors


def test_an_override_of_a_variant_the_case_does_not_run_is_an_error(folder):
    text = (
        "model: m\ndefaults:\n  label: cat\n  variants: [original]\ncases:\n"
        "  - id: a\n    image: a.png\n    object: {mask: a_mask.png}\n    overrides: {sticker_added: {size: 0.4}}\n"
    )
    errors = errors_of(load_suite(write(folder, text)))
    assert errors == [
        f"{folder / 's.xai.yaml'}:9: cases[0].overrides.sticker_added: overrides a variant the case does not run; "
        "its variants: original"
    ]


def test_absent_cases_need_no_object_and_are_judged_by_absence(folder):
    text = (
        "model: m\ndefaults:\n  label: cat\ncases:\n"
        "  - {id: empty, image: a.png, expect: absent}\n"
        "  - {id: also, image: a.png, expect: absent, object: {box: [1, 1, 4, 4]}}\n"
        "  - {id: missing, image: a.png}\n"
    )
    suite = load_suite(write(folder, text))
    empty, also, missing = suite.cases
    assert empty.errors == [] and empty.regions == [] and empty.expect == "absent"
    assert {v.rule for v in empty.variants} == {"absent"} and len(empty.variants) == 4
    assert also.errors == [] and len(also.regions) == 1
    assert [e.field for e in missing.errors] == ["cases[2].object"]
    assert {v.rule for v in missing.variants} == {"original", "instance_removed", "background_removed", "sticker_added"}
