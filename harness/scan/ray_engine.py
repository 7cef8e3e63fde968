"""Scale-out on Ray Data: the same :class:`ScanWorker` as one actor per GPU or CPU worker.

The driver builds a dataset of *paths* (with label and region JSON: a few hundred bytes
per image), ``map_batches`` runs one :class:`ScanWorker` per actor, each actor reads its
images itself, from storage every node can see, and sends back the batch's rows; the
driver writes them as parts, exactly as the local engine does, so resuming, the table
and the page are the same. Needs ``pip install "xai-harness[ray]"``.

On a cluster, ``--ray-address auto`` (on a cluster node) or ``ray://head:10001`` is
passed to ``ray.init(address=...)`` (or set ``RAY_ADDRESS``); every node needs the same
Python environment with the harness installed, and the images, the registry and the
weights at the same paths.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from harness.errors import HarnessError

from .manifest import ScanItem
from .progress import Progress
from .store import PartStore
from .worker import ScanSettings, ScanWorker

__all__ = ["ensure_ray", "run_ray"]


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError:
        raise HarnessError(
            "--engine ray needs Ray Data: pip install 'xai-harness[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to (or start) Ray once per process; returns the ``ray`` module.

    Without an address (and without ``RAY_ADDRESS``) a local runtime is started with
    ``num_cpus`` CPUs; with one, the process joins that cluster.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    return ray


def _plan(ray: Any, settings: ScanSettings, workers: int | None) -> tuple[int, dict[str, float]]:
    """How many actors, and what each reserves: one GPU each where the cluster has GPUs
    (and the scan is not pinned to the CPU), else one CPU each."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if (gpus and settings.device == "auto") or settings.device.startswith("cuda"):
        if not gpus:
            raise HarnessError(f"--device {settings.device}: the Ray cluster has no GPU")
        return workers or gpus, {"num_gpus": 1}
    return workers or max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}


def run_ray(
    items: Sequence[ScanItem],
    settings: ScanSettings,
    store: PartStore,
    batch_size: int,
    progress: Progress,
    workers: int | None = None,
    address: str | None = None,
) -> None:
    """Scan ``items`` on Ray Data and write one part per batch that comes back."""
    if not items:
        return
    ray = ensure_ray(address, workers)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the scan prints its own progress lines
    actors, reserve = _plan(ray, settings, workers)
    if reserve.get("num_gpus") and settings.device == "auto":
        settings = dataclasses.replace(settings, device="cuda")
    rows = [{"path": i.path, "label": i.label, "region": i.region or ""} for i in items]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batch_size)))
    results = dataset.map_batches(
        ScanWorker,
        fn_constructor_kwargs={"settings": dataclasses.asdict(settings)},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **reserve,
    )
    for table in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        if table.num_rows:
            store.write(table)
            progress.update(table.num_rows)
