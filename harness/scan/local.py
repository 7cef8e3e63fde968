"""The default engine: batches in this process, one part written per batch.

On a GPU the next batch is read on a helper thread while the model works on the current
one (image decoding in OpenCV frees the GIL, and the CPU is otherwise idle). On the CPU
the batches are read in line: torch's intra-op threads already use every core, and a
reading thread beside them slowed the LRP by 30-70 % on a 2-core machine (its OpenMP
threads wait for each other whenever one loses its core), more than the reading costs.
Each batch's rows are written as a part and dropped, so memory stays that of two
batches whatever the number of images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .manifest import ScanItem
from .progress import Progress
from .store import PartStore
from .worker import ScanSettings, ScanWorker

__all__ = ["batches", "run_local"]


def batches(items: Sequence[ScanItem], size: int) -> list[dict[str, list[Any]]]:
    """The items as column batches of at most ``size`` rows (what a worker takes)."""
    out: list[dict[str, list[Any]]] = []
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        out.append(
            {
                "path": [i.path for i in chunk],
                "label": [i.label for i in chunk],
                "region": [i.region for i in chunk],
            }
        )
    return out


def run_local(
    items: Sequence[ScanItem],
    settings: ScanSettings,
    store: PartStore,
    batch_size: int,
    progress: Progress,
    worker: ScanWorker | None = None,
) -> float:
    """Scan ``items`` (the ones still to do) and write one part per batch; returns the
    seconds spent building the model (a fixed cost, reported apart from the throughput)."""
    if not items:
        return 0.0
    start = time.perf_counter()
    worker = worker or ScanWorker(settings)
    built = time.perf_counter() - start
    chunks = batches(items, batch_size)
    if worker.model.device.type == "cpu":
        for chunk in chunks:
            table = worker.compute(worker.load(chunk))
            store.write(table)
            progress.update(table.num_rows)
        return built
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xai-scan-read") as reader:
        ahead: Future = reader.submit(worker.load, chunks[0])
        for k in range(len(chunks)):
            loaded = ahead.result()
            if k + 1 < len(chunks):
                ahead = reader.submit(worker.load, chunks[k + 1])
            table = worker.compute(loaded)
            store.write(table)
            progress.update(table.num_rows)
    return built
