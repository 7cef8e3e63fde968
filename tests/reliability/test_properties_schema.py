"""Property tests of the suite schema: any document built from the schema's keys (with
values of any type), and any text at all, is either accepted, and then every accepted
case rasterises to a usable region (or a located error) and renders finite uint8
variants, or refused with errors located in the file; ``load_suite`` and ``validate``
never raise."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.authoring.validate import validate_suite
from harness.errors import HarnessError, SpecError
from harness.imageio import read_rgb, read_rgba
from harness.perturb import VARIANTS, apply_variant
from harness.regions import check_usable, rasterize
from harness.spec import CaseModel, Defaults, SuiteHeader, Thresholds, load_suite

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
coordinate = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-5, 40), st.integers(-5, 40))


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the plausible value, sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, anything)


regions = st.one_of(
    st.fixed_dictionaries({"box": maybe(st.lists(coordinate, min_size=4, max_size=4))}),
    st.fixed_dictionaries({"polygon": maybe(st.lists(st.lists(coordinate, min_size=2, max_size=2), max_size=6))}),
    st.fixed_dictionaries(
        {"mask": maybe(st.sampled_from(["mask.png", "small.png", "empty.png", "nope.png", "junk.png", "loop.png"]))},
        optional={"mask_value": maybe(st.integers(-1, 300))},
    ),
    st.dictionaries(st.sampled_from(["mask", "polygon", "box", "mask_value", "todo"]), anything, max_size=3),
)


def _settings(name: str) -> st.SearchStrategy[Any]:
    known = VARIANTS[name].settings.model_fields if name in VARIANTS else {}
    fields = [*known, "thresholds", "bogus"]
    return maybe(st.dictionaries(st.sampled_from(fields), anything, max_size=3))


variant_names = st.sampled_from([*VARIANTS, "upside_down"])
# A variant of one's own: a judge, steps and perhaps a sweep (harness.steps).
sweeps = st.dictionaries(
    st.sampled_from(["position", "image", "size", "fill", "bogus"]),
    st.one_of(
        st.lists(st.sampled_from(["top_left", "img.png", "nope.png", 0.3, 2.0, "grey", "image"]), max_size=3),
        st.fixed_dictionaries(
            {"glob": st.sampled_from(["*.png", "nope/*", "", "../*"])},
            optional={"sample": maybe(st.integers(0, 3)), "seed": maybe(st.integers(-1, 3))},
        ),
        anything,
    ),
    max_size=2,
)
steps = st.lists(
    st.dictionaries(
        st.sampled_from(["remove_object", "replace_background", "add_sticker", "bogus"]),
        st.one_of(st.none(), st.sampled_from([*VARIANTS]).flatmap(_settings)),
        min_size=1,
        max_size=2,
    ),
    max_size=3,
)
own_variants = st.fixed_dictionaries(
    {"judge": maybe(st.sampled_from([*VARIANTS, "nope"])), "steps": maybe(steps)},
    optional={"sweep": maybe(sweeps), "thresholds": anything, "bogus": anything},
)
variants = st.one_of(
    st.dictionaries(variant_names, st.one_of(st.builds(dict), variant_names.flatmap(_settings)), max_size=4),
    st.dictionaries(st.sampled_from(["mine", *VARIANTS]), st.one_of(own_variants, st.builds(dict)), max_size=3),
    st.lists(
        st.one_of(variant_names, st.dictionaries(variant_names, st.builds(dict), min_size=1, max_size=2)), max_size=4
    ),
    anything,
)
thresholds = maybe(st.dictionaries(st.sampled_from([*Thresholds.model_fields, "bogus"]), scalars, max_size=3))

CASE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": maybe(st.sampled_from(["a", "b", "a", "x y", "ünï", "7"])),
    "image": maybe(st.sampled_from(["img.png", "img.png", "nope.png", "junk.png", "loop.png", "", "."])),
    "label": maybe(st.sampled_from(["speed_30", "cat", ""])),
    "description": anything,
    "object": maybe(st.one_of(regions, st.lists(regions, max_size=3))),
    "thresholds": thresholds,
    "variants": variants,
    "skip": maybe(st.booleans() | st.text(max_size=5)),
    "xfail": maybe(st.booleans() | st.text(max_size=5)),
    "tags": maybe(st.lists(st.sampled_from(["sticker", "xfail", "_x", "a: b", "ok-1", "and", ""]), max_size=3)),
    "expect": maybe(st.sampled_from(["present", "absent", "maybe"])),
    "overrides": maybe(
        st.dictionaries(
            st.sampled_from(["mine", "upside_down", *VARIANTS]), variant_names.flatmap(_settings), max_size=2
        )
    ),
    "bogus": anything,
}
assert set(CASE_VALUES) - {"bogus"} == set(CaseModel.model_fields)


@st.composite
def cases(draw: st.DrawFn) -> Any:
    """A valid case with up to three keys set to other values (plausible or anything)."""
    if draw(st.integers(0, 19)) == 0:
        return draw(anything)
    case: dict[str, Any] = {
        "id": draw(st.sampled_from(["a", "b", "c"])),
        "image": "img.png",
        "object": {"mask": "mask.png"},
    }
    for key in draw(st.lists(st.sampled_from(sorted(CASE_VALUES)), unique=True, max_size=3)):
        if draw(st.integers(0, 4)) == 0:
            case.pop(key, None)
        else:
            case[key] = draw(CASE_VALUES[key])
    return case


HEADER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "suite": maybe(st.text(max_size=5)),
    "description": anything,
    "model": maybe(st.just("signs-clean")),
    "models": maybe(st.lists(st.just("signs-clean"), max_size=2)),
    "explainer": maybe(st.sampled_from(["lrp/epsilon_plus_flat", "lrp", "lrp/nope", "gradient/input_x_gradient"])),
    "defaults": maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "label": maybe(st.just("speed_30")),
                "thresholds": thresholds,
                "variants": variants,
                "bogus": anything,
            },
        )
    ),
    "cases": maybe(st.lists(cases(), max_size=3)),
    "bogus": anything,
}
assert set(HEADER_VALUES) - {"bogus"} == set(SuiteHeader.model_fields)
assert set(Defaults.model_fields) == {"label", "thresholds", "variants"}


@st.composite
def suites(draw: st.DrawFn) -> Any:
    """A valid suite with up to two header keys set to other values, and 1-3 cases."""
    if draw(st.integers(0, 19)) == 0:
        return draw(anything)
    header: dict[str, Any] = {
        "model": "signs-clean",
        "defaults": {"label": "speed_30"},
        "cases": draw(st.lists(cases(), min_size=1, max_size=3)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(HEADER_VALUES)), unique=True, max_size=2)):
        if draw(st.integers(0, 4)) == 0:
            header.pop(key, None)
        else:
            header[key] = draw(HEADER_VALUES[key])
    return header


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("schema")
    image = np.random.default_rng(0).integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "img.png"), image)
    mask = np.zeros((16, 20), np.uint8)
    mask[3:12, 4:15] = 255
    cv2.imwrite(str(root / "mask.png"), mask)
    cv2.imwrite(str(root / "small.png"), mask[:8, :8])
    cv2.imwrite(str(root / "empty.png"), np.zeros((16, 20), np.uint8))
    (root / "junk.png").write_bytes(b"junk")
    (root / "loop.png").symlink_to("loop.png")
    return root


def _assert_located(error: SpecError, path: Path, lines: int) -> None:
    assert error.path == str(path) and error.message
    assert error.line is None or 1 <= error.line <= max(lines, 1), error.format()


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return [n for v in value for n in _numbers(v)]


def _check_suite(path: Path) -> None:
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.count("\n") + 1
    suite = load_suite(path)
    if suite.error is not None:
        _assert_located(suite.error, path, lines)
        assert not suite.cases
        return
    for case in suite.cases:
        problems = case.errors + [e for v in case.variants for e in v.errors]
        for error in problems:
            _assert_located(error, path, lines)
            assert error.line is not None
        event("case refused" if problems else "case accepted")
        if problems:
            continue
        # Accepted: the case is complete, and what the engine would do with it is
        # either finite and well-formed or a clear error of this case.
        assert case.variants and case.image is not None and case.image.is_file()
        assert case.regions or case.expect == "absent"
        for region in case.regions:
            assert all(math.isfinite(v) for v in _numbers(region.model_dump())), region
        for variant in case.variants:
            assert variant.settings is not None
            values = variant.settings.model_dump()
            assert all(math.isfinite(v) for v in _numbers(values)), values
            assert values.get("seed", 0) >= 0 and all(0 <= c <= 255 for c in values.get("color", ()))
            numbers = [v for v in variant.thresholds.values() if isinstance(v, (int, float))]
            assert all(math.isfinite(v) for v in numbers), variant.thresholds
        image = read_rgb(case.image)
        try:
            mask = rasterize(case.regions, image.shape[:2], case.base_dir)
            if case.regions:  # an `expect: absent` case may have no object
                check_usable(mask)
        except HarnessError as exc:
            assert str(exc)
            continue
        for variant in case.variants:
            assert variant.settings is not None
            base = case.base_dir
            try:
                out = apply_variant(
                    variant.name,
                    variant.settings,
                    image,
                    mask,
                    lambda p, base=base: read_rgb(base / p),
                    lambda p, base=base: read_rgba(base / p),
                )
            except HarnessError as exc:
                assert str(exc)
                continue
            assert out.image.dtype == np.uint8 and out.image.shape == image.shape
            event("variant rendered")


@SETTINGS
@given(suites())
def test_any_document_from_the_schema_is_accepted_soundly_or_refused_located(world: Path, document: Any) -> None:
    path = world / "s.xai.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    _check_suite(path)
    count, errors = validate_suite(path)
    for error in errors:
        _assert_located(error, path, path.read_text(encoding="utf-8").count("\n") + 1)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(
        st.binary(max_size=120),
        st.text(max_size=120),
        st.lists(
            st.sampled_from(
                [
                    "model: signs-clean",
                    "cases:",
                    "  - id: a",
                    "    image: img.png",
                    "    object: {box: [1, 1, 5, 5]}",
                    "\t",
                    "  -",
                    "defaults: {label: x}",
                    "&a [*a]",
                    "!!python/name:os.system",
                    "{",
                    "]",
                    "- - -",
                    "a: b: c",
                    "variants: []",
                    "cases: [",
                    "\ufeff",
                    "\x00",
                ]
            ),
            max_size=8,
        ).map("\n".join),
    )
)
def test_any_text_is_accepted_soundly_or_refused_located(world: Path, content: bytes | str) -> None:
    path = world / "t.xai.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", errors="replace"))
    _check_suite(path)
    validate_suite(path)


def test_the_plugin_runs_any_documents_to_located_errors_or_finite_results(tmp_path: Path) -> None:
    """Thirty generated suites in one pytest session against the demo model: every item
    errors with its file's location, or ends with finite numbers in its row."""
    from .conftest import run_session, write_world

    write_world(tmp_path)
    cv2.imwrite(str(tmp_path / "small.png"), np.full((8, 8), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((64, 64), np.uint8))
    (tmp_path / "junk.png").write_bytes(b"junk")
    (tmp_path / "loop.png").symlink_to("loop.png")
    written: list[Path] = []

    @settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(suites())
    def write_one(document: Any) -> None:
        path = tmp_path / f"gen{len(written):03d}.xai.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written.append(path)

    write_one()
    run = run_session(tmp_path, "-p", "no:xdist")
    assert run.returncode in (0, 1), run.stdout[-3000:]
    assert "INTERNALERROR" not in run.stdout and "Traceback" not in run.stdout, run.stdout[-3000:]
    items = {(suite, name): outcome for suite, found in run.items.items() for name, outcome in found.items()}
    assert len(run.rows) == len(items) and {Path(r["suite"]).name for r in run.rows} <= {p.name for p in written}
    event_counts: dict[str, int] = {}
    for row in run.rows:
        verdict = row["verdict"]
        event_counts[verdict] = event_counts.get(verdict, 0) + 1
        if verdict == "error":
            assert re.search(rf"{re.escape(row['suite'])}(:\d+)?: ", row["message"]), row["message"]
        elif verdict != "skipped":
            for column in ("p_predicted", "p_label", "mass_object"):
                if row[column] not in ("", None):
                    assert math.isfinite(float(row[column])), (column, row)
            assert row["predicted"], row
    # The generated suites reach both sides: located errors and judged items.
    assert event_counts.get("error", 0) > 0 and len(run.rows) > event_counts.get("error", 0), event_counts
