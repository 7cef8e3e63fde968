"""The bad-input matrix: one session of demo suites, each holding one kind of bad input
next to a control case, run once against the shipped ``signs-clean`` model.

For every kind: exactly the expected items error, with the located message
``file:line: field: message``; every other item (the control case, the bad case's
unaffected variants, the good suite) ends as in a run without any bad input; and
``results.csv`` holds an ``error`` row for each error item with the same location.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import HEADER, Run, run_session, write_world

VARIANTS = ("original", "instance_removed", "background_removed", "sticker_added")
BAD = tuple(f"bad[{v}]" for v in VARIANTS)
OK = tuple(f"ok[{v}]" for v in VARIANTS)


@dataclass
class Kind:
    """One kind of bad input.

    ``text`` follows the control case (or, with ``whole``, is the whole file; bytes
    are written as they are). ``errors`` are the items that must error; each must
    name the line marked ``# @`` in the text and contain ``needle``.
    """

    name: str
    text: str | bytes
    needle: str
    errors: tuple[str, ...] = BAD
    whole: bool = False
    line: int | None = None  # when the text cannot carry a marker
    same_as_ok: dict[str, str] = field(default_factory=dict)  # item -> control item it must equal

    def content(self) -> bytes:
        if isinstance(self.text, bytes):
            return self.text
        return (self.text if self.whole else HEADER + self.text).encode("utf-8")

    def expected_line(self) -> int | None:
        if self.line is not None:
            return self.line
        lines = self.content().decode("utf-8", errors="replace").splitlines()
        marked = [n + 1 for n, text in enumerate(lines) if "# @" in text]
        assert len(marked) == 1, f"{self.name}: mark exactly one line"
        return marked[0]


def case(body: str) -> str:
    """A bad case after the control case: ``body`` holds its keys (4-space indented)."""
    return "  - id: bad\n" + body


IMG = "    image: img.png\n"
MASK = "    object: {mask: mask.png}\n"

KINDS = [
    # ---------------------------------------------------------------- whole files
    Kind(
        "yaml_syntax",
        "model: signs-clean\ncases: [\n  - id: x   # @\n",
        "YAML syntax error",
        whole=True,
        errors=("yaml_syntax.xai.yaml",),
    ),
    Kind(
        "duplicate_key",
        "model: signs-clean\nmodel: signs-shortcut   # @\ncases: []\n",
        "duplicate key",
        whole=True,
        errors=("duplicate_key.xai.yaml",),
    ),
    Kind(
        "python_tag",
        "model: !!python/object/apply:os.system ['echo pwned']   # @\ncases: []\n",
        "YAML syntax error",
        whole=True,
        errors=("python_tag.xai.yaml",),
    ),
    Kind("empty_file", "", "a suite must be a mapping", whole=True, line=1, errors=("empty_file.xai.yaml",)),
    Kind(
        "zero_cases",
        "model: signs-clean\ncases: []   # @\n",
        "cases: List should have at least 1 item",
        whole=True,
        errors=("zero_cases.xai.yaml",),
    ),
    Kind(
        "non_utf8",
        b"model: signs-clean\ncases:\n  - id: caf\xe9\n",
        "cannot read file: not UTF-8",
        whole=True,
        line=3,
        errors=("non_utf8.xai.yaml",),
    ),
    Kind(
        "top_level_list",
        "- model: signs-clean   # @\n",
        "a suite must be a mapping",
        whole=True,
        errors=("top_level_list.xai.yaml",),
    ),
    Kind(
        "unknown_explainer",
        HEADER.replace("explainer: lrp/epsilon_plus_flat", "explainer: lrp/no_such_rule   # @"),
        "explainer: ",
        whole=True,
        errors=("unknown_explainer.xai.yaml",),
    ),
    Kind(
        "unknown_top_key",
        HEADER.replace("defaults:", "colour: red   # @\ndefaults:"),
        "unknown key 'colour'",
        whole=True,
        errors=("unknown_top_key.xai.yaml",),
    ),
    Kind(
        "tab_indent",
        HEADER + "  - id: bad\n\timage: img.png   # @\n",
        "YAML syntax error",
        whole=True,
        errors=("tab_indent.xai.yaml",),
    ),
    Kind(
        "recursive_alias",
        HEADER + "  - &c   # @\n    id: bad\n    image: img.png\n    tags: [*c]\n",
        "found unconstructable recursive node",
        whole=True,
        errors=("recursive_alias.xai.yaml",),
    ),
    Kind(
        "defaults_variants_empty",
        HEADER.replace("  label: speed_30\n", "  label: speed_30\n  variants: []   # @\n"),
        "defaults.variants: no variants",
        whole=True,
        errors=("ok",),
    ),
    # ---------------------------------------------------------------- regions
    Kind(
        "polygon_nan",
        case(IMG + "    object: {polygon: [[.nan, 1], [10, 1], [10, 10]]}   # @\n"),
        "cases[1].object.polygon: coordinates must be finite numbers (got nan)",
    ),
    Kind(
        "polygon_inf",
        case(IMG + "    object: {polygon: [[1, 1], [.inf, 1], [10, 10]]}   # @\n"),
        "cases[1].object.polygon: coordinates must be finite numbers (got inf)",
    ),
    Kind(
        "polygon_huge",
        case(IMG + "    object: {polygon: [[1, 1], [1.0e+300, 1], [10, 10]]}   # @\n"),
        "cases[1].object.polygon: coordinate 1e+300 is out of range",
    ),
    Kind(
        "polygon_degenerate",
        case(IMG + "    object: {polygon: [[70, 70], [80, 80], [90, 90]]}   # @\n"),
        "object region is empty",
        line=9,
    ),
    Kind(
        "box_inf",
        case(IMG + "    object: {box: [0, 0, .inf, 10]}   # @\n"),
        "cases[1].object.box: coordinates must be finite numbers (got inf)",
    ),
    Kind(
        "box_nan",
        case(IMG + "    object: {box: [.nan, 0, 10, 10]}   # @\n"),
        "cases[1].object.box: coordinates must be finite numbers (got nan)",
    ),
    Kind(
        "box_negative_size",
        case(IMG + "    object: {box: [20, 20, 10, 10]}   # @\n"),
        "box must be [x0, y0, x1, y1] with x1 > x0",
    ),
    Kind(
        "box_outside_image",
        case(IMG + "    object: {box: [100, 100, 200, 200]}   # @\n"),
        "object region is empty",
        line=9,
    ),
    Kind("mask_wrong_size", case(IMG + "    object: {mask: mask_small.png}   # @\n"), "but the image is 64x64", line=9),
    Kind("mask_not_image", case(IMG + "    object: {mask: not_an_image.png}   # @\n"), "cannot read mask", line=9),
    Kind("mask_bomb", case(IMG + "    object: {mask: bomb.png}   # @\n"), "cannot read mask", line=9),
    Kind("mask_empty", case(IMG + "    object: {mask: mask_empty.png}   # @\n"), "object region is empty", line=9),
    Kind("mask_full", case(IMG + "    object: {mask: mask_full.png}   # @\n"), "covers the whole image", line=9),
    Kind(
        "mask_missing",
        case(IMG + "    object: {mask: nope.png}   # @\n"),
        "cases[1].object.mask: mask file not found: nope.png",
    ),
    Kind(
        "mask_value_huge",
        case(IMG + "    object: {mask: mask.png, mask_value: 70000}   # @\n"),
        "less than or equal to 65535",
    ),
    Kind(
        "region_two_kinds",
        case(IMG + "    object: {mask: mask.png, box: [1, 1, 5, 5]}   # @\n"),
        "give exactly one of 'mask', 'polygon' or 'box'",
    ),
    # ---------------------------------------------------------------- images and files
    Kind("image_missing", case("    image: nope.png   # @\n" + MASK), "cases[1].image: image file not found: nope.png"),
    Kind(
        "image_symlink_loop",
        case("    image: loop_a.png   # @\n" + MASK),
        "cases[1].image: image path is a symlink loop: loop_a.png",
    ),
    Kind("image_not_image", case("    image: not_an_image.png   # @\n" + MASK), "cannot decode image", line=9),
    Kind("image_bomb", case("    image: bomb.png   # @\n" + MASK), "its header claims more pixels", line=9),
    Kind("image_is_folder", case("    image: folder.png   # @\n" + MASK), "cases[1].image: image path is not a file"),
    Kind(
        "xfail_missing_image",
        case("    image: nope.png   # @\n" + MASK + "    xfail: known problem\n"),
        "image file not found",
    ),
    # ---------------------------------------------------------------- variants and their settings
    Kind(
        "variants_empty_list",
        case(IMG + MASK + "    variants: []   # @\n"),
        "cases[1].variants: no variants",
        errors=("bad",),
    ),
    Kind(
        "variants_empty_map",
        case(IMG + MASK + "    variants: {}   # @\n"),
        "cases[1].variants: no variants",
        errors=("bad",),
    ),
    Kind(
        "unknown_variant",
        case(IMG + MASK + "    variants: [original, upside_down]   # @\n"),
        "unknown variant 'upside_down'",
        errors=("bad[upside_down]",),
        same_as_ok={"bad[original]": "ok[original]"},
    ),
    Kind(
        "sticker_color_range",
        case(IMG + MASK + "    variants: {sticker_added: {color: [300, -5, 0]}}   # @\n"),
        "cases[1].variants.sticker_added.color[0]: Input should be less than or equal to 255",
        errors=("bad[sticker_added]",),
    ),
    Kind(
        "sticker_seed_negative",
        case(IMG + MASK + "    variants: {sticker_added: {seed: -1}}   # @\n"),
        "cases[1].variants.sticker_added.seed: Input should be greater than or equal to 0",
        errors=("bad[sticker_added]",),
    ),
    Kind(
        "noise_seed_text",
        case(IMG + MASK + "    variants: {instance_removed: {fill: noise, seed: abc}}   # @\n"),
        "cases[1].variants.instance_removed.seed",
        errors=("bad[instance_removed]",),
    ),
    Kind(
        "blur_sigma_nan",
        case(IMG + MASK + "    variants: {background_removed: {fill: blur, blur_sigma: .nan}}   # @\n"),
        "cases[1].variants.background_removed.blur_sigma",
        errors=("bad[background_removed]",),
    ),
    Kind(
        "sticker_size_negative",
        case(IMG + MASK + "    variants: {sticker_added: {size: -0.3}}   # @\n"),
        "cases[1].variants.sticker_added.size: Input should be greater than 0",
        errors=("bad[sticker_added]",),
    ),
    Kind(
        "sticker_position_huge",
        case(IMG + MASK + "    variants: {sticker_added: {position: [9999999, 3]}}   # @\n"),
        "cases[1].variants.sticker_added.position",
        errors=("bad[sticker_added]",),
    ),
    Kind(
        "sticker_off_image",
        case(IMG + MASK + "    variants: {sticker_added: {position: [5000, 5000]}}   # @\n"),
        "lies outside the 64x64 image",
        errors=("bad[sticker_added]",),
    ),
    Kind(
        "dilate_huge_number",
        case(IMG + MASK + "    variants: {instance_removed: {dilate: 123456789012345678901234567890}}   # @\n"),
        "cases[1].variants.instance_removed.dilate: Input should be less than or equal to 64",
        errors=("bad[instance_removed]",),
    ),
    Kind(
        "background_image_missing",
        case(IMG + MASK + "    variants: {background_removed: {fill: image, image: nope.png}}   # @\n"),
        "cases[1].variants.background_removed.image: image file not found: nope.png",
        errors=("bad[background_removed]",),
    ),
    Kind(
        "sticker_image_not_image",
        case(IMG + MASK + "    variants: {sticker_added: {image: not_an_image.png}}   # @\n"),
        "cannot decode image",
        errors=("bad[sticker_added]",),
    ),
    Kind(
        "background_image_bomb",
        case(IMG + MASK + "    variants: {background_removed: {fill: image, image: bomb.png}}   # @\n"),
        "cannot decode image",
        errors=("bad[background_removed]",),
    ),
    # ---------------------------------------------------------------- case keys
    Kind("tag_xfail", case(IMG + MASK + "    tags: [xfail]   # @\n"), "tag 'xfail' is the name of a pytest marker"),
    Kind("tag_skip", case(IMG + MASK + "    tags: [skip]   # @\n"), "tag 'skip' is the name of a pytest marker"),
    Kind("tag_usefixtures", case(IMG + MASK + "    tags: [usefixtures]   # @\n"), "tag 'usefixtures' is the name"),
    Kind("tag_filterwarnings", case(IMG + MASK + "    tags: [filterwarnings]   # @\n"), "tag 'filterwarnings' is the"),
    Kind("tag_plugin_marker", case(IMG + MASK + "    tags: [flaky]   # @\n"), "tag 'flaky' is the name of a pytest"),
    Kind("tag_underscore", case(IMG + MASK + "    tags: [_private]   # @\n"), "tag '_private' is not a word"),
    Kind("tag_colon", case(IMG + MASK + "    tags: ['a: b']   # @\n"), "tag 'a: b' is not a word"),
    Kind("unknown_class", case(IMG + MASK + "    label: speed_99   # @\n"), "unknown class 'speed_99'"),
    Kind(
        "duplicate_case_id",
        "  - id: ok   # @\n" + IMG + MASK,
        "duplicate case id 'ok'",
        errors=tuple(f"ok~1[{v}]" for v in VARIANTS),
    ),
    Kind(
        "case_not_mapping",
        "  - just a string   # @\n",
        "a case must be a mapping",
        errors=tuple(f"case1[{v}]" for v in VARIANTS),
    ),
    # A billion laughs: 10^9 strings by aliases, refused at once where a string belongs.
    Kind(
        "alias_bomb",
        case(
            IMG
            + MASK
            + "    description:   # @\n      - &l0 [a, a, a, a, a, a, a, a, a, a]\n"
            + "".join(f"      - &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
        ),
        "cases[1].description: Input should be a valid string",
    ),
    Kind("unknown_case_key", case(IMG + MASK + "    colour: red   # @\n"), "unknown key 'colour'"),
    Kind(
        "threshold_out_of_range",
        case(IMG + MASK + "    thresholds: {min_object_mass: 1.5}   # @\n"),
        "cases[1].thresholds.min_object_mass: Input should be less than or equal to 1",
    ),
    Kind(
        "threshold_boolean",
        case(IMG + MASK + "    thresholds: {min_object_mass: yes}   # @\n"),
        "cases[1].thresholds.min_object_mass: expected a number, got a boolean",
    ),
    Kind(
        "threshold_nan",
        case(IMG + MASK + "    thresholds: {max_sticker_share: .nan}   # @\n"),
        "cases[1].thresholds.max_sticker_share",
    ),
]

ACCEPTED = {
    # Inputs that look odd but are fine: they must run exactly like the control case.
    "bom": "\ufeff" + HEADER + "  - id: bad\n" + IMG + MASK,
    "crlf": (HEADER + "  - id: bad\n" + IMG + MASK).replace("\n", "\r\n"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    """(baseline, matrix): the control suite alone, then with every bad kind beside it."""
    base = tmp_path_factory.mktemp("baseline")
    write_world(base)
    (base / "good.xai.yaml").write_text(HEADER)
    matrix = tmp_path_factory.mktemp("matrix")
    write_world(matrix)
    (matrix / "good.xai.yaml").write_text(HEADER)
    for kind in KINDS:
        (matrix / f"{kind.name}.xai.yaml").write_bytes(kind.content())
    for name, text in ACCEPTED.items():
        (matrix / f"{name}.xai.yaml").write_bytes(text.encode("utf-8"))
    report = f"--xai-report={matrix / 'reports' / 'index.html'}"
    return run_session(base), run_session(matrix, report)


def test_there_are_enough_kinds() -> None:
    assert len(KINDS) + len(ACCEPTED) >= 50
    assert len({kind.name for kind in KINDS}) == len(KINDS)


def test_baseline_is_all_passed(runs: tuple[Run, Run]) -> None:
    baseline, _ = runs
    assert {name: o.outcome for name, o in baseline.items["good"].items()} == dict.fromkeys(OK, "passed"), (
        baseline.stdout[-3000:]
    )


def test_the_session_ran_to_the_end(runs: tuple[Run, Run]) -> None:
    _, matrix = runs
    assert matrix.returncode == 1, matrix.stdout[-3000:]  # failures/errors, not an interrupted or crashed run
    assert "Traceback" not in matrix.stdout and "INTERNALERROR" not in matrix.stdout, matrix.stdout[-3000:]
    assert {name: o.outcome for name, o in matrix.items["good"].items()} == dict.fromkeys(OK, "passed")
    # Every error item is in the verdict summary, whole-file errors included.
    errors = sum(o.outcome == "error" for items in matrix.items.values() for o in items.values())
    summary = re.search(r"xai verdicts.*?\n(.*)\n", matrix.stdout)
    assert summary is not None and f"error: {errors}" in summary.group(1), matrix.stdout[-3000:]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_bad_input_errors_alone_and_located(runs: tuple[Run, Run], kind: Kind) -> None:
    baseline, matrix = runs
    items = matrix.items.get(kind.name)
    assert items, f"no item at all for {kind.name}: {matrix.stdout[-2000:]}"
    line = kind.expected_line()
    location = f"{kind.name}.xai.yaml:{line}" if line else f"{kind.name}.xai.yaml"
    for name in kind.errors:
        assert name in items, sorted(items)
        outcome = items[name]
        assert outcome.outcome == "error", (name, outcome)
        assert location in outcome.message and kind.needle in outcome.message, outcome.message
    control = {name: o.outcome for name, o in baseline.items["good"].items()}
    for name, outcome in items.items():
        if name in kind.errors:
            continue
        reference = kind.same_as_ok.get(name, name)
        assert reference in control, f"unexpected item {name} in {kind.name}"
        assert outcome.outcome == control[reference], (name, outcome)
    # The report shows each error item with its location.
    shown = _unescaped(matrix.report)
    assert location in shown and kind.needle in shown
    # The table: an error row per error item, at the same place; the others as in the baseline.
    rows = matrix.rows_of(kind.name)
    assert len(rows) == len(items)
    base_rows = {(r["case_id"], r["variant"]): r["verdict"] for r in baseline.rows}
    for row in rows:
        nodename = row["nodeid"].split("::", 1)[-1]
        if nodename in kind.errors:
            assert row["verdict"] == "error" and row["passed"] == "False"
            assert location in row["message"] and kind.needle in row["message"], row["message"]
            # Whole-file errors sit on their line (1 when unknown); case errors on the case's or variant's line.
            assert row["line"] == str(line or 1) if kind.whole else int(row["line"]) >= 9, row
        else:
            reference = kind.same_as_ok.get(nodename, nodename)
            assert row["verdict"] == base_rows[("ok", reference[3:-1])], row


def _unescaped(report: str) -> str:
    """The report's text with its HTML and JSON (\\uXXXX) escapes undone."""
    return html.unescape(re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), report))


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_odd_but_valid_input_runs_like_the_control(runs: tuple[Run, Run], name: str) -> None:
    baseline, matrix = runs
    control = {n: o.outcome for n, o in baseline.items["good"].items()}
    items = {n: o.outcome for n, o in matrix.items[name].items()}
    assert items == {**control, **{n.replace("ok", "bad"): o for n, o in control.items()}}


def test_the_table_is_written_for_a_run_of_only_broken_suites(tmp_path: Path) -> None:
    write_world(tmp_path)
    (tmp_path / "broken.xai.yaml").write_text("model: [\n")
    (tmp_path / "empty.xai.yaml").write_text("")
    run = run_session(tmp_path)
    assert run.returncode == 1
    assert sorted((r["suite"], r["line"], r["verdict"]) for r in run.rows) == [
        ("broken.xai.yaml", "2", "error"),
        ("empty.xai.yaml", "1", "error"),
    ]
    assert "error: 2" in run.stdout


def test_tags_select_with_m_under_strict_markers(tmp_path: Path) -> None:
    write_world(tmp_path)
    (tmp_path / "tags.xai.yaml").write_text(
        HEADER.replace("  - id: ok\n", "  - id: ok\n    tags: [sticker]\n")
        + """\
  - id: night
    image: img.png
    object: {mask: mask.png}
    tags: [night-time, sticker]
  - id: plain
    image: img.png
    object: {mask: mask.png}
"""
    )
    # One run: a tag with a hyphen, a negation, and --strict-markers (run_session passes it) at once.
    run = run_session(tmp_path, "--collect-only", "-m", "sticker and not night-time")
    assert run.returncode == 0, run.stdout[-2000:]
    assert {line.split("::")[-1] for line in run.stdout.splitlines() if "::" in line} == set(OK)


NET = """\
import harness.collect as collect

_load, _items = collect.load_suite, collect.SuiteFile._case_items


def load_suite(path, *args, **kwargs):
    if path.name.startswith("explode"):
        raise RuntimeError("a bug in the loader")
    return _load(path, *args, **kwargs)


def case_items(self, case, *args, **kwargs):
    if case.case_id == "boom":
        raise RuntimeError("a bug in the items")
    return _items(self, case, *args, **kwargs)


collect.load_suite = load_suite
collect.SuiteFile._case_items = case_items
"""


def test_collection_never_raises_for_one_file_or_one_case(tmp_path: Path) -> None:
    # Whatever escapes for one file or one case (here: injected bugs) becomes its error item.
    write_world(tmp_path)
    (tmp_path / "conftest.py").write_text(NET)
    one_variant = HEADER.replace("  label: speed_30\n", "  label: speed_30\n  variants: [original]\n")
    (tmp_path / "explode.xai.yaml").write_text(one_variant)
    (tmp_path / "cases.xai.yaml").write_text(one_variant + "  - id: boom\n" + IMG + MASK)
    run = run_session(tmp_path)
    outcomes = {
        (suite, name): (o.outcome, o.message) for suite, items in run.items.items() for name, o in items.items()
    }
    assert {key: value[0] for key, value in outcomes.items()} == {
        ("explode", "explode.xai.yaml[collection]"): "error",
        ("cases", "ok[original]"): "passed",
        ("cases", "boom"): "error",
    }
    assert (
        "explode.xai.yaml: cannot collect this file: RuntimeError: a bug in the loader"
        in outcomes[("explode", "explode.xai.yaml[collection]")][1]
    )
    assert (
        "cases.xai.yaml:10: cases[1]: cannot collect this case: RuntimeError: a bug in the items"
        in outcomes[("cases", "boom")][1]
    )
    assert sorted((r["suite"], r["case_id"], r["verdict"]) for r in run.rows) == [
        ("cases.xai.yaml", "boom", "error"),
        ("cases.xai.yaml", "ok", "passed"),
        ("explode.xai.yaml", "", "error"),
    ]
