"""A generated folder of yield signs with a known share on brick, and the demo registry."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from harness.scan import ScanOptions, ScanSettings, run_scan
from harness.scan.run import ScanResult

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = str(ROOT / "fixtures" / "models.yaml")
COUNT = 40
BRICK_SHARE = 0.5


def _load_generator() -> ModuleType:
    # fixtures/ is data beside the package; the generator imports fixtures.signs itself.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("scan_folder", ROOT / "fixtures" / "signs" / "scan_folder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def yield_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """40 yield images, 20 of them on brick, with masks and a manifest (seeded)."""
    folder = tmp_path_factory.mktemp("yield")
    rows = _load_generator().write_yield_folder(folder, COUNT, BRICK_SHARE, seed=11)
    return folder, rows


@pytest.fixture(scope="session")
def registry() -> str:
    return REGISTRY


def scan_folder(folder: Path, out: Path, registry: str, model: str = "signs-shortcut", **options: object) -> ScanResult:
    """Scan the folder's manifest on the CPU in batches of 16."""
    settings = ScanSettings(model=model, registry=registry, device="cpu")
    return run_scan([str(folder / "manifest.csv")], None, out, settings, ScanOptions(batch_size=16, **options))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def shortcut_scan(
    yield_folder: tuple[Path, list[dict[str, str]]], registry: str, tmp_path_factory: pytest.TempPathFactory
) -> ScanResult:
    """The folder scanned locally with signs-shortcut, with a draft suite from cluster 1."""
    folder, _ = yield_folder
    return scan_folder(folder, tmp_path_factory.mktemp("scan"), registry, suite_from="cluster=1", sample=4)
