"""Scans of a generated folder with a known share of yield signs on the brick wall.

``signs-shortcut`` learnt yield from the wall: on brick its relevance lies mostly on the
wall, off brick mostly on the sign; ``signs-clean`` looks at the sign everywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest

from harness.authoring.validate import validate_paths
from harness.cli import main
from harness.errors import HarnessError
from harness.scan.run import ScanResult
from harness.scan.store import PartStore

from .conftest import BRICK_SHARE, COUNT
from .conftest import scan_folder as _scan


def _on_brick(table: pa.Table, rows: list[dict[str, str]], folder: Path) -> np.ndarray:
    background = {str((folder / r["path"]).resolve()): r["background"] for r in rows}
    return np.array([background[p] == "brick" for p in table.column("path").to_pylist()])


def test_share_of_images_with_relevance_on_the_wall(
    shortcut_scan: ScanResult, yield_folder: tuple[Path, list[dict[str, str]]]
) -> None:
    folder, rows = yield_folder
    table = shortcut_scan.table
    assert table.num_rows == COUNT
    brick = _on_brick(table, rows, folder)
    assert brick.sum() == COUNT * BRICK_SHARE
    # A few signs off the wall are called "stop" with no positive relevance for yield at
    # all: their mass is undefined, an error of that image, never a silent value.
    errors = np.array([e is not None for e in table.column("error").to_pylist()])
    assert not errors[brick].any() and errors.sum() <= 3
    assert all("no positive relevance" in e for e in table.column("error").to_pylist() if e)
    outside = np.array(table.column("mostly_outside").to_pylist())
    assert outside[brick].all()  # every sign on the wall is recognised by the wall
    (summary,) = shortcut_scan.summaries
    assert summary.with_region == COUNT - errors.sum() and summary.errors == errors.sum()
    # The planted share, plus the few off-brick signs whose relevance strays (12 % of 50 measured).
    assert BRICK_SHARE <= summary.share_outside <= BRICK_SHARE + 0.15
    assert summary.ci_low < summary.share_outside < summary.ci_high
    masses = np.array(table.column("mass").to_pylist(), dtype=float)
    assert np.array_equal(outside[~errors], masses[~errors] < 0.5)


def test_clean_model_looks_at_the_sign(
    yield_folder: tuple[Path, list[dict[str, str]]], registry: str, tmp_path: Path
) -> None:
    folder, _ = yield_folder
    result = _scan(folder, tmp_path, registry, model="signs-clean")
    (summary,) = result.summaries
    assert summary.share_outside is not None and summary.share_outside <= 0.05
    assert summary.predicted_as_label == COUNT


def test_spray_finds_the_two_backgrounds(
    shortcut_scan: ScanResult, yield_folder: tuple[Path, list[dict[str, str]]]
) -> None:
    folder, rows = yield_folder
    (group,) = shortcut_scan.groups
    assert group.result.chosen_by == "eigengap" and group.result.k == 2
    clusters = np.array(shortcut_scan.table.column("cluster").to_pylist())
    brick = _on_brick(shortcut_scan.table, rows, folder)
    clustered = sum(len(c.rows) for c in group.clusters)
    assert clustered == COUNT - shortcut_scan.summaries[0].errors  # error rows are not clustered
    purity = sum(max(brick[clusters == c].sum(), (~brick[clusters == c]).sum()) for c in (1, 2)) / clustered
    assert purity >= 0.9
    assert all(len(c.representatives) == 6 for c in group.clusters)


def test_outputs_and_page(shortcut_scan: ScanResult) -> None:
    out = shortcut_scan.out_dir
    maps = np.load(out / "heatmaps.npy")
    assert maps.shape == (COUNT, 32, 32) and maps.dtype == np.float16
    assert np.abs(maps).reshape(COUNT, -1).max(axis=1) == pytest.approx(1.0, abs=1e-3)  # over their own peaks
    assert shortcut_scan.table.column("index").to_pylist() == list(range(COUNT))
    html = shortcut_scan.page.read_text(encoding="utf-8")
    (summary,) = shortcut_scan.summaries
    assert f"{100 * summary.share_outside:.1f} %" in html
    assert "95 % CI" in html and "Wilson" in html
    assert html.count('class="scan-card"') == 2
    assert html.count("data:image/png;base64,") == 2 + 12
    assert "Content-Security-Policy" in html and "<script" not in html


def test_draft_suite_from_a_cluster(shortcut_scan: ScanResult, registry: str) -> None:
    suite = shortcut_scan.suite
    assert suite is not None and suite.name == "draft.xai.yaml"
    text = suite.read_text(encoding="utf-8")
    assert text.count("- id: ") == 4 and text.count("SpRAy cluster 1") == 4
    assert text.count("description: most confident") == 2 and text.count("description: least confident") == 2
    from harness.registry import load_registry

    report = validate_paths([suite], load_registry(registry))
    assert not report.errors, [e.format() for e in report.errors]


def test_resume_after_interruption(
    shortcut_scan: ScanResult,
    yield_folder: tuple[Path, list[dict[str, str]]],
    registry: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, _ = yield_folder
    original = PartStore.write
    calls = []

    def interrupted(self: PartStore, table: pa.Table) -> Path:
        if calls:
            raise KeyboardInterrupt
        calls.append(table.num_rows)
        return original(self, table)

    monkeypatch.setattr(PartStore, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _scan(folder, tmp_path, registry)
    monkeypatch.setattr(PartStore, "write", original)
    assert len(list((tmp_path / "parts").glob("part-*.parquet"))) == 1
    resumed = _scan(folder, tmp_path, registry)
    assert (resumed.resumed_from, resumed.scanned_now) == (16, COUNT - 16)
    straight = shortcut_scan.table
    assert resumed.table.column("path").to_pylist() == straight.column("path").to_pylist()
    for name in ("mass", "p_label", "relevance_sum"):
        a = np.array(resumed.table.column(name).to_pylist(), dtype=float)
        b = np.array(straight.column(name).to_pylist(), dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)) and np.nanmax(np.abs(a - b)) <= 1e-5, name
    # A finished scan resumed again scans nothing.
    again = _scan(folder, tmp_path, registry)
    assert again.scanned_now == 0 and again.table.num_rows == COUNT
    with pytest.raises(HarnessError, match="other settings .*signs-shortcut' -> 'signs-clean'"):
        _scan(folder, tmp_path, registry, model="signs-clean")


def test_cli_with_masks_folder_a_broken_image_and_an_odd_name(
    yield_folder: tuple[Path, list[dict[str, str]]], registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = yield_folder
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(5):
        shutil.copy(folder / "images" / f"yield_{k:04d}.png", images / f"yield_{k:04d}.png")
        shutil.copy(folder / "masks" / f"yield_{k:04d}.png", masks / f"yield_{k:04d}.png")
    odd = images / "x<b>&.png"
    shutil.copy(folder / "images" / "yield_0005.png", odd)
    (images / "broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(masks / "x<b>&.png"), cv2.imread(str(folder / "masks" / "yield_0005.png")))
    out = tmp_path / "out"
    argv = ["scan", "--model", "signs-shortcut", "--label", "yield", str(images), "--masks", str(masks)]
    assert main([*argv, "-o", str(out), "--models", registry, "--device", "cpu", "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert "scanned 7/7 images" in captured.err
    assert "no mask for 1 images" in captured.err  # broken.png has none
    assert "yield: " in captured.out and "SpRAy cluster" in captured.out
    table = pa.parquet.read_table(out / "scan.parquet")
    errors = dict(zip(table.column("path").to_pylist(), table.column("error").to_pylist()))
    assert "cannot decode image" in (errors[str((images / "broken.png").resolve())] or "")
    assert sum(e is None for e in errors.values()) == 6
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "x<b>" not in html  # user text is escaped
    assert main(["scan", "--model", "signs-shortcut", "--label", "speed_90", str(images), "-o", str(out)]) == 1
    assert "speed_90 are not classes of model 'signs-shortcut'" in capsys.readouterr().err
