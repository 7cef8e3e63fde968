"""Scan throughput: the local engine against the bare batched LRP, and against Ray.

* **bare LRP**: ``harness.api.explain`` over tensors prepared beforehand (images read and
  preprocessed outside the clock), in batches: the floor a scan cannot beat.
* **local scan**: ``run_scan`` over the same images with their masks. *Whole run*:
  everything (building the model, reading, preprocessing, LRP, metrics, Parquet parts,
  then the table, SpRAy and the page); *batches only*: without the fixed costs before
  the first and after the last batch, the rate a large scan approaches.
* **Ray scan**: the same with ``--engine ray`` on a local runtime with ``--workers``
  actors (start of the runtime outside the clock; the actors' start, which builds
  their models, inside both figures).

The images are the yield folder of ``fixtures/signs/scan_folder.py`` (64x64, the demo
models), generated into a temporary folder. Figures are images per second, the median
of ``--rounds`` interleaved runs; *CPU ms/img* is this process's CPU time per image (a
measure of work that a machine busy with other jobs disturbs less than wall time;
with ``--threads 1`` no thread waits for another).

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

    def __init__(self, model_name: str, paths: list[str], batch: int, registry: str) -> None:
        self.model = load_model(model_name, registry=registry, device="cpu")
        self.x = self.model.prepare([read_rgb(p) for p in paths])
        self.batch = batch
        explain(self.model, self.x[:batch], "yield")  # bind the explainer outside the clock

    def rate(self) -> tuple[float, float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(self.x), self.batch):
            explain(self.model, self.x[i : i + self.batch], "yield")
        wall = len(self.x) / (time.perf_counter() - start)
        return wall, wall, (time.process_time() - cpu) * 1000 / len(self.x)


def _scan(folder: Path, model: str, batch: int, engine: str, workers: int, registry: str) -> tuple[float, float, float]:
    """Images/s of one whole scan into a fresh output folder, and of its batches alone
    (building the model, and the table, SpRAy and page after the last batch, left out);
    CPU milliseconds per image of this process (the whole run; Ray's actors not included)."""
    settings = ScanSettings(model=model, registry=registry, device="cpu")
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        result = run_scan(
            [str(folder / "manifest.csv")],
            None,
            out,
            settings,
            ScanOptions(engine=engine, batch_size=batch, workers=workers, progress_every=1e9),
            stream=io.StringIO(),
        )
        whole = result.table.num_rows / (time.perf_counter() - start)
        batches = result.table.num_rows / (result.timings["scan"] - result.timings.get("model", 0.0))
        return whole, batches, (time.process_time() - cpu) * 1000 / result.table.num_rows


def _vgg_registry(work: Path) -> str:
    """A registry with ``bench-vgg11``: torchvision's vgg11, seeded random weights, 224x224
    (a real-sized model, whose LRP costs far more than reading an image)."""
    import torchvision
    import yaml

    torch.manual_seed(0)
    torch.save(torchvision.models.vgg11(num_classes=6).state_dict(), work / "vgg11.pt")
    classes = ["speed_30", "speed_50", "speed_70", "stop", "yield", "background"]
    entry = {
        "architecture": "torchvision:vgg11",
        "args": {"num_classes": 6},
        "weights": str(work / "vgg11.pt"),
        "classes": classes,
        "preprocessing": {"size": [224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    }
    path = work / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {"bench-vgg11": entry}}))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--model", default="signs-shortcut", help="a model of fixtures/models.yaml, or bench-vgg11 (224x224, random)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads of this process")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "yield"
        rows = write_yield_folder(folder, args.count, 0.5, seed=3)
        paths = [str((folder / r["path"]).resolve()) for r in rows]
        registry = _vgg_registry(Path(tmp)) if args.model == "bench-vgg11" else REGISTRY
        bare_runner = _Bare(args.model, paths, args.batch, registry)
        engines = ["local"] if args.no_ray else ["local", "ray"]
        if not args.no_ray:
            from harness.scan.ray_engine import ensure_ray

            ensure_ray(num_cpus=args.workers)  # the runtime's start-up is not part of a scan
        rates: dict[str, list[tuple[float, float, float]]] = {"bare": [], "local": [], "ray": []}
        # Interleaved rounds: a machine whose load changes affects every setup alike.
        for _ in range(args.rounds):
            rates["bare"].append(bare_runner.rate())
            for engine in engines:
                rates[engine].append(_scan(folder, args.model, args.batch, engine, args.workers, registry))
    figures: dict[str, float] = {"images": args.count, "batch": args.batch}
    for name in ("bare", *engines):
        figures[f"{name}_whole"] = statistics.median(r[0] for r in rates[name])
        figures[f"{name}_batches"] = statistics.median(r[1] for r in rates[name])
        figures[f"{name}_cpu_ms"] = statistics.median(r[2] for r in rates[name])
    bare = figures["bare_whole"]
    print(f"{args.count} yield images of 64x64, {args.model}, batch {args.batch}, {args.threads} torch threads, CPU")
    print(f"{'setup':<34}{'whole run':>12}{'vs bare':>9}{'batches only':>15}{'vs bare':>9}{'CPU ms/img':>12}")
    names = {"bare": "bare batched LRP (preloaded)", "local": "local scan", "ray": f"Ray scan, {args.workers} workers"}
    for name in ("bare", *engines):
        whole, only = figures[f"{name}_whole"], figures[f"{name}_batches"]
        cpu = figures[f"{name}_cpu_ms"]
        cpu_text = "(actors)" if name == "ray" else f"{cpu:.2f}"
        line = f"{names[name]:<34}{whole:>8.1f} i/s{whole / bare:>8.2f}x{only:>11.1f} i/s{only / bare:>8.2f}x"
        print(f"{line}{cpu_text:>12}")
    if "ray_whole" in figures:
        print(f"Ray vs local, whole runs: {figures['ray_whole'] / figures['local_whole']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
