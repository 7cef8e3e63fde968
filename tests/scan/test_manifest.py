"""Scan inputs: folders, manifests, regions, masks and annotations."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import HarnessError
from harness.scan.manifest import build_items, parse_region


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    return path


def test_folder_with_masks_beside_the_images(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    cv2.imwrite(str(tmp_path / "a_mask.png"), np.full((8, 8), 255, np.uint8))
    items, warnings = build_items([str(tmp_path)], "yield")
    assert [Path(i.path).name for i in items] == ["a.png", "b.png"]  # the mask is not an image
    assert [i.index for i in items] == [0, 1]
    assert parse_region(items[0].region or "").mask == str((tmp_path / "a_mask.png").resolve())
    assert items[1].region is None and warnings == []


def test_manifest_regions_and_label_filter(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        _image(tmp_path / "img" / f"{name}.png")
    (tmp_path / "m.csv").write_text(
        "path,label,region\n"
        'img/a.png,yield,"{""box"": [1, 1, 4, 4]}"\n'
        'img/b.png,yield,"{""polygon"": [[0, 0], [5, 0], [0, 5]]}"\n'
        "img/c.png,yield,masks/c.png\n"
        "img/d.png,stop,\n",
        encoding="utf-8",
    )
    items, warnings = build_items([str(tmp_path / "m.csv")], "yield")
    assert len(items) == 3 and "1 rows of other classes left out" in warnings[0]
    assert parse_region(items[0].region or "").box == (1, 1, 4, 4)
    assert len(parse_region(items[1].region or "").polygon or []) == 3
    assert json.loads(items[2].region or "")["mask"] == str((tmp_path / "masks" / "c.png").resolve())


def test_parquet_manifest_without_labels_takes_the_option(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    pq.write_table(pa.table({"path": ["a.png"]}), tmp_path / "m.parquet")
    items, _ = build_items([str(tmp_path / "m.parquet")], "stop")
    assert items[0].label == "stop" and items[0].path == str((tmp_path / "a.png").resolve())
    with pytest.raises(HarnessError, match="no label: give --label"):
        build_items([str(tmp_path / "m.parquet")], None)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ('"{""box"": [1, 1}"', "m.csv:2: region: not valid JSON"),
        ('"{""box"": [4, 4, 1, 1]}"', "m.csv:2: region: .*x1 > x0"),
        ('"{""circle"": 3}"', "m.csv:2: region: .*mask, polygon, box"),
    ],
)
def test_bad_regions_name_the_line(tmp_path: Path, cell: str, message: str) -> None:
    (tmp_path / "m.csv").write_text(f"path,region\na.png,{cell}\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=message):
        build_items([str(tmp_path / "m.csv")], "yield")


def test_manifest_needs_a_path_column_and_inputs_must_match(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("image,label\na.png,yield\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="needs a 'path' column"):
        build_items([str(tmp_path / "m.csv")], None)
    with pytest.raises(HarnessError, match="no images match"):
        build_items([str(tmp_path / "nothing" / "*.png")], "yield")


def test_masks_folder_and_annotations_attach_regions(tmp_path: Path) -> None:
    _image(tmp_path / "img" / "a.png")
    _image(tmp_path / "img" / "b.png")
    cv2.imwrite(str(_image(tmp_path / "masks" / "a.png")), np.full((8, 8), 255, np.uint8))
    items, warnings = build_items([str(tmp_path / "img")], "yield", masks_dir=tmp_path / "masks")
    assert items[0].region is not None and items[1].region is None
    assert "no mask for 1 images" in warnings[0]
    (tmp_path / "ann.csv").write_text('path,region\nelsewhere/b.png,"{""box"": [0, 0, 2, 2]}"\n', encoding="utf-8")
    items, warnings = build_items([str(tmp_path / "img")], "yield", annotations=tmp_path / "ann.csv")
    assert items[0].region is None  # attached by file name when the path differs
    assert parse_region(items[1].region or "").box == (0, 0, 2, 2)
    assert "no region for 1 images" in warnings[0]


def test_worker_normalises_exactly_as_the_model(registry: str) -> None:
    import torch

    from harness.scan.worker import ScanSettings, ScanWorker

    worker = ScanWorker(ScanSettings(model="signs-clean", registry=registry, device="cpu"))
    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    ours = torch.from_numpy(worker.normalise(images)).permute(0, 3, 1, 2)
    theirs = worker.model.to_input(images)
    assert torch.equal(ours, theirs) and ours.stride() == theirs.stride()
