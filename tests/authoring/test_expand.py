"""Image globs with a mask naming pattern: `import masks` and `new --glob`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.authoring.expand import expand, label_from_stem, mask_path
from harness.regions import rasterize
from harness.spec import load_suite


def _folder(tmp_path: Path, write_image, write_mask) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path / "shots"
    masks = {}
    for n, (stem, box) in enumerate(
        {"canine_000": (2, 3, 12, 14), "canine_001": (5, 5, 25, 20), "feline_000": (0, 10, 8, 29)}.items()
    ):
        write_image(folder / f"{stem}.png", 30, 40, seed=n)
        mask = np.zeros((30, 40), bool)
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = True
        write_mask(folder / f"{stem}_mask.png", mask)
        masks[stem] = mask
    write_image(folder / "canine_002.png", 30, 40, seed=9)  # no mask
    (folder / "notes.txt").write_text("not an image")
    return folder, masks


def test_expand_pairs_images_with_masks(tmp_path: Path, write_image, write_mask) -> None:
    folder, _ = _folder(tmp_path, write_image, write_mask)
    pairs = expand(folder)
    assert [p.image.name for p in pairs] == ["canine_000.png", "canine_001.png", "canine_002.png", "feline_000.png"]
    assert [p.mask.name if p.mask else None for p in pairs] == [
        "canine_000_mask.png",
        "canine_001_mask.png",
        None,
        "feline_000_mask.png",
    ]
    assert mask_path(Path("a/b.png"), "../masks/{stem}{suffix}") == Path("a/../masks/b.png")
    assert label_from_stem("speed_50_003", r"^(?P<label>.+)_\d+$") == "speed_50"


def test_import_masks(tmp_path: Path, write_image, write_mask, registry: Path, cli) -> None:
    folder, masks = _folder(tmp_path, write_image, write_mask)
    suite = tmp_path / "suites" / "shots.xai.yaml"
    code, _, err = cli(
        "import",
        "masks",
        folder,
        "--label-regex",
        r"^(?P<label>[a-z]+)_\d+$",
        "-o",
        suite,
        "--model",
        "pets",
        "--models",
        registry,
    )
    assert code == 0, err
    assert "canine_002.png: no mask" in err
    spec = load_suite(suite)
    assert {c.case_id: c.label for c in spec.cases} == {
        "canine_000": "canine",
        "canine_001": "canine",
        "feline_000": "feline",
    }
    for case in spec.cases:
        assert np.array_equal(rasterize(case.regions, (30, 40), case.base_dir), masks[case.case_id])
    assert "mask: ../shots/canine_000_mask.png" in suite.read_text()


def test_new_with_glob_writes_one_case_per_image(tmp_path: Path, write_image, write_mask, registry: Path, cli) -> None:
    folder, masks = _folder(tmp_path, write_image, write_mask)
    suite = tmp_path / "dogs.xai.yaml"
    code, out, err = cli(
        "new",
        suite,
        "--glob",
        str(folder / "canine_*.png"),
        "--mask-pattern",
        "{stem}_mask.png",
        "--label",
        "canine",
        "--id",
        "dog_{stem}",
        "--model",
        "pets",
        "--models",
        registry,
    )
    assert code == 0, err
    spec = load_suite(suite)
    assert [c.case_id for c in spec.cases] == ["dog_canine_000", "dog_canine_001"]
    assert np.array_equal(rasterize(spec.cases[1].regions, (30, 40), spec.cases[1].base_dir), masks["canine_001"])


def test_new_with_glob_and_a_shared_box(tmp_path: Path, write_image, write_mask, registry: Path, cli) -> None:
    folder, _ = _folder(tmp_path, write_image, write_mask)
    suite = tmp_path / "boxes.xai.yaml"
    code, _, err = cli(
        "new",
        suite,
        "--glob",
        str(folder / "*.png"),
        "--box",
        1,
        1,
        10,
        10,
        "--label",
        "canine",
        "--model",
        "pets",
        "--models",
        registry,
    )
    assert code == 0, err
    spec = load_suite(suite)
    assert len(spec.cases) == 4 and all(c.regions[0].box == (1, 1, 10, 10) for c in spec.cases)
