"""Several explainers in one run: ids, rows, one prediction per image, agreement columns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

SUITE = """\
model: looks-at-object
explainer: {explainer}
defaults:
  label: thing
  variants:
    original: {{}}
    instance_removed: {{fill: mean}}
    sticker_added: {{size: 0.25}}
cases:
  - id: scene
    image: scene.png
    object: {{mask: scene_mask.png}}
"""


def _names(result: pytest.RunResult) -> set[str]:
    return {line.split("::")[-1].split(" ")[0] for line in result.outlines if "::" in line and "[" in line}


def test_a_suite_list_judges_every_item_per_explainer(world: pytest.Pytester, results_rows) -> None:
    world.makefile(".xai.yaml", signs=SUITE.format(explainer="[lrp/epsilon_plus_flat, cam/gradcam]"))
    result = world.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "xai: the explainers disagree on the verdict of 1 image(s), e.g. scene original: "
            "lrp/epsilon_plus_flat passed, cam/gradcam wrong_reasons"
        ]
    )
    result.stdout.fnmatch_lines(["xai: looks-at-object / cam/gradcam: backend autograd (not LRP: no conservation)"])
    assert _names(result) == {
        f"scene[{variant}-{explainer}]"
        for variant in ("original", "instance_removed", "sticker_added")
        for explainer in ("lrp_epsilon_plus_flat", "cam_gradcam")
    }
    rows = results_rows(world.path)
    assert Counter(r["explainer"] for r in rows) == {"lrp/epsilon_plus_flat": 3, "cam/gradcam": 3}
    by = {(r["variant"], r["explainer"]): r for r in rows}
    # Grad-CAM on the probe's only convolution (a grey 1x1 conv) averages the gradient over
    # the whole image, so its map follows brightness everywhere: the object holds only its
    # share of the brightness and the original fails on mass, where LRP puts all of it inside.
    lrp, cam = by[("original", "lrp/epsilon_plus_flat")], by[("original", "cam/gradcam")]
    assert float(lrp["mass_object"]) == pytest.approx(1.0)
    assert float(cam["mass_object"]) == pytest.approx(144 * 1.0 / (144 * 1.0 + 880 * 0.8), rel=1e-4)
    for variant in ("original", "instance_removed", "sticker_added"):
        one, two = by[(variant, "lrp/epsilon_plus_flat")], by[(variant, "cam/gradcam")]
        assert one["predicted"] == two["predicted"] and one["p_predicted"] == two["p_predicted"]
        # Two explainers: each row carries the same agreement, naming the other explainer.
        assert one["agreement_with"] == "cam/gradcam" and two["agreement_with"] == "lrp/epsilon_plus_flat"
        assert one["agreement_rank"] == two["agreement_rank"] and one["agreement_top10"] == two["agreement_top10"]
    # Original: LRP is constant on the object and zero outside, Grad-CAM is brightness (1.0 on
    # the object, 0.8 outside): the same order, and the same top pixels (ties by index).
    assert float(by[("original", "cam/gradcam")]["agreement_rank"]) == pytest.approx(1.0)
    assert float(by[("original", "cam/gradcam")]["agreement_top10"]) == 1.0
    # Object painted out with the background's colour: a uniform image, a constant Grad-CAM
    # map, no order to correlate (empty), and no shared top pixel.
    assert by[("instance_removed", "cam/gradcam")]["agreement_rank"] == ""
    assert float(by[("instance_removed", "cam/gradcam")]["agreement_top10"]) == 0.0
    assert 0.5 < float(by[("sticker_added", "cam/gradcam")]["agreement_rank"]) < 1.0
    # Each explainer keeps its own pictures.
    assert (world.path / "reports" / "assets" / "cam_gradcam").is_dir()
    assert (world.path / "reports" / "assets" / "lrp_epsilon_plus_flat").is_dir()


def test_command_line_list_and_keyword_selection(world: pytest.Pytester, results_rows) -> None:
    world.makefile(".xai.yaml", signs=SUITE.format(explainer="lrp/epsilon_plus_flat"))
    result = world.runpytest(
        "-v", "-p", "no:cacheprovider", "--xai-explainer", "lrp, gradient/input_x_gradient", "-k", "input_x"
    )
    result.assert_outcomes(passed=3)
    assert {r["explainer"] for r in results_rows(world.path)} == {"gradient/input_x_gradient"}


def test_one_explainer_keeps_the_ids_and_records_no_agreement(world: pytest.Pytester, results_rows) -> None:
    world.makefile(".xai.yaml", signs=SUITE.format(explainer="cam/gradcam"))
    result = world.runpytest("-v", "-p", "no:cacheprovider")
    assert _names(result) == {"scene[original]", "scene[instance_removed]", "scene[sticker_added]"}
    assert all("agreement_rank" not in r for r in results_rows(world.path))


@pytest.mark.parametrize(
    ("args", "explainer", "message"),
    [
        ([], "[lrp, lrp]", "distinct explainers"),
        (["--xai-explainer", "lrp,lrp/epsilon_plus_flat"], "lrp", "named twice"),
        ([], "[lrp, cam/nonsense]", "unknown explainer 'cam/nonsense'"),
    ],
)
def test_bad_lists_are_located_errors(world: pytest.Pytester, args: list[str], explainer: str, message: str) -> None:
    world.makefile(".xai.yaml", signs=SUITE.format(explainer=explainer))
    result = world.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_the_first_explainers_forward_decides_every_explainers_prediction(
    world: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, results_rows
) -> None:
    """An explainer whose own logits disagree (here: classes swapped) still judges the
    prediction of the image's one shared forward."""
    import harness.engine
    from harness.attribution import Explainer, make_explainer

    def swapped(name: str, model: Any, backend: Any = "auto") -> Explainer:
        explainer = make_explainer(name, model, backend)
        if not name.startswith("gradient/"):
            return explainer
        inner = explainer.engine

        def engine(x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, relevance = inner(x, targets)
            return logits.flip(1), relevance

        return Explainer(explainer.name, model, explainer.backend, explainer.note, engine)

    monkeypatch.setattr(harness.engine, "make_explainer", swapped)
    world.makefile(".xai.yaml", signs=SUITE.format(explainer="[lrp, gradient/input_x_gradient]"))
    world.runpytest_inprocess("-p", "no:cacheprovider")
    rows = results_rows(world.path)
    by = {(r["variant"], r["explainer"]): r for r in rows}
    for variant in ("original", "instance_removed", "sticker_added"):
        swapped_row, lrp_row = by[(variant, "gradient/input_x_gradient")], by[(variant, "lrp/epsilon_plus_flat")]
        assert swapped_row["predicted"] == lrp_row["predicted"]
    assert by[("original", "gradient/input_x_gradient")]["predicted"] == "thing"


def test_validate_checks_every_explainer_of_the_list(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    suite = tmp_path / "s.xai.yaml"
    suite.write_text(
        "model: signs-shortcut\n"
        "explainer: [lrp, cam/nonsense, gradcam]\n"
        "cases:\n"
        "  - id: a\n"
        f"    image: {root / 'fixtures' / 'signs' / 'heldout' / 'speed_50_000.png'}\n"
        "    label: speed_50\n"
        "    object: {box: [1, 1, 10, 10]}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "harness", "validate", str(suite), "--models", str(root / "fixtures" / "models.yaml")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"{suite}:2: explainer: unknown explainer 'cam/nonsense'" in done.stdout
    assert done.stdout.strip().endswith("1 errors")
