"""Scan throughput: the local engine against the bare batched LRP, and against Ray.

* **bare LRP**: ``harness.api.explain`` over tensors prepared beforehand (images read and
  preprocessed outside the clock), in batches: the floor a scan cannot beat.
* **local scan**: ``run_scan`` over the same images with their masks, everything
  included: reading, preprocessing, LRP, metrics, Parquet parts, final table, SpRAy and
  the page (the table, clusters and page also timed on their own).
* **Ray scan**: the same with ``--engine ray`` on a local runtime with ``--workers``
  actors (startup of the runtime outside the clock; actor start-up inside it).

The images are the yield folder of ``fixtures/signs/scan_folder.py`` (64x64, the demo
models), generated into a temporary folder. Figures are images per second, the median
of ``--rounds`` interleaved runs.

    .venv/bin/python benchmarks/bench_scan.py --count 1024 --rounds 3 --workers 2
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.signs.scan_folder import write_yield_folder  # noqa: E402
from harness.api import explain, load_model  # noqa: E402
from harness.imageio import read_rgb  # noqa: E402
from harness.scan import ScanOptions, ScanSettings, run_scan  # noqa: E402

REGISTRY = str(ROOT / "fixtures" / "models.yaml")


class _Bare:
    """The bare batched LRP over tensors prepared outside the clock."""

    def __init__(self, model_name: str, paths: list[str], batch: int) -> None:
        self.model = load_model(model_name, registry=REGISTRY, device="cpu")
        self.x = self.model.prepare([read_rgb(p) for p in paths])
        self.batch = batch
        explain(self.model, self.x[:batch], "yield")  # bind the explainer outside the clock

    def rate(self) -> float:
        start = time.perf_counter()
        for i in range(0, len(self.x), self.batch):
            explain(self.model, self.x[i : i + self.batch], "yield")
        return len(self.x) / (time.perf_counter() - start)


def _scan(folder: Path, model: str, batch: int, engine: str, workers: int) -> float:
    """Images/s of one whole scan into a fresh output folder."""
    settings = ScanSettings(model=model, registry=REGISTRY, device="cpu")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_scan(
            [str(folder / "manifest.csv")],
            None,
            out,
            settings,
            ScanOptions(engine=engine, batch_size=batch, workers=workers, progress_every=1e9),
            stream=io.StringIO(),
        )
        return result.table.num_rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="signs-shortcut")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of this process")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "yield"
        rows = write_yield_folder(folder, args.count, 0.5, seed=3)
        paths = [str((folder / r["path"]).resolve()) for r in rows]
        bare_runner = _Bare(args.model, paths, args.batch)
        engines = ["local"] if args.no_ray else ["local", "ray"]
        if not args.no_ray:
            from harness.scan.ray_engine import ensure_ray

            ensure_ray(num_cpus=args.workers)  # the runtime's start-up is not part of a scan
        rates: dict[str, list[float]] = {"bare": [], "local": [], "ray": []}
        # Interleaved rounds: a machine whose load changes affects every setup alike.
        for _ in range(args.rounds):
            rates["bare"].append(bare_runner.rate())
            for engine in engines:
                rates[engine].append(_scan(folder, args.model, args.batch, engine, args.workers))
        bare = statistics.median(rates["bare"])
        local = statistics.median(rates["local"])
        figures = {"images": args.count, "batch": args.batch, "bare_lrp": bare, "local_scan": local}
        if not args.no_ray:
            figures["ray_scan"] = statistics.median(rates["ray"])
    print(f"{args.count} images of 64x64, {args.model}, batch {args.batch}, {args.threads} torch threads, CPU")
    print(f"{'setup':<34}{'images/s':>10}{'vs bare LRP':>14}")
    print(f"{'bare batched LRP (preloaded)':<34}{bare:>10.0f}{1.0:>13.2f}x")
    print(f"{'local scan (everything)':<34}{local:>10.0f}{local / bare:>13.2f}x")
    if "ray_scan" in figures:
        ray_rate = figures["ray_scan"]
        print(f"{f'Ray scan, {args.workers} local workers':<34}{ray_rate:>10.0f}{ray_rate / bare:>13.2f}x")
        print(f"Ray vs local: {ray_rate / local:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
