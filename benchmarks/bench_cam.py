"""Cost of Grad-CAM as a multiple of the model's forward pass.

Usage::

    .venv/bin/python benchmarks/bench_cam.py [--models resnet18,vgg11] [--batch 8] [--threads 2]
                                             [--rounds 5] [--json out.json]

For each torchvision model (random weights, 224x224, CPU, frozen parameters as the harness
loads them) it times, interleaved round by round so that load from other processes hits
both alike:

* the plain forward pass under ``torch.no_grad()`` (the reference),
* ``harness.attribution.cam.GradCAM`` on its default layer (the last convolution the logits
  depend on): one forward with autograd from that layer on, one ``torch.autograd.grad``
  of the batch's target logits (one target per row), pooling, weighting and the bilinear
  upsampling,

and prints the median time per call and the median over rounds of each round's ratio.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from common import frozen_model, timed  # noqa: E402

from harness.attribution.cam import GradCAM, last_conv_layer  # noqa: E402


def bench(name: str, batch: int, rounds: int) -> dict[str, Any]:
    model = frozen_model(name)
    x = torch.randn(batch, 3, 224, 224)
    targets = torch.arange(batch) % 1000
    cam = GradCAM(model, last_conv_layer(model, x))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def gradcam() -> None:
        cam(x, targets)

    forward()
    gradcam()  # warm-up
    times: dict[str, list[float]] = {"forward": [], "gradcam": []}
    for _ in range(rounds):
        times["forward"].append(timed(forward))
        times["gradcam"].append(timed(gradcam))
    ratios = [g / f for f, g in zip(times["forward"], times["gradcam"], strict=True)]
    return {
        "model": name,
        "layer": cam.layer,
        "batch": batch,
        "forward_s": statistics.median(times["forward"]),
        "gradcam_s": statistics.median(times["gradcam"]),
        "ratio": statistics.median(ratios),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,vgg11")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [bench(name, args.batch, args.rounds) for name in args.models.split(",")]
    print(
        f"Grad-CAM vs forward, batch {args.batch}, 224x224, CPU, {args.threads} threads, median of {args.rounds} rounds"
    )
    print(f"{'model':<10} {'layer':<16} {'forward s':>10} {'Grad-CAM s':>11} {'x forward':>10}")
    for row in rows:
        print(
            f"{row['model']:<10} {row['layer']:<16} {row['forward_s']:>10.3f} {row['gradcam_s']:>11.3f} "
            f"{row['ratio']:>10.2f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
