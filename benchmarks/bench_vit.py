"""Cost of LRP and Grad-CAM on a vision transformer as a multiple of its forward pass.

Usage::

    .venv/bin/python benchmarks/bench_vit.py [--model vit_b_16] [--batch 8] [--threads 2]
                                             [--rounds 5] [--rule-set epsilon_plus_flat] [--json out.json]

torchvision's ``vit_b_16`` with random weights (the head re-initialised with a normal
distribution, since torchvision zeroes it and every logit would be 0), 224x224, CPU,
frozen parameters as the harness loads them. Timed interleaved, round by round, so that
load from other processes hits all three alike:

* the plain forward pass under ``torch.no_grad()`` (the reference);
* ``harness.attribution.transformer.TransformerLRP`` (the model's own forward for the
  logits, the relevance pass's forward and its modified gradient, the patch embedding's rule);
* ``harness.attribution.vit_cam.TokenGradCAM`` on its default layer.

Prints the median time per call, the median over rounds of each round's ratio to the
forward, and the conservation (relevance sum / target logit) of the last LRP call's rows
(each row explains its predicted class).
Nothing is asserted.
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

from harness.attribution.transformer import TransformerLRP  # noqa: E402
from harness.attribution.vit_cam import TokenGradCAM  # noqa: E402


def build(name: str) -> torch.nn.Module:
    model = frozen_model(name)
    # torchvision starts the head at zero, which would make every logit and map zero.
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def bench(name: str, batch: int, rounds: int, rule_set: str) -> dict[str, Any]:
    model = build(name)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        targets = model(x).argmax(1)  # the predicted class, what a test case's label usually is
    lrp = TransformerLRP(model, rule_set)
    cam = TokenGradCAM(model)
    results: dict[str, Any] = {}

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def explain() -> None:
        results["lrp"] = lrp(x, targets)

    def gradcam() -> None:
        cam(x, targets)

    calls = {"forward": forward, "lrp": explain, "gradcam": gradcam}
    for call in calls.values():
        call()  # warm-up
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            times[key].append(timed(call))
    logits, relevance = results["lrp"]
    target_logits = logits.gather(1, targets[:, None]).squeeze(1)
    conservation = (relevance.sum(dim=(1, 2, 3)) / target_logits).tolist()
    return {
        "model": name,
        "batch": batch,
        "rule_set": rule_set,
        "forward_s": statistics.median(times["forward"]),
        "lrp_s": statistics.median(times["lrp"]),
        "gradcam_s": statistics.median(times["gradcam"]),
        "lrp_ratio": statistics.median(r / f for f, r in zip(times["forward"], times["lrp"], strict=True)),
        "gradcam_ratio": statistics.median(g / f for f, g in zip(times["forward"], times["gradcam"], strict=True)),
        "conservation": conservation,
        "cam_layer": cam.layer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default="vit_b_16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rule-set", default="epsilon_plus_flat")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    row = bench(args.model, args.batch, args.rounds, args.rule_set)
    print(
        f"{row['model']}, batch {args.batch}, 224x224, CPU, {args.threads} threads, random weights, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"{'':<50} {'s per call':>10} {'x forward':>10}")
    print(f"{'forward (no_grad)':<50} {row['forward_s']:>10.3f} {1.0:>10.2f}")
    print(f"{'LRP ' + args.rule_set:<50} {row['lrp_s']:>10.3f} {row['lrp_ratio']:>10.2f}")
    print(f"{'Grad-CAM (' + row['cam_layer'] + ')':<50} {row['gradcam_s']:>10.3f} {row['gradcam_ratio']:>10.2f}")
    print("conservation (sum / target logit) per row:", " ".join(f"{c:.3f}" for c in row["conservation"]))
    if args.json is not None:
        args.json.write_text(json.dumps({"threads": args.threads, "row": row}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
