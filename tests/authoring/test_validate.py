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
    reported = {
        line.split(": ", 2)[1].split(".")[0].split("[")[1].rstrip("]") for line in lines if line.startswith(f"{suite}:")
    }
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


# Input-side mistakes that once passed `validate` silently or stopped it with a traceback.
RELIABILITY = """\
model: pets
defaults:
  label: canine
cases:
  - id: nan_vertex
    image: img.png
    object: {polygon: [[.nan, 1], [10, 1], [10, 10]]}  # @nan_vertex
  - id: inf_box
    image: img.png
    object: {box: [0, 0, .inf, 10]}                    # @inf_box
  - id: mask_not_image
    image: img.png
    object: {mask: not_an_image.png}                   # @mask_not_image
  - id: mask_bomb
    image: img.png
    object: {mask: bomb.png}                           # @mask_bomb
  - id: image_loop
    image: loop_a.png                                  # @image_loop
    object: {box: [1, 1, 10, 10]}
  - id: no_variants
    image: img.png
    object: {box: [1, 1, 10, 10]}
    variants: []                                       # @no_variants
  - id: marker_tag
    image: img.png
    object: {box: [1, 1, 10, 10]}
    tags: [xfail]                                      # @marker_tag
  - id: sticker_colour
    image: img.png
    object: {box: [1, 1, 10, 10]}
    variants:
      sticker_added: {color: [300, -5, 0]}             # @sticker_colour
  - id: negative_seed
    image: img.png
    object: {box: [1, 1, 10, 10]}
    variants:
      instance_removed: {fill: noise, seed: -1}        # @negative_seed
  - id: underscore_tag
    image: img.png
    object: {box: [1, 1, 10, 10]}
    tags: [_private]                                   # @underscore_tag
"""

RELIABILITY_EXPECT = [
    ("nan_vertex", "cases[0].object.polygon", "coordinates must be finite numbers (got nan)"),
    ("inf_box", "cases[1].object.box", "coordinates must be finite numbers (got inf)"),
    ("mask_not_image", "cases[2].object.mask", "cannot read mask"),
    ("mask_bomb", "cases[3].object.mask", "cannot read mask"),
    ("image_loop", "cases[4].image", "image path is a symlink loop: loop_a.png"),
    ("no_variants", "cases[5].variants", "no variants"),
    ("marker_tag", "cases[6].tags", "tag 'xfail' is the name of a pytest marker"),
    ("sticker_colour", "cases[7].variants.sticker_added.color[0]", "less than or equal to 255"),
    ("negative_seed", "cases[8].variants.instance_removed.seed", "greater than or equal to 0"),
    ("underscore_tag", "cases[9].tags", "tag '_private' is not a word"),
]


def test_every_input_problem_is_reported_without_a_traceback(broken: Path, registry: Path, cli) -> None:
    import os
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A PNG whose header claims 10^10 pixels: a decompression bomb for a reader that trusts it.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    (broken / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )
    os.symlink("loop_b.png", broken / "loop_a.png")
    os.symlink("loop_a.png", broken / "loop_b.png")
    (broken / "reliability.xai.yaml").write_text(RELIABILITY)
    # A second file with the same unreadable mask: validation goes on past the first.
    (broken / "second.xai.yaml").write_text(RELIABILITY.replace("pets", "pets  # second"))
    code, out, err = cli("validate", broken, "--models", registry)
    assert code == 1 and "Traceback" not in out + err
    for name in ("reliability", "second"):
        suite = broken / f"{name}.xai.yaml"
        for marker, field, words in RELIABILITY_EXPECT:
            prefix = f"{suite}:{_line(RELIABILITY, marker)}: {field}: "
            hits = [line for line in out.splitlines() if line.startswith(prefix)]
            assert any(words in hit for hit in hits), f"{name} {marker}: expected {prefix}...{words}\n{out}"


def test_an_internal_failure_is_one_located_problem(tmp_path: Path, write_image, monkeypatch) -> None:
    from harness.authoring import validate as module

    write_image(tmp_path / "img.png", H, W)
    for name in ("a", "b"):
        (tmp_path / f"{name}.xai.yaml").write_text(HEADER.replace("wolves", "pets").replace("lrp/magic", "lrp"))

    def explode(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(module._Checker, "check_case", explode)
    report = module.validate_paths([tmp_path])
    assert [(Path(e.path).name, e.message) for e in report.errors] == [
        ("a.xai.yaml", "cannot validate this file: ZeroDivisionError: boom"),
        ("b.xai.yaml", "cannot validate this file: ZeroDivisionError: boom"),
    ]


# --------------------------------------------------------------------------- the registry pytest would use

SUITE_ON_PETS = (
    "model: pets\ndefaults: {label: canine}\ncases:\n  - {id: a, image: img.png, object: {box: [1, 1, 10, 10]}}\n"
)


def _project(root: Path, write_image, config: tuple[str, str], registry_at: str = "fixtures/models.yaml") -> Path:
    """A project whose pytest config file is ``config`` (name, text); returns its suite folder."""
    from tests.authoring.conftest import REGISTRY

    (root / config[0]).write_text(config[1], encoding="utf-8")
    (root / registry_at).parent.mkdir(parents=True, exist_ok=True)
    (root / registry_at).write_text(REGISTRY, encoding="utf-8")
    suites = root / "testcases" / "pets"
    write_image(suites / "img.png", H, W)
    (suites / "pets.xai.yaml").write_text(SUITE_ON_PETS, encoding="utf-8")
    return suites


def test_validate_from_a_subfolder_finds_the_registry_pytest_uses(tmp_path: Path, write_image) -> None:
    import subprocess
    import sys

    suites = _project(tmp_path, write_image, ("pytest.ini", "[pytest]\nxai_models = nets/registry.yaml\n"),
                      registry_at="nets/registry.yaml")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "harness", "validate", "."], cwd=suites, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout.strip()) == (0, "1 suites, 1 cases, 0 errors"), done.stderr


@pytest.mark.parametrize(
    "config",
    [
        ("pyproject.toml", '[project]\nname = "x"\n\n[tool.pytest.ini_options]\nxai_models = "nets/registry.yaml"\n'),
        ("tox.ini", "[pytest]\nxai_models = nets/registry.yaml\n"),
        ("setup.cfg", "[tool:pytest]\nxai_models = nets/registry.yaml\n"),
        ("pytest.ini", "[pytest]\naddopts = -q\n"),
    ],
)
def test_locate_registry_reads_pytest_config_files(tmp_path: Path, write_image, config) -> None:
    from harness.authoring.validate import locate_registry

    from_ini = "xai_models" in config[1]
    at = "nets/registry.yaml" if from_ini else "fixtures/models.yaml"
    suites = _project(tmp_path, write_image, config, registry_at=at)
    # A conftest.py or an unrelated config file below the rootdir does not move it.
    (suites / "conftest.py").write_text("", encoding="utf-8")
    (tmp_path / "testcases" / "setup.cfg").write_text("[flake8]\nmax-line-length = 120\n", encoding="utf-8")
    found = locate_registry(["."], cwd=suites)
    assert (found.path, found.rootdir, found.from_ini) == ((tmp_path / at).resolve(), tmp_path, from_ini)
    try:  # the same rootdir as pytest's own logic (a private function: skipped if it moved)
        from _pytest.config.findpaths import determine_setup

        rootdir = determine_setup(inifile=None, override_ini=None, args=[str(suites)], rootdir_cmd_arg=None,
                                  invocation_dir=suites)[0]  # fmt: skip
    except (ImportError, TypeError):
        return
    assert Path(rootdir) == found.rootdir


def test_validate_names_where_it_looked_when_no_registry_is_found(tmp_path: Path, write_image, cli) -> None:
    suites = _project(tmp_path, write_image, ("pytest.ini", "[pytest]\n"), registry_at="elsewhere/models.yaml")
    code, out, err = cli("validate", suites)
    assert code == 1
    expected = tmp_path / "fixtures" / "models.yaml"
    assert f"no model registry at {expected}: the default fixtures/models.yaml" in err
    assert f"rootdir {tmp_path} (from pytest.ini)" in err and "--models FILE" in err
    assert f"{expected}: model registry not found" in out
