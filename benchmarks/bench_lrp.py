"""Micro-benchmark of LRP: zennit (with the canonizers each architecture needs) versus the
graph engine (harness.attribution.graph).

Usage::

    .venv/bin/python benchmarks/bench_lrp.py [--quick] [--json out.json] [--threads 2]
    .venv/bin/python benchmarks/bench_lrp.py --batches 8 --rule-sets epsilon_plus_flat --no-memory \
        --models resnet18,resnet50,mobilenet_v2,efficientnet_b0,vgg11      # the issue-11 targets
    # on a machine shared with other jobs: CPU time of one thread, which their load disturbs little
    .venv/bin/python benchmarks/bench_lrp.py ... --threads 1 --cpu-time

For each model (torchvision vgg11, resnet18, resnet50, mobilenet_v2 and efficientnet_b0
with random weights at 224x224, and the demo model ``harness.zoo:small_vgg`` at 64x64 when
it exists) and each batch size it times, all in one process and interleaved round by
round (so that load from other processes hits every method alike):

* the model's plain forward pass under ``torch.no_grad()`` (the reference),
* zennit per rule set, prepared as the harness's zennit backend prepares it
  (``harness.attribution.zennit_backend.ZennitLRP``: ResNetCanonizer for ResNets, VGGCanonizer
  for VGGs, an fx rewrite otherwise; composite registered once),
* the graph engine per rule set ("n/a" where it does not support the model),

and reports the median time per call over the timed rounds (after one warm-up call;
fast calls are repeated within a round to fill at least 0.2 s), the ratio to the
forward pass (the median over rounds of each round's ratio, which cancels load from
other processes that drifts between rounds, and fastest over fastest, which is only
meaningful on a quiet machine), and the relative error of the engine against zennit
(``max |R_engine - R_zennit| / max |R_zennit|`` on the same batch). Peak memory of one
vgg11 call at two batch sizes (giving a fixed part and a per-sample slope) is measured
in fresh subprocesses as the growth of the resident set's anonymous part, sampled from
/proc while the call runs (tracemalloc does not see torch's buffers, and ``ru_maxrss``
is blurred by library pages the kernel reclaims).
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision  # noqa: E402,F401  (imported up front so that no timing includes the import)

from harness.attribution.graph import GraphLRP  # noqa: E402
from harness.attribution.zennit_backend import ZennitLRP  # noqa: E402

RULE_SETS = GraphLRP.RULE_SETS
ENGINES = ("graph",)
TORCHVISION = ("vgg11", "resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0")
SHORT = {"epsilon_plus_flat": "plus_flat", "epsilon_gamma_box": "gamma_box", "epsilon_alpha2_beta1_flat": "a2b1_flat"}
# Box bounds of ImageNet-normalised [0, 1] pixels, per channel, as the harness passes them.
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
LOW, HIGH = (0 - _MEAN) / _STD, (1 - _MEAN) / _STD


def build_model(name: str) -> tuple[torch.nn.Module, int, int] | None:
    """Return ``(model, input side, classes)`` with seeded random weights, or None if unavailable."""
    torch.manual_seed(0)
    if name in TORCHVISION:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        side, classes = 224, 1000
        # random running statistics, so that the merged batch norms are not trivial
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    elif name == "small_vgg":
        try:
            from harness.zoo import small_vgg
        except ImportError:
            return None
        model = small_vgg(num_classes=6)
        side, classes = 64, 6
        # Random running statistics, so that the merged batch norms are not trivial.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    else:
        raise ValueError(f"unknown model {name!r}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, side, classes


def make_batch(batch: int, side: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    pixels = torch.rand(batch, 3, side, side, generator=gen)
    x = (pixels - _MEAN) / _STD
    targets = torch.randint(0, classes, (batch,), generator=gen)
    return x, targets


def zennit_method(model: torch.nn.Module, rule_set: str) -> Callable[..., Any]:
    """zennit as the harness's zennit backend runs it (prepared once)."""
    return ZennitLRP(model, rule_set, low=LOW, high=HIGH)


def methods_for(
    model: torch.nn.Module,
    only: str | None = None,
    setup_s: dict[str, float] | None = None,
    rule_sets: tuple[str, ...] = RULE_SETS,
) -> dict[str, Callable[..., Any] | None]:
    """Name -> callable(x, targets); None marks an engine that does not cover the model.

    ``only`` restricts the result to one method (the memory probe builds nothing else);
    ``setup_s`` receives each engine's construction time, keyed ``engine:rule_set``.
    """
    methods: dict[str, Callable[..., Any] | None] = {}

    def forward(x: torch.Tensor, targets: torch.Tensor) -> Any:
        with torch.no_grad():
            return model(x)

    methods["forward"] = forward
    for rs in rule_sets:
        if only in (None, f"zennit:{rs}"):
            methods[f"zennit:{rs}"] = zennit_method(model, rs)
    for rs in rule_sets:
        for engine in ENGINES:
            name = f"{engine}:{rs}"
            if only not in (None, name):
                continue
            if GraphLRP.check(model, rs) is not None:
                methods[name] = None
                continue
            start = time.perf_counter()
            methods[name] = GraphLRP(model, rs, low=LOW, high=HIGH)
            if setup_s is not None:
                setup_s[name] = time.perf_counter() - start
    return methods if only is None else {only: methods.get(only)}


def time_methods(
    methods: dict[str, Callable[..., Any] | None],
    x: torch.Tensor,
    targets: torch.Tensor,
    rounds: int,
    min_round_s: float = 0.2,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Interleaved timing; returns per-method seconds per call of the timed rounds, and
    the graph engine's relative errors against zennit.

    Round 0 is the warm-up; it also decides how many calls a method makes per round,
    so that millisecond-scale calls are timed over at least ``min_round_s``.
    """
    active = {name: fn for name, fn in methods.items() if fn is not None}
    times: dict[str, list[float]] = {name: [] for name in active}
    calls: dict[str, int] = {}
    errors: dict[str, float] = {}
    reference: dict[str, torch.Tensor] = {}
    for name, fn in active.items():
        start = clock()
        out = fn(x, targets)
        calls[name] = max(1, int(min_round_s / max(clock() - start, 1e-6)))
        rule_set = name.split(":", 1)[-1]
        if name.startswith("zennit:"):
            reference[rule_set] = out[1]
        elif name.split(":", 1)[0] in ENGINES:
            ref = reference[rule_set]
            errors[name] = float((out[1] - ref).abs().max() / ref.abs().max())
        del out
    for _ in range(rounds):
        for name, fn in active.items():
            start = clock()
            for _ in range(calls[name]):
                fn(x, targets)
            times[name].append((clock() - start) / calls[name])
    return times, errors


def _rss_anon_mib() -> float:
    """Anonymous resident memory of this process (Linux); file-backed pages such as the
    torch libraries are left out, since the kernel may reclaim them at any time."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    raise OSError("no RssAnon in /proc/self/status")


def peak_growth_mib(fn: Callable[[], Any], interval_s: float = 0.002) -> float:
    """Peak growth of anonymous RSS while ``fn`` runs, sampled every ``interval_s``.

    Falls back to the growth of ``ru_maxrss`` where /proc is unavailable.
    """
    try:
        base = _rss_anon_mib()
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_anon_mib())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return peak - base


def memory_probe(model_name: str, method: str, batch: int, threads: int) -> None:
    """Run in a subprocess: print the peak memory growth (MiB) over one call of ``method``."""
    torch.set_num_threads(threads)
    built = build_model(model_name)
    assert built is not None
    model, side, classes = built
    x, targets = make_batch(batch, side, classes)
    fn = methods_for(model, only=method)[method]
    if fn is None:
        print(json.dumps(None))
        return
    print(json.dumps(peak_growth_mib(lambda: fn(x, targets))))


def measure_memory(
    model_name: str, batch: int, threads: int, rule_sets: tuple[str, ...] = RULE_SETS
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for method in ["forward", *(f"{kind}:{rs}" for kind in ("zennit", *ENGINES) for rs in rule_sets)]:
        cmd = [sys.executable, __file__, "--_memory-probe", model_name, method, str(batch), "--threads", str(threads)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[method] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small_vgg and vgg11 at batch 1, 2 rounds")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--models", default=None, help="comma list of small_vgg," + ",".join(TORCHVISION) + " (default: all)"
    )
    parser.add_argument("--rule-sets", default=",".join(RULE_SETS), help="comma list (default: all three)")
    parser.add_argument("--batches", default=None, help="comma list of batch sizes (default 1,8)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per method (default 7)")
    parser.add_argument(
        "--memory-batches", default=None, help="two batch sizes for the memory probe, comma-separated (default 8,32)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probe")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time CPU seconds of this process (all threads) instead of wall time: on a machine shared "
        "with other jobs, what the calls themselves cost (with --threads 1, what a quiet core would take)",
    )
    parser.add_argument("--_memory-probe", nargs=3, metavar=("MODEL", "METHOD", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._memory_probe:
        model_name, method, batch = args._memory_probe
        memory_probe(model_name, method, int(batch), args.threads)
        return 0

    torch.set_num_threads(args.threads)
    models = (args.models or ("small_vgg," + ",".join(TORCHVISION) if not args.quick else "small_vgg,vgg11")).split(",")
    rule_sets = tuple(args.rule_sets.split(","))
    unknown = set(rule_sets) - set(RULE_SETS)
    if unknown:
        parser.error(f"unknown rule sets {sorted(unknown)}; expected some of {RULE_SETS}")
    batches = [int(b) for b in (args.batches or ("1,8" if not args.quick else "1")).split(",")]
    rounds = args.rounds or (2 if args.quick else 7)
    small_mem, large_mem = (int(b) for b in (args.memory_batches or ("2,4" if args.quick else "8,32")).split(","))

    clock = time.process_time if args.cpu_time else time.perf_counter
    header = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "device": "cpu",
        "rounds": rounds,
        "rule_sets": list(rule_sets),
        "clock": "process CPU time" if args.cpu_time else "wall time",
    }
    print(
        f"torch {header['torch']}, {header['threads']} threads, CPU, {rounds} interleaved rounds after a warm-up call, "
        f"{header['clock']}"
    )
    print(
        "ms: median per call; x fwd: median over rounds of time / forward time of the same round;\n"
        "best: fastest call / fastest forward; rel err: max|R_engine - R_zennit| / max|R_zennit|;\n"
        "zennit: prepared as the harness's zennit backend prepares it (canonizer or fx rewrite)"
    )
    rows: list[dict[str, Any]] = []
    for model_name in models:
        built = build_model(model_name)
        if built is None:
            print(f"{model_name}: not available, skipped")
            continue
        model, side, classes = built
        setup: dict[str, float] = {}
        methods = methods_for(model, setup_s=setup, rule_sets=rule_sets)
        reasons = {f"{engine}:{rs}": GraphLRP.check(model, rs) for engine in ENGINES for rs in rule_sets}
        for batch in batches:
            x, targets = make_batch(batch, side, classes)
            times, errors = time_methods(methods, x, targets, rounds, clock=clock)
            medians = {name: statistics.median(ts) for name, ts in times.items()}
            fwd = medians["forward"]
            row: dict[str, Any] = {
                "model": model_name,
                "input": side,
                "batch": batch,
                "forward_s": fwd,
                "engine_setup_s": setup,
                "unsupported": {k: v for k, v in reasons.items() if v},
            }
            for name in methods:
                if name not in medians:
                    row[name] = None
                    continue
                ts = times[name]
                row[name] = {
                    "median_s": medians[name],
                    "min_s": min(ts),
                    "max_s": max(ts),
                    # each round's time over the forward pass timed next to it: load from
                    # other processes that drifts between rounds cancels out
                    "ratio": statistics.median(t / f for t, f in zip(ts, times["forward"])),
                    # fastest over fastest: the closest to an uncontended machine
                    "ratio_best": min(ts) / min(times["forward"]),
                    **({"rel_err": errors[name]} if name in errors else {}),
                }
            rows.append(row)
            print_row(row, rule_sets)
    memory: dict[str, Any] = {}
    if not args.no_memory and "vgg11" in models:
        small = measure_memory("vgg11", small_mem, args.threads, rule_sets)
        large = measure_memory("vgg11", large_mem, args.threads, rule_sets)
        memory = {"model": "vgg11", "batches": [small_mem, large_mem], "methods": {}}
        print("\npeak memory growth of one call (anonymous RSS sampled from /proc, fresh process each; vgg11 224x224):")
        columns = (f"batch {small_mem}", f"batch {large_mem}", "per sample", "fixed")
        print(f"  {'method':34s} {columns[0]:>10s} {columns[1]:>10s} {columns[2]:>11s} {columns[3]:>8s}")
        for name in small:
            lo, hi = small[name], large[name]
            if lo is None or hi is None:
                memory["methods"][name] = None
                print(f"  {name:34s} {'n/a':>10s}")
                continue
            slope = (hi - lo) / (large_mem - small_mem)
            fixed = lo - slope * small_mem
            memory["methods"][name] = {"small_mib": lo, "large_mib": hi, "per_sample_mib": slope, "fixed_mib": fixed}
            print(f"  {name:34s} {lo:7.0f} MiB {hi:7.0f} MiB {slope:7.1f} MiB {fixed:5.0f} MiB")
        print(
            "  Peak memory is about fixed + per-sample x batch (every layer's activations are kept until\n"
            "  its relevance is computed; zennit also keeps its autograd graph and per-call weight copies),\n"
            "  so the largest LRP batch that fits is about (free RAM - model - fixed) / per-sample."
        )
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows, "memory": memory}, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def print_row(row: dict[str, Any], rule_sets: tuple[str, ...] = RULE_SETS) -> None:
    setup = row["engine_setup_s"]
    graph_setup = max((v for k, v in setup.items() if k.startswith("graph:")), default=0.0)
    print(
        f"\n{row['model']} {row['input']}x{row['input']} batch {row['batch']}: "
        f"forward {row['forward_s'] * 1e3:.1f} ms median "
        f"(graph engine setup <= {graph_setup * 1e3:.0f} ms, once per model)"
    )
    print(
        f"  {'rule set':10s} {'zennit ms':>10s} {'x fwd':>6s} {'best':>6s} "
        + " ".join(f"{e + ' ms':>9s} {'x fwd':>6s} {'best':>6s} {'vs zen':>6s} {'rel err':>8s}" for e in ENGINES)
    )
    for rs in rule_sets:
        z = row.get(f"zennit:{rs}")
        assert z is not None
        cells = [f"{z['median_s'] * 1e3:10.1f} {z['ratio']:6.2f} {z['ratio_best']:6.2f}"]
        for engine in ENGINES:
            f = row.get(f"{engine}:{rs}")
            if f:
                cells.append(
                    f"{f['median_s'] * 1e3:9.1f} {f['ratio']:6.2f} {f['ratio_best']:6.2f} "
                    f"{z['median_s'] / f['median_s']:6.2f} {f['rel_err']:8.1e}"
                )
            else:
                cells.append(f"{'n/a':>9s} {'':6s} {'':6s} {'':6s} {'':8s}")
        print(f"  {SHORT[rs]:10s} " + " ".join(cells))
    shown = set()
    for key, reason in row["unsupported"].items():
        engine = key.split(":", 1)[0]
        if engine not in shown:
            print(f"  {engine} engine does not cover the model: {reason}")
            shown.add(engine)


if __name__ == "__main__":
    raise SystemExit(main())
