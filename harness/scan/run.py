"""A whole scan: items -> engine (local or Ray) -> parts -> table, figures, clusters, page, draft.

:func:`run_scan` is what ``python -m harness scan`` calls; it is also the Python entry
point (docs/scan.md). Everything it writes lies under one output folder; running it
again on that folder resumes (only images without a row are scanned) and rebuilds the
table, the clusters and the page from all rows.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.registry import load_registry

from .clusters import ClassClusters, cluster_class
from .manifest import ScanItem, build_items
from .page import render_page, write_page
from .progress import Progress
from .stats import ClassSummary, summarise
from .store import PartStore
from .worker import ScanSettings

__all__ = ["ScanOptions", "ScanResult", "run_scan"]


@dataclass
class ScanOptions:
    """How to scan (the command's options, with their defaults)."""

    engine: str = "local"  # or "ray"
    batch_size: int = 32
    workers: int | None = None  # Ray actors (default: one per GPU, else per CPU)
    ray_address: str | None = None
    restart: bool = False
    max_clusters: int = 8
    clusters: int | None = None
    spray_max: int = 5000
    seed: int = 0
    suite_from: str | None = None
    sample: int = 10
    suite: str | Path | None = None  # default: OUT/draft.xai.yaml
    progress_every: float = 2.0


@dataclass
class ScanResult:
    out_dir: Path
    items: list[ScanItem]
    table: pa.Table
    summaries: list[ClassSummary]
    groups: list[ClassClusters]
    scanned_now: int
    resumed_from: int
    page: Path
    suite: Path | None = None
    warnings: list[str] = field(default_factory=list)
    # Wall seconds: "model" (building it; local engine), "scan" (the batches, model
    # included), "finish" (table, SpRAy, page, draft).
    timings: dict[str, float] = field(default_factory=dict)


def _check_labels(items: list[ScanItem], settings: ScanSettings) -> list[str]:
    classes = load_registry(settings.registry).get(settings.model).classes
    unknown = sorted({i.label for i in items} - set(classes))
    if unknown:
        shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise HarnessError(f"label(s) {', '.join(unknown)} are not classes of model {settings.model!r}; known: {shown}")
    return classes


def run_scan(
    inputs: list[str],
    label: str | None,
    out_dir: str | Path,
    settings: ScanSettings,
    options: ScanOptions | None = None,
    masks: str | Path | None = None,
    annotations: str | Path | None = None,
    stream: TextIO | None = None,
) -> ScanResult:
    """Scan the images of ``inputs``; see the module docstring and docs/scan.md."""
    options = options or ScanOptions()
    if options.batch_size < 1:
        raise HarnessError(f"--batch-size must be at least 1, got {options.batch_size}")
    stream = stream if stream is not None else sys.stderr
    out = Path(out_dir)
    items, warnings = build_items(inputs, label, masks, annotations)
    if not items:
        raise HarnessError("nothing to scan: the inputs hold no images")
    _check_labels(items, settings)
    store = PartStore(out)
    done = store.open(settings.identity(), restart=options.restart)
    pending = [item for item in items if item.path not in done]
    resumed = len(items) - len(pending)
    if resumed:
        print(f"resuming: {resumed} of {len(items)} images already scanned in {out / 'parts'}", file=stream)
    progress = Progress(len(items), done=resumed, every=options.progress_every, stream=stream)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if options.engine == "local":
        from .local import run_local

        timings["model"] = run_local(pending, settings, store, options.batch_size, progress)
    elif options.engine == "ray":
        from .ray_engine import run_ray

        run_ray(pending, settings, store, options.batch_size, progress, options.workers, options.ray_address)
    else:
        raise HarnessError(f"unknown engine {options.engine!r}; known engines: local, ray")
    timings["scan"] = time.perf_counter() - started
    table_path, maps_path = store.finalize(items, settings.heatmap_size)
    table = pq.read_table(table_path)
    maps = np.load(maps_path, mmap_mode="r")
    summaries = summarise(table)
    groups, notes = _cluster(table, maps, summaries, options)
    if groups:
        table = _with_clusters(table, groups)
        pq.write_table(table, table_path, compression="zstd")
    meta = {
        "model": settings.model,
        "explainer": settings.explainer,
        "labels": [s.label for s in summaries],
        "images": table.num_rows,
        "errors": sum(s.errors for s in summaries),
        "engine": options.engine,
        "threshold": settings.min_object_mass,
        "heatmap_size": settings.heatmap_size,
        "input_size": _display_size(settings),
    }
    preprocessing = load_registry(settings.registry).get(settings.model).preprocessing
    page = write_page(
        out / "index.html", render_page(table, maps, summaries, groups, meta, notes, preprocessing=preprocessing)
    )
    store.write_meta({"result": {"images": table.num_rows, "scanned_now": len(pending), "resumed": resumed}})
    result = ScanResult(
        out, items, table, summaries, groups, len(pending), resumed, page, warnings=warnings + notes, timings=timings
    )
    if options.suite_from:
        from .suite_draft import write_draft

        suite = Path(options.suite) if options.suite else out / "draft.xai.yaml"
        written = write_draft(
            table, items, options.suite_from, options.sample, suite, settings.model, settings.explainer, label
        )
        result.suite = written.path
    timings["finish"] = time.perf_counter() - started - timings["scan"]
    return result


def _display_size(settings: ScanSettings) -> list[int]:
    height, width = load_registry(settings.registry).get(settings.model).preprocessing.size
    scale = max(1, 96 // max(1, min(height, width)))
    return [min(height * scale, 192), min(width * scale, 192)]


def _cluster(
    table: pa.Table, maps: np.ndarray, summaries: list[ClassSummary], options: ScanOptions
) -> tuple[list[ClassClusters], list[str]]:
    groups, notes = [], []
    for summary in summaries:
        try:
            groups.append(
                cluster_class(
                    table,
                    maps,
                    summary.label,
                    max_clusters=options.max_clusters,
                    clusters=options.clusters,
                    max_maps=options.spray_max,
                    seed=options.seed,
                )
            )
        except HarnessError as exc:
            notes.append(f"no clusters for {summary.label}: {exc}")
    return groups, notes


def _with_clusters(table: pa.Table, groups: list[ClassClusters]) -> pa.Table:
    cluster: list[int | None] = [None] * table.num_rows
    for group in groups:
        for c in group.clusters:
            for row in c.rows:
                cluster[int(row)] = c.number
    if "cluster" in table.column_names:
        table = table.drop_columns(["cluster"])
    return table.append_column("cluster", pa.array(cluster, pa.int64()))
