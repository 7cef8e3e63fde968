"""The command line through main(argv), and once as `python -m harness`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import build_parser, main
from harness.spec import load_suite

COMMANDS = ("validate", "schema", "new", "import", "sample")


def test_python_dash_m_lists_the_commands() -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert command in done.stdout
    assert "pytest testcases/ --xai-report reports/index.html" in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"python -m harness {command}" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_schema(tmp_path: Path, cli) -> None:
    code, out, _ = cli("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "xai-harness suite" and "cases" in schema["properties"]
    target = tmp_path / "docs" / "suite.schema.json"
    code, out, _ = cli("schema", "--output", target)
    assert code == 0 and json.loads(target.read_text()) == schema


def test_new_then_append(tmp_path: Path, write_image, write_mask, registry: Path, cli) -> None:
    image = write_image(tmp_path / "img" / "a.png", 30, 40)
    mask = np.zeros((30, 40), bool)
    mask[5:15, 5:20] = True
    write_mask(tmp_path / "img" / "a_mask.png", mask)
    suite = tmp_path / "testcases" / "pets.xai.yaml"
    code, out, err = cli(
        "new",
        suite,
        "--model",
        "pets",
        "--models",
        registry,
        "--image",
        image,
        "--mask",
        tmp_path / "img" / "a_mask.png",
        "--label",
        "canine",
        "--schema-hook",
        "../docs/suite.schema.json",
    )
    assert code == 0, err
    assert "wrote 1 case(s)" in out and "next: python -m harness validate" in out
    suite.write_text(suite.read_text() + "  # my own note\n")
    code, _, err = cli(
        "new",
        suite,
        "--models",
        registry,
        "--image",
        image,
        "--box",
        1,
        2,
        30,
        20,
        "--label",
        "wolf",
        "--id",
        "a box",
        "--skip",
        "waiting for a better photo",
        "--tag",
        "boxes",
    )
    assert code == 0
    assert "class 'wolf' is not a class of model 'pets'" in err  # the model is read from the suite
    code, _, _ = cli(
        "new",
        suite,
        "--models",
        registry,
        "--image",
        image,
        "--polygon",
        "1,1",
        "20,1",
        "10,15",
        "--label",
        "feline",
        "--xfail",
        "known",
    )
    text = suite.read_text()
    assert "  # my own note\n" in text
    spec = load_suite(suite)
    assert [c.case_id for c in spec.cases] == ["a", "a_box", "a_2"]
    assert spec.cases[1].skip == "waiting for a better photo" and spec.cases[1].tags == ["boxes"]
    assert spec.cases[2].xfail == "known" and spec.cases[2].regions[0].polygon == [(1, 1), (20, 1), (10, 15)]
    code, out, _ = cli("validate", suite, "--models", registry)
    assert code == 1 and "unknown class 'wolf'" in out and out.strip().endswith("1 suites, 3 cases, 1 errors")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image", "x.png", "--label", "a"], "give the object"),
        (["--image", "x.png", "--box", "1", "1", "5", "5"], "--label"),
        (["--image", "missing.png", "--box", "1", "1", "5", "5", "--label", "a"], "image not found"),
        (["--image", "x.png", "--box", "5", "5", "1", "1", "--label", "a"], "X1 > X0"),
        (["--image", "x.png", "--polygon", "1,1", "2", "--label", "a"], "X,Y"),
    ],
)
def test_new_usage_errors(
    argv: list[str], message: str, tmp_path: Path, write_image, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "x.png")
    code, _, err = cli("new", "s.xai.yaml", "--model", "pets", *argv)
    assert code == 2 and message in err
    assert not (tmp_path / "s.xai.yaml").exists()


def test_new_suite_needs_a_model(tmp_path: Path, write_image, cli) -> None:
    image = write_image(tmp_path / "x.png")
    code, _, err = cli(
        "new",
        tmp_path / "s.xai.yaml",
        "--image",
        image,
        "--box",
        1,
        1,
        5,
        5,
        "--label",
        "a",
        "--models",
        tmp_path / "none.yaml",
    )
    assert code == 2 and "--model" in err


def test_map_file(tmp_path: Path, write_image, registry: Path, cli) -> None:
    image = write_image(tmp_path / "a.png", 30, 40)
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "shapes": [
                    {"label": "Hund", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon"},
                    {"label": "Mensch", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon"},
                ],
                "imagePath": image.name,
                "imageHeight": 30,
                "imageWidth": 40,
            }
        )
    )
    (tmp_path / "map.yaml").write_text("Hund: canine\nMensch: null\n")
    suite = tmp_path / "mapped.xai.yaml"
    code, _, err = cli(
        "import",
        "labelme",
        tmp_path / "a.json",
        "-o",
        suite,
        "--model",
        "pets",
        "--models",
        registry,
        "--map-file",
        tmp_path / "map.yaml",
    )
    assert code == 0, err
    assert [c.label for c in load_suite(suite).cases] == ["canine"]
    assert "'Mensch' (mapped to nothing)" in err


def test_parser_is_built_without_torch() -> None:
    # --help must stay quick: the parser does not need the model code.
    code = "import sys; from harness.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
    assert build_parser().prog
