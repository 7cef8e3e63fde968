"""Run-time fault matrix: one pytest session runs every fault next to healthy cases in
the same batches; each kind asserts which items error, with which message, and that
the healthy items ran with the outcome they have without the fault.

Model and explainer faults strike only the ``bad`` case (its image carries a red
trigger pixel, see ``runtime_support.CONFTEST``), which shares every batch with the
``clean`` case.
"""

from __future__ import annotations

import pytest

from .runtime_support import CLEAN_AND_BAD, Session, make_world, run_session, suite

VARIANTS = ("original", "instance_removed", "background_removed", "sticker_added")

# kind: (suite text, {case: expected message fragment, or None for "passed"}).
MODEL_FAULTS: dict[str, str] = {
    "nan_logits": "model output is not finite (NaN in 1 of 2 logits)",
    "inf_logits": "model output is not finite (Inf in 2 of 2 logits)",
    "zero_logits": "model output has no prediction: all 2 logits are equal (0)",
    "tie": "model output has no prediction: all 2 logits are equal (",
    "raise": "model + explainer failed on this image: RuntimeError: the probe refuses images with a red pixel",
    "nan_relevance": "explanation unreliable: relevance is not finite (NaN in 3072 of 3072 values)",
    "inf_relevance": "explanation unreliable: relevance is not finite (",
    "zero_relevance": "explanation unreliable: the relevance map is all zero for a target logit of",
    "blown_relevance": "outside [-3, 8] (lrp/epsilon_plus_flat)",
}

WRONG_SHAPE = "models/wrong.pt"
EXTRA_MODELS = {
    "factory-raises": "architecture: harness.probes:region_probe\nargs: {region: [0, 0, 99, 99]}\n"
    "classes: [thing, other]\npreprocessing: {size: [32, 32]}",
    "nan-bias": "architecture: harness.probes:nan_bias_probe\nargs: {size: [32, 32]}\n"
    "classes: [thing, other]\npreprocessing: {size: [32, 32]}",
    "wrong-weights": f"architecture: harness.probes:region_probe\nweights: {WRONG_SHAPE}\n"
    "classes: [thing, other]\npreprocessing: {size: [32, 32]}",
    "infinite-input": "architecture: harness.probes:region_probe\nargs: {size: [32, 32], region: [10, 10, 22, 22]}\n"
    "classes: [thing, other]\npreprocessing: {size: [32, 32], value_range: [0, .inf]}",
    "corner": "architecture: harness.probes:region_probe\n"
    "args: {size: [32, 32], region: [0, 0, 8, 8], threshold: 0.7}\n"
    "classes: [thing, other]\npreprocessing: {size: [32, 32]}",
    "three-outputs": "architecture: harness.probes:region_probe\nclasses: [thing, other, third]\n"
    "preprocessing: {size: [32, 32]}",
}

ONE_CLEAN = """\
  - id: clean
    image: scene.png
    object: {mask: scene_mask.png}
"""

# Input faults inside one batch: the broken case sits between two healthy ones.
SANDWICH = """\
  - id: clean
    image: scene.png
    object: {{mask: scene_mask.png}}
  - id: bad
    image: scene.png
    object: {bad}
  - id: clean2
    image: scene.png
    object: {{box: [10, 10, 22, 22]}}
"""

OTHER_KINDS: dict[str, tuple[str, dict[str, str | None]]] = {
    # The whole model is broken: every item of it errors, the rest of the session runs.
    "nan_bias": (suite("nan-bias", ONE_CLEAN), {"clean": "model output is not finite (NaN in 1 of 2 logits)"}),
    "factory_raises": (
        suite("factory-raises", ONE_CLEAN),
        {"clean": "region [0, 0, 99, 99] does not fit a 32x32 input"},
    ),
    "wrong_weight_shapes": (suite("wrong-weights", ONE_CLEAN), {"clean": "do not fit harness.probes:region_probe"}),
    "nonfinite_input": (
        suite("infinite-input", ONE_CLEAN),
        {"clean": "model input after preprocessing is not finite ("},
    ),
    "output_shape": (suite("three-outputs", ONE_CLEAN), {"clean": "outputs shape (1, 2) but the registry lists 3"}),
    "unknown_model_among_two": (
        suite("good", ONE_CLEAN).replace("model: good", "models: [good, nosuch]"),
        {"clean": None},
    ),
    # Bad inputs of one case, in the middle of a batch.
    "mask_not_an_image": (
        suite("good", SANDWICH.format(bad="{mask: not_an_image.png}")),
        {"clean": None, "clean2": None, "bad": "not_an_image.png"},
    ),
    "mask_decompression_bomb": (
        suite("good", SANDWICH.format(bad="{mask: bomb_mask.png}")),
        {"clean": None, "clean2": None, "bad": "bomb_mask.png"},
    ),
    "missing_mask": (
        suite("good", SANDWICH.format(bad="{mask: nowhere.png}")),
        {"clean": None, "clean2": None, "bad": "nowhere.png"},
    ),
    # Health checks are configurable per suite; the gradient baseline is not conservative.
    "band_excludes_one": (
        suite("good", ONE_CLEAN, thresholds="{conservation: [2, 3]}"),
        {"clean": "conservation 1 outside [2, 3]"},
    ),
    "band_off_accepts_blown": (
        suite("fault-blown_relevance", CLEAN_AND_BAD, thresholds="{conservation: null}"),
        {"clean": None, "bad": None},
    ),
    "gradient_blown_is_a_verdict": (
        suite("fault-blown_relevance", CLEAN_AND_BAD, explainer="gradient/input_x_gradient"),
        {"clean": None, "bad": None},
    ),
    "gradient_nan_relevance": (
        suite("fault-nan_relevance", CLEAN_AND_BAD, explainer="gradient/input_x_gradient"),
        {"clean": None, "bad": "relevance is not finite (NaN in 3072 of 3072 values)"},
    ),
}


def _suite_files() -> dict[str, str]:
    files = {"baseline": suite("good", CLEAN_AND_BAD)}
    files |= {f"fault_{kind}": suite(f"fault-{kind}", CLEAN_AND_BAD) for kind in MODEL_FAULTS}
    files |= {f"other_{kind}": text for kind, (text, _) in OTHER_KINDS.items()}
    files["corner_black"] = suite("corner", ONE_CLEAN, variants="  variants:\n    background_removed: {fill: black}\n")
    return files


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    import torch

    from harness.probes import region_probe

    root = tmp_path_factory.mktemp("faults")
    make_world(root, EXTRA_MODELS)
    (root / "models").mkdir()
    wrong = region_probe(size=(16, 16), region=(2, 2, 10, 10)).state_dict()  # a 16×16 head for 32×32
    torch.save(wrong, root / "models" / "wrong.pt")
    for name, text in _suite_files().items():
        (root / f"{name}.xai.yaml").write_text(text)
    return run_session(root)


def _message(row: dict[str, str]) -> str:
    return row["message"]


def test_session_ran_every_suite(session: Session) -> None:
    suites = {row["suite"] for row in session.rows}
    assert suites == {f"{name}.xai.yaml" for name in _suite_files()}, session.output[-3000:]
    assert session.returncode == 1  # errors, but the session ended normally
    assert "Traceback" not in session.output


@pytest.mark.parametrize("variant", VARIANTS)
def test_baseline_passes(session: Session, variant: str) -> None:
    # The fault-free reference: both cases pass every variant on the healthy probe.
    for case in ("clean", "bad"):
        row = session.row("baseline.xai.yaml", case, variant)
        assert row["verdict"] == "passed", row["message"]
        assert row["relevance_finite"] == "True"
        assert float(row["conservation"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind", sorted(MODEL_FAULTS))
def test_model_fault_errors_only_the_faulty_image(session: Session, kind: str) -> None:
    name = f"fault_{kind}.xai.yaml"
    for variant in VARIANTS:
        bad = session.row(name, "bad", variant)
        assert bad["verdict"] == "error", (variant, bad["message"])
        assert MODEL_FAULTS[kind] in bad["message"], (variant, bad["message"])
        clean = session.row(name, "clean", variant)
        reference = session.row("baseline.xai.yaml", "clean", variant)
        assert clean["verdict"] == reference["verdict"] == "passed", clean["message"]
        for column in ("mass_object", "mass_removed", "mass_sticker", "p_label", "conservation"):
            if reference[column]:
                assert float(clean[column]) == pytest.approx(float(reference[column]), abs=1e-5), column


def test_unhealthy_row_records_what_was_measured(session: Session) -> None:
    row = session.row("fault_blown_relevance.xai.yaml", "bad", "original")
    assert float(row["conservation"]) == pytest.approx(100.0, rel=1e-4)
    assert float(row["relevance_sum"]) == pytest.approx(100 * float(row["target_logit"]), rel=1e-4)
    assert row["message"].startswith("error: fault_blown_relevance.xai.yaml:")
    assert (
        "explanation unreliable: relevance sums to 995.4 for a target logit of 9.954: conservation 100"
        in row["message"]
    )
    nan = session.row("fault_nan_relevance.xai.yaml", "bad", "original")
    assert nan["relevance_finite"] == "False" and nan["relevance_sum"] == "" and nan["conservation"] == ""


@pytest.mark.parametrize("kind", sorted(OTHER_KINDS))
def test_other_kinds(session: Session, kind: str) -> None:
    name = f"other_{kind}.xai.yaml"
    _, expected = OTHER_KINDS[kind]
    rows = [row for row in session.suite_rows(name) if row["model"] != "nosuch"]  # see the test below
    assert {row["case_id"] for row in rows} == set(expected)
    for row in rows:
        want = expected[row["case_id"]]
        if want is None:
            assert row["verdict"] == "passed", (row["case_id"], row["variant"], row["message"])
        else:
            assert row["verdict"] == "error", (row["case_id"], row["variant"], row["message"])
            assert want in row["message"], (row["case_id"], row["variant"], row["message"])


def test_unknown_model_errors_only_its_items(session: Session) -> None:
    rows = session.suite_rows("other_unknown_model_among_two.xai.yaml")
    by_model = {model: [r for r in rows if r["model"] == model] for model in ("good", "nosuch")}
    assert {r["verdict"] for r in by_model["good"]} == {"passed"} and len(by_model["good"]) == 4
    assert len(by_model["nosuch"]) == 4
    for row in by_model["nosuch"]:
        assert row["verdict"] == "error" and "unknown model 'nosuch'" in row["message"], row["message"]


def test_summary_gives_backend_and_median_conservation(session: Session) -> None:
    out = session.output
    assert "xai: good / lrp/epsilon_plus_flat: backend fast, median conservation 1 " in out
    # Four healthy maps at 1 and four blown-up ones at 100.
    assert "xai: fault-blown_relevance / lrp/epsilon_plus_flat: backend fast, median conservation 50.5 " in out
    assert "cannot be used, its items will error: unknown model 'nosuch'" in out
    unreliable = sum("explanation unreliable" in row["message"] for row in session.rows)
    assert unreliable == 6 * 4  # nan / inf / zero / blown relevance, gradient NaN, band excluding 1
    assert f"xai: {unreliable} item(s) errored because their explanation is unreliable" in out


def test_batch_failure_was_retried_image_by_image(session: Session) -> None:
    # The "raise" probe fails every batch holding a trigger image; the clean images of
    # that batch still passed (checked above), which needs the one-by-one retry.
    rows = session.suite_rows("fault_raise.xai.yaml")
    assert sum(r["verdict"] == "passed" for r in rows) == 4


def test_near_zero_logit_all_zero_map_is_healthy(session: Session) -> None:
    """A probe reading the top-left corner sees black once the background is removed: its
    class gets a zero logit and an all-zero map, which is what conservation demands, so
    the verdict stands (label not predicted: false negative), no error."""
    row = session.row("corner_black.xai.yaml", "clean", "background_removed")
    assert row["verdict"] == "false_negative", row["message"]
    assert float(row["target_logit"]) == 0.0 and float(row["relevance_sum"]) == 0.0
