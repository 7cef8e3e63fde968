"""How fast an exact LRP could be at best: the arithmetic floor of zennit's rules, next to
the graph engine's measured time, both as multiples of the plain forward pass.

Usage::

    .venv/bin/python benchmarks/zplus_floor.py [--models mobilenet_v2,efficientnet_b0] \
        [--batch 8] [--threads 2] [--rounds 7]

Beyond the forward pass (which LRP needs for the activations and the logits), each
Conv2d/Linear layer's rule needs these products of the layer's size, whatever the
implementation, if the result is to equal zennit's:

* z+ of a non-negative input (after a ReLU): the denominator ``W+ a`` and the transpose
  ``W+^T s``: 2;
* z+ of a signed input (after SiLU, Hardswish, a batch norm or a residual sum): the
  denominator ``W+ a+ + W- a-`` (one product, on ``|a|``, using the layer's own output)
  and both ``W+^T s`` and ``W-^T s``, since ``a+`` and ``a-`` meet different weights: 3;
* epsilon (dense layers) and flat (first layer): the transpose only: 1.

The floor is the forward time plus, per layer, that count times the layer's own time in
the same forward call (timed with hooks; median over calls), i.e. it assumes a transposed product costs what the
layer's forward costs and that everything else (divisions, masks, sums, max-pool
routing) is free.  EfficientNet-B0 has only signed inputs, so its floor is about
``1 + 3 x`` (share of convolutions in its forward).  Prints figures only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

# the models and inputs bench_lrp.py times (random weights, random batch-norm statistics);
# importing it also puts the repository root on sys.path for the harness imports below
from bench_lrp import build_model, make_batch

from harness.attribution import rules
from harness.attribution.graph import GraphLRP
from harness.attribution.trace import Kind


def products(rule: rules.AffineRule) -> int:
    """Layer-sized products the rule needs beyond the forward pass."""
    if rule.rule == rules.ZPLUS:
        return 2 if rule.nonneg else 3
    return 1


def floor_per_call(
    model: torch.nn.Module, x: torch.Tensor, weight: dict[torch.nn.Module, int], rounds: int
) -> tuple[list[float], list[float], list[float]]:
    """Per forward call (hooks timing every Conv2d/Linear within it): the call's seconds, the
    share of it spent in those layers, and the floor as a multiple of the call."""
    start: dict[torch.nn.Module, float] = {}
    spent: dict[torch.nn.Module, float] = {}

    def before(module: torch.nn.Module, _: Any) -> None:
        start[module] = time.perf_counter()

    def after(module: torch.nn.Module, _: Any, __: Any) -> None:
        spent[module] = time.perf_counter() - start[module]

    handles = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    totals, shares, floors = [], [], []
    with torch.no_grad():
        model(x)
        for _ in range(rounds):
            spent.clear()
            begin = time.perf_counter()
            model(x)
            total = time.perf_counter() - begin
            totals.append(total)
            shares.append(sum(spent.values()) / total)
            floors.append(1.0 + sum(weight.get(m, 0) * t for m, t in spent.items()) / total)
    for handle in handles:
        handle.remove()
    return totals, shares, floors


def bench(name: str, batch: int, rounds: int) -> dict[str, Any]:
    built = build_model(name)
    assert built is not None, f"no model {name!r}"
    model, side, classes = built
    x, targets = make_batch(batch, side, classes)
    engine = GraphLRP(model, "epsilon_plus_flat")
    weight: dict[torch.nn.Module, int] = {}
    counts: dict[int, int] = {}
    for node, rule in engine._rules.items():
        module = engine.traced.nodes[node].module
        assert engine.traced.nodes[node].kind == Kind.AFFINE and module is not None
        weight[module] = products(rule)
        counts[weight[module]] = counts.get(weight[module], 0) + 1
    totals, shares, floors = floor_per_call(model, x, weight, rounds)
    forward_s, engine_s = [], []
    engine(x, targets)
    for _ in range(rounds):
        start = time.perf_counter()
        with torch.no_grad():
            model(x)
        forward_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        engine(x, targets)
        engine_s.append(time.perf_counter() - start)
    return {
        "model": name,
        "forward_s": statistics.median(totals),
        "layer_share": statistics.median(shares),
        "floor": statistics.median(floors),
        "engine": statistics.median(e / f for e, f in zip(engine_s, forward_s)),
        "layers_by_products": dict(sorted(counts.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,efficientnet_b0,vgg11")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"epsilon_plus_flat, batch {args.batch}, 224x224, CPU, {args.threads} threads, median of {args.rounds}")
    print(f"{'model':<16} {'forward ms':>10} {'conv share':>10} {'floor x':>8} {'engine x':>9}  layers by products")
    for name in args.models.split(","):
        row = bench(name, args.batch, args.rounds)
        print(
            f"{row['model']:<16} {row['forward_s'] * 1e3:>10.1f} {row['layer_share']:>10.0%} {row['floor']:>8.2f} "
            f"{row['engine']:>9.2f}  {row['layers_by_products']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
