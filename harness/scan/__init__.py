"""Dataset scans: model + explainer over a folder or manifest, streaming and resumable.

With object regions a scan measures, per image, how much of the positive relevance lies
on the object, and per class the share of images whose relevance lies mostly outside it
(with a Wilson interval); SpRAy clusters each class's heatmaps into the strategies the
model uses (regions or not). It writes a Parquet table, an HTML page and, on request, a
draft suite; it runs locally or on Ray Data (``--engine ray``). See docs/scan.md.

The names below are imported on first use, so that ``python -m harness --help`` (which
builds the scan command's parser) imports neither pyarrow nor torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClassSummary",
    "ScanItem",
    "ScanOptions",
    "ScanResult",
    "ScanSettings",
    "ScanWorker",
    "SprayResult",
    "build_items",
    "run_scan",
    "spray",
    "wilson",
]


def __getattr__(name: str) -> Any:
    # Plain imports per module (no import by computed name: see tests/reliability/test_runtime_trust.py).
    if name in ("ScanItem", "build_items"):
        from . import manifest as module
    elif name in ("ScanOptions", "ScanResult", "run_scan"):
        from . import run as module  # type: ignore[no-redef]
    elif name in ("SprayResult", "spray"):
        from . import spray as module  # type: ignore[no-redef]
    elif name in ("ClassSummary", "wilson"):
        from . import stats as module  # type: ignore[no-redef]
    elif name in ("ScanSettings", "ScanWorker"):
        from . import worker as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)
