"""LRP + Grad-CAM over one batch: one shared forward vs each explainer's own (issue #13).

Usage::

    .venv/bin/python benchmarks/bench_shared.py [--models resnet18] [--batch 8] [--threads 2]
                                                [--rounds 5] [--cpu-time] [--json out.json]

For each torchvision model (random weights, 224x224, CPU, frozen parameters) it times,
interleaved round by round so that load from other processes hits every variant alike:

* ``forward``: the plain forward under ``torch.no_grad()`` (the unit of the ratios),
* ``separate``: the graph LRP engine (``epsilon_plus_flat``) then ``GradCAM`` on the last
  convolution, each with its own forward (what the engine ran before),
* ``shared``: :class:`harness.attribution.shared.SharedForward`, the LRP engine's forward
  serving both, Grad-CAM's gradient from the layers after its layer only,

and prints the median time per call and the median of each round's ratio to the forward.
``--cpu-time`` measures process CPU seconds instead of wall time (for a machine shared with
other jobs, whose wall times mean little). Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from common import frozen_model  # noqa: E402

from harness.attribution.cam import GradCAM, last_conv_layer  # noqa: E402
from harness.attribution.graph import GraphLRP  # noqa: E402
from harness.attribution.shared import SharedForward  # noqa: E402


def bench(name: str, batch: int, rounds: int, clock: Callable[[], float]) -> dict[str, Any]:
    model = frozen_model(name)
    x = torch.randn(batch, 3, 224, 224)
    targets = torch.arange(batch) % 1000
    lrp = GraphLRP(model, "epsilon_plus_flat")
    cam = GradCAM(model, last_conv_layer(model, x))
    shared = SharedForward(lrp, cam)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def separate() -> None:
        lrp(x, targets)
        cam(x, targets)

    def together() -> None:
        shared(x, targets)

    calls = {"forward": forward, "separate": separate, "shared": together}
    for call in calls.values():
        call()  # warm-up
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            start = clock()
            call()
            times[key].append(clock() - start)
    ratio = {
        key: statistics.median(t / f for f, t in zip(times["forward"], times[key], strict=True))
        for key in ("separate", "shared")
    }
    return {
        "model": name,
        "layer": cam.layer,
        "batch": batch,
        **{f"{key}_s": statistics.median(values) for key, values in times.items()},
        "separate_x_forward": ratio["separate"],
        "shared_x_forward": ratio["shared"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default="resnet18")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu-time", action="store_true", help="process CPU seconds instead of wall time")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    rows = [bench(name, args.batch, args.rounds, clock) for name in args.models.split(",")]
    unit = "CPU s" if args.cpu_time else "s"
    print(
        f"LRP (epsilon_plus_flat, graph engine) + Grad-CAM, batch {args.batch}, 224x224, CPU, {args.threads} threads, "
        f"median of {args.rounds} rounds ({'CPU time' if args.cpu_time else 'wall time'})"
    )
    print(
        f"{'model':<10} {'forward ' + unit:>12} {'separate ' + unit:>13} {'shared ' + unit:>11} "
        f"{'separate x fwd':>15} {'shared x fwd':>13} {'saved':>6}"
    )
    for row in rows:
        saved = 1 - row["shared_s"] / row["separate_s"]
        print(
            f"{row['model']:<10} {row['forward_s']:>12.3f} {row['separate_s']:>13.3f} {row['shared_s']:>11.3f} "
            f"{row['separate_x_forward']:>15.2f} {row['shared_x_forward']:>13.2f} {saved:>6.0%}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"threads": args.threads, "cpu_time": args.cpu_time, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
