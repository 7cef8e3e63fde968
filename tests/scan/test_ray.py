"""The Ray Data engine on a local runtime with 2 CPUs gives the local engine's rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.scan.run import ScanResult

from .conftest import COUNT, scan_folder

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # One runtime for the module: starting Ray takes seconds.
    from harness.scan.ray_engine import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_ray_rows_equal_local_rows(
    local_ray: None,
    shortcut_scan: ScanResult,
    yield_folder: tuple[Path, list[dict[str, str]]],
    registry: str,
    tmp_path: Path,
) -> None:
    folder, _ = yield_folder
    result = scan_folder(folder, tmp_path, registry, engine="ray", workers=2)
    local, remote = shortcut_scan.table, result.table
    assert remote.num_rows == COUNT
    for name in ("path", "label", "predicted", "error", "has_region", "mostly_outside", "pointing_game", "cluster"):
        assert remote.column(name).to_pylist() == local.column(name).to_pylist(), name
    for name in ("p_label", "p_predicted", "target_logit", "relevance_sum", "mass", "lift", "rank_accuracy"):
        a = np.array(remote.column(name).to_pylist(), dtype=float)
        b = np.array(local.column(name).to_pylist(), dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        assert np.nanmax(np.abs(a - b)) <= 1e-5, name
    probabilities = np.array(remote.column("probabilities").to_pylist(), dtype=float)
    assert np.abs(probabilities - np.array(local.column("probabilities").to_pylist())).max() <= 1e-5
    maps_local = np.load(shortcut_scan.out_dir / "heatmaps.npy").astype(np.float32)
    maps_ray = np.load(result.out_dir / "heatmaps.npy").astype(np.float32)
    assert np.abs(maps_local - maps_ray).max() <= 1e-3  # float16 storage
    assert (result.out_dir / "index.html").is_file()
