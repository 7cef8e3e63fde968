"""`validate` catches every mistake of a deliberately broken suite, each at its file:line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

H, W = 30, 40

# Each case holds one kind of mistake; the marker comment names the line the error
# must point at. ``expect`` below lists (marker, field, words of the message).
BROKEN = """\
model: pets
defaults:
  label: canine
cases:
  - id: missing_image
    image: nope.png                                    # @missing_image
    object: {box: [1, 1, 10, 10]}
  - id: missing_mask
    image: img.png
    object: {mask: nope_mask.png}                      # @missing_mask
  - id: wrong_size
    image: img.png
    object: {mask: mask_small.png}                     # @wrong_size
  - id: empty_mask
    image: img.png
    object: {mask: mask_empty.png}                     # @empty_mask
  - id: unknown_variant
    image: img.png
    object: {mask: mask_ok.png}
    variants: [original, blurred]                      # @unknown_variant
  - id: unknown_class
    image: img.png
    label: wolf                                        # @unknown_class
    object: {mask: mask_ok.png}
  - id: unknown_key
    image: img.png
    object: {mask: mask_ok.png}
    colour: red                                        # @unknown_key
  - id: wrong_type
    image: img.png
    object: {box: [1, 1, 10, 10]}
    tags: urgent                                       # @wrong_type
  - id: polygon_outside
    image: img.png
    object: {polygon: [[1, 1], [50, 2], [10, 20]]}     # @polygon_outside
  - id: bad_threshold
    image: img.png
    object: {box: [1, 1, 10, 10]}
    thresholds: {min_object_mass: 1.5}                 # @bad_threshold
  - id: bad_threshold                                  # @duplicate_id
    image: img.png
    object: {box: [2, 2, 12, 12]}
  - id: undecodable
    image: not_an_image.png                            # @undecodable
    object: {box: [1, 1, 5, 5]}
  - id: full_box
    image: img.png
    object: {box: [0, 0, 40, 30]}                      # @full_box
  - id: missing_sticker
    image: img.png
    object: {box: [1, 1, 10, 10]}
    variants:
      sticker_added: {image: sticker_nope.png}         # @missing_sticker
  - id: not_annotated
    image: img.png
    # TODO: annotate the object
    object: {todo: annotate the object}                # @todo
  - id: bad_setting
    image: img.png
    object: {box: [1, 1, 10, 10]}
    variants:
      instance_removed: {fill: smudge}                 # @bad_setting
  - id: box_outside
    image: img.png
    object: {box: [30, 20, 45, 35]}                    # @box_outside
  - id: reversed_box
    image: img.png
    object: {box: [10, 10, 2, 2]}                      # @reversed_box
  - id: empty_value
    image: img.png
    object: {mask: classes.png, mask_value: 7}         # @empty_value
  - id: tiny_at_input_size
    image: img.png
    object: {box: [4, 1, 5, 2]}                        # @tiny
  - id: good
    image: img.png
    object:
      - {mask: mask_ok.png}
      - {mask: classes.png, mask_value: 3}
"""

SYNTAX = """\
model: pets
cases:
  - id: a
    image: img.png
   object: {box: [1, 1, 5, 5]}
"""

HEADER = """\
model: wolves                                          # @unknown_model
explainer: lrp/magic                                   # @unknown_explainer
cases:
  - id: a
    image: img.png
    label: canine
    object: {box: [1, 1, 10, 10]}
"""

EXPECT = [
    ("missing_image", "cases[0].image", "image file not found: nope.png"),
    ("missing_mask", "cases[1].object.mask", "mask file not found: nope_mask.png"),
    ("wrong_size", "cases[2].object.mask", "is 20x20 (w x h) but the image is 40x30"),
    ("empty_mask", "cases[3].object.mask", "the mask is empty"),
    ("unknown_variant", "cases[4].variants.blurred", "unknown variant 'blurred'"),
    ("unknown_class", "cases[5].label", "unknown class 'wolf' for model 'pets'"),
    ("unknown_key", "cases[6].colour", "unknown key 'colour'"),
    ("wrong_type", "cases[7].tags", "valid list"),
    ("polygon_outside", "cases[8].object.polygon", "point (50, 2) lies outside the 40x30 image"),
    ("bad_threshold", "cases[9].thresholds.min_object_mass", "less than or equal to 1"),
    ("duplicate_id", "cases[10].id", "duplicate case id 'bad_threshold'"),
    ("undecodable", "cases[11].image", "cannot decode image"),
    ("full_box", "cases[12].object", "covers the whole image"),
    ("missing_sticker", "cases[13].variants.sticker_added.image", "image file not found"),
    ("todo", "cases[14].object", "not annotated yet"),
    ("bad_setting", "cases[15].variants.instance_removed.fill", "smudge"),
    ("box_outside", "cases[16].object.box", "lies outside the 40x30 image"),
    ("reversed_box", "cases[17].object", "x1 > x0"),
    ("empty_value", "cases[18].object.mask_value", "no pixel equals mask_value 7"),
    ("tiny", "cases[19].object", "input size"),
]


def _line(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(f"# @{marker}"))


@pytest.fixture
def broken(tmp_path: Path, write_image, write_mask) -> Path:
    folder = tmp_path / "testcases"
    write_image(folder / "img.png", H, W)
    ok = np.zeros((H, W), bool)
    ok[5:20, 5:25] = True
    write_mask(folder / "mask_ok.png", ok)
    write_mask(folder / "mask_small.png", np.ones((20, 20), bool))
    write_mask(folder / "mask_empty.png", np.zeros((H, W), bool))
    classes = np.zeros((H, W), np.uint8)
    classes[2:8, 30:38] = 3
    write_image(folder / "classes.png", array=classes)
    (folder / "not_an_image.png").write_bytes(b"this is not a PNG")
    (folder / "broken.xai.yaml").write_text(BROKEN)
    (folder / "syntax.xai.yaml").write_text(SYNTAX)
    (folder / "header.xai.yaml").write_text(HEADER)
    return folder


def test_every_mistake_is_reported_at_its_line(broken: Path, registry: Path, cli) -> None:
    code, out, _ = cli("validate", broken, "--models", registry)
    assert code == 1
    lines = out.splitlines()
    suite = broken / "broken.xai.yaml"
    for marker, field, words in EXPECT:
        prefix = f"{suite}:{_line(BROKEN, marker)}: {field}: "
        hits = [line for line in lines if line.startswith(prefix)]
        assert hits, f"no error for {marker}: expected a line starting {prefix!r}\n{out}"
        assert any(words in hit for hit in hits), f"{marker}: {hits}"
    # The good case, and nothing else, is clean.
    reported = {line.split(": ", 2)[1].split(".")[0].split("[")[1].rstrip("]") for line in lines
                if line.startswith(f"{suite}:")}
    assert reported == {str(n) for n in range(20)}
    # The other two files.
    syntax = broken / "syntax.xai.yaml"
    assert any(line.startswith(f"{syntax}:5: YAML syntax error") for line in lines), out
    header = broken / "header.xai.yaml"
    assert f"{header}:{_line(HEADER, 'unknown_model')}: model: unknown model 'wolves'" in out
    assert f"{header}:{_line(HEADER, 'unknown_explainer')}: explainer: unknown explainer 'lrp/magic'" in out
    assert lines[-1] == f"3 suites, 22 cases, {len(lines) - 1} errors"


def test_model_override(broken: Path, registry: Path, cli) -> None:
    # Like pytest's --xai-model: the registry model 'probe' has other classes.
    code, out, _ = cli("validate", broken / "header.xai.yaml", "--models", registry, "--model", "probe")
    assert code == 1
    assert "unknown class 'canine' for model 'probe'" in out and "wolves" not in out


def test_clean_suite_passes(tmp_path: Path, write_image, registry: Path, cli) -> None:
    write_image(tmp_path / "img.png", H, W)
    (tmp_path / "ok.xai.yaml").write_text(HEADER.replace("wolves", "pets").replace("lrp/magic", "lrp"))
    code, out, _ = cli("validate", tmp_path, "--models", registry)
    assert (code, out.strip()) == (0, "1 suites, 1 cases, 0 errors")


def test_missing_paths_and_registry(tmp_path: Path, cli) -> None:
    code, out, _ = cli("validate", tmp_path / "nowhere", "--models", tmp_path / "none.yaml")
    assert code == 1
    assert "none.yaml: model registry not found" in out
    assert f"{tmp_path / 'nowhere'}: no such file or folder" in out
