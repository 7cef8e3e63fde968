"""End-to-end benchmark: what the harness adds on top of batched LRP.

Usage::

    .venv/bin/python benchmarks/bench_e2e.py [--setups demo,vgg11] [--rounds 3] [--json out.json]

The shipped demo suites are scaled up (renamed copies of every case, absolute image
paths) into a temporary folder and run against one model per *setup*:

* ``demo``: the shipped ``signs-shortcut`` model (64×64 inputs, ~1 ms of LRP per
  image), the suites scaled to 210 cases / 840 items;
* ``vgg11``: torchvision vgg11 with seeded random weights at 224×224 (saved to a
  file, so every run sees the same weights), the suites as shipped: 30 cases / 120
  items. This is the ordinary case of a real classifier, where LRP is most of the cost.

For each setup, in ONE process with the same torch threads (so ratios hold on a
noisy machine), each figure the median of ``--rounds`` runs:

* **bare batched LRP**: the LRP work the oracle needs over exactly the images the
  items need (the variants generated beforehand, at the model's input size), in
  batches, and nothing else: the label's relevance for every image, and the
  predicted class's relevance for sticker images whose prediction differs from
  the label (the sticker verdict reads it);
* **pytest**: ``pytest.main`` on the scaled suites (collection, variants, LRP,
  metrics, verdicts, reporting, the results table), without and with writing each
  item's PNGs (with is the default);
* **one-image loop**: what the seed notebooks do, item by item: read the image and
  mask, make the variant, forward and zennit LRP one image at a time (for a sticker
  also the original's prediction and, when it flips, the predicted class's
  relevance), region metrics.

Then ``pytest -n 2`` (pytest-xdist) against ``-n 0`` on the demo setup, as
subprocesses (interpreter start included in both), with the CPU seconds they used.
Prints tables and writes JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from harness.attribution import make_explainer, zennit_composite  # noqa: E402
from harness.errors import MetricError  # noqa: E402
from harness.imageio import read_rgb, read_rgba  # noqa: E402
from harness.metrics import region_metrics  # noqa: E402
from harness.models import LoadedModel, build_model, load_registry, resize_image, resize_mask  # noqa: E402
from harness.perturb import VARIANTS, OriginalSettings, apply_variant  # noqa: E402
from harness.regions import rasterize  # noqa: E402
from harness.spec import CaseSpec, load_suite  # noqa: E402

SHIPPED_REGISTRY = ROOT / "fixtures" / "models.yaml"
DEMO_MODEL = "signs-shortcut"


@dataclass(frozen=True)
class Setup:
    name: str
    model: str
    copies: int
    what: str


SETUPS = {
    "demo": Setup("demo", DEMO_MODEL, 7, "shipped signs-shortcut, 64×64"),
    "vgg11": Setup("vgg11", "bench-vgg11", 1, "torchvision vgg11, random weights, 224×224"),
}


def _built_in_only(suite: Path) -> bool:
    """Whether every item of ``suite`` is one of the four built-in variants, unswept.

    The bare baseline and the one-image loop below rebuild the harness's images by hand
    for those four only; suites with variants made of steps, sweeps or negative cases
    are left out so that all three setups compute the same images.
    """
    spec = load_suite(suite)
    return all(
        variant.name in VARIANTS and variant.sweep is None and case.expect != "absent"
        for case in spec.cases
        for variant in case.variants
    )


def scale_suites(out: Path, copies: int) -> int:
    """Write ``copies`` renamed copies of every shipped suite (absolute file paths)."""
    out.mkdir(parents=True, exist_ok=True)
    cases = 0
    for suite in sorted((ROOT / "testcases").rglob("*.xai.yaml")):
        if not _built_in_only(suite):
            continue
        text = suite.read_text()
        # Absolute paths, so the copies can live anywhere.
        text = re.sub(
            r"(image|mask|glob): (?![{\[/])([^\s},\]]+)",
            lambda m, suite=suite: f"{m.group(1)}: {(suite.parent / m.group(2)).resolve()}",
            text,
        )
        text = re.sub(r"^# yaml-language-server.*\n", "", text, flags=re.M)
        for copy in range(copies):
            renamed = re.sub(r"- id: (\S+)", lambda m, copy=copy: f"- id: {m.group(1)}_c{copy}", text)
            target = out / f"{suite.name[: -len('.xai.yaml')]}_c{copy}.xai.yaml"
            target.write_text(renamed)
            cases += len(load_suite(target).cases)
    return cases


def write_registry(work: Path) -> Path:
    """The shipped registry plus ``bench-vgg11``, whose seeded random weights are saved
    once so that every process of the benchmark loads the same model."""
    import torchvision

    shipped = yaml.safe_load(SHIPPED_REGISTRY.read_text())
    demo = shipped["models"][DEMO_MODEL]
    entries = {DEMO_MODEL: dict(demo, weights=str((SHIPPED_REGISTRY.parent / demo["weights"]).resolve()))}
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11(num_classes=len(demo["classes"]))
    torch.save(vgg.state_dict(), work / "vgg11.pt")
    entries["bench-vgg11"] = {
        "architecture": "torchvision:vgg11",
        "args": {"num_classes": len(demo["classes"])},
        "weights": str(work / "vgg11.pt"),
        "classes": demo["classes"],
        "preprocessing": {
            "size": [224, 224],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "value_range": [0, 1],
        },
    }
    path = work / "models.yaml"
    path.write_text(yaml.safe_dump({"models": entries}))
    return path


def median_time(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def suite_cases(folder: Path) -> list[CaseSpec]:
    return [case for path in sorted(folder.glob("*.xai.yaml")) for case in load_suite(path).cases]


def native_variant(case: CaseSpec, name: str, settings: Any, image: np.ndarray, mask: np.ndarray) -> Any:
    base = case.base_dir
    return apply_variant(name, settings, image, mask, lambda p: read_rgb(base / p), lambda p: read_rgba(base / p))


def planned_images(cases: list[CaseSpec], size: tuple[int, int]) -> list[tuple[CaseSpec, str, np.ndarray]]:
    """(case, variant, image at model size) for every image the items need, once each."""
    out = []
    for case in cases:
        image = read_rgb(case.image)
        mask = rasterize(case.regions, image.shape[:2], case.base_dir)
        names = {variant.name: variant.settings for variant in case.variants}
        if "sticker_added" in names:
            names.setdefault("original", OriginalSettings())
        for name, settings in names.items():
            out.append((case, name, resize_image(native_variant(case, name, settings, image, mask).image, size)))
    return out


def lrp_rows(images: list[tuple[CaseSpec, str, np.ndarray]], model: LoadedModel, batch_size: int) -> int:
    explainer = make_explainer("lrp/epsilon_plus_flat", model)
    rows = 0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        labels = torch.tensor([model.classes.index(case.label) for case, _, _ in chunk])
        logits, _ = explainer(model.to_input([img for _, _, img in chunk]), labels)
        rows += len(chunk) + sum(
            1
            for (_, name, _), p, y in zip(chunk, logits.argmax(1).tolist(), labels.tolist())
            if name == "sticker_added" and p != y
        )
    return rows


def run_setup(setup: Setup, work: Path, registry_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    suites = work / f"suites-{setup.name}"
    cases_n = scale_suites(suites, args.copies or setup.copies)
    model = build_model(setup.model, load_registry(registry_path), torch.device("cpu"))
    cases = suite_cases(suites)
    items = sum(len(case.variants) for case in cases)
    images = planned_images(cases, model.preprocessing.size)
    explainer = make_explainer("lrp/epsilon_plus_flat", model)
    classes = model.classes
    labels = torch.tensor([classes.index(case.label) for case, _, _ in images])
    is_sticker = torch.tensor([name == "sticker_added" for _, name, _ in images])

    def bare() -> None:
        for start in range(0, len(images), args.batch_size):
            end = start + args.batch_size
            x = model.to_input([img for _, _, img in images[start:end]])
            y = labels[start:end]
            logits, _ = explainer(x, y)
            predicted = logits.argmax(dim=1)
            again = ((predicted != y) & is_sticker[start:end]).nonzero().flatten()
            if len(again):
                explainer(x[again], predicted[again])

    def run_pytest(pictures: bool) -> None:
        extra = [] if pictures else ["--xai-assets", ""]
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            code = pytest.main(
                [
                    str(suites),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "--rootdir",
                    str(work),
                    "--xai-models",
                    str(registry_path),
                    "--xai-model",
                    setup.model,
                    "--xai-results",
                    str(work / "results.csv"),
                    "--xai-assets",
                    str(work / "assets"),
                    "--xai-batch-size",
                    str(args.batch_size),
                    *extra,
                ]
            )
        assert code in (0, 1), f"pytest exited {code}"

    def loop() -> None:
        from zennit.attribution import Gradient

        def relevance(x: torch.Tensor, target: int) -> tuple[torch.Tensor, np.ndarray]:
            composite = zennit_composite("epsilon_plus_flat", model, x.shape)
            with Gradient(model=model.module, composite=composite) as attributor:
                logits, rel = attributor(
                    x, lambda out: out * torch.nn.functional.one_hot(torch.tensor([target]), out.shape[1])
                )
            return logits, rel.sum(dim=1)[0].numpy()

        def metrics(rel: np.ndarray, mask: np.ndarray) -> None:
            try:
                region_metrics(rel, mask)
            except MetricError:
                pass  # undefined for this map, as the harness records it

        size = model.preprocessing.size
        for case in cases:
            for variant in case.variants:
                image = read_rgb(case.image)
                mask = rasterize(case.regions, image.shape[:2], case.base_dir)
                made = native_variant(case, variant.name, variant.settings, image, mask)
                label = classes.index(case.label)
                logits, rel = relevance(model.to_input([resize_image(made.image, size)]), label)
                metrics(rel, resize_mask(made.object_mask, size))
                if variant.name == "sticker_added":
                    with torch.no_grad():
                        model.module(model.to_input([resize_image(image, size)]))
                    predicted = int(logits.argmax())
                    if predicted != label:
                        _, rel = relevance(model.to_input([resize_image(made.image, size)]), predicted)
                    metrics(rel, resize_mask(made.sticker_mask, size))

    bare()  # warm-up (and the lazy parts of the engine)
    figures: dict[str, Any] = {
        "setup": setup.name,
        "what": setup.what,
        "cases": cases_n,
        "items": items,
        "images": len(images),
        "lrp_rows": lrp_rows(images, model, args.batch_size),
        "backend": explainer.backend,
        "input": list(model.preprocessing.size),
    }
    print(
        f"\n[{setup.name}] {setup.what}: {cases_n} cases, {items} items, {len(images)} images, "
        f"{figures['lrp_rows']} LRP rows, LRP backend {explainer.backend}, batch size {args.batch_size}",
        flush=True,
    )
    figures["bare_s"] = median_time(bare, args.rounds)
    figures["pytest_no_pictures_s"] = median_time(lambda: run_pytest(False), args.rounds)
    figures["pytest_s"] = median_time(lambda: run_pytest(True), args.rounds)
    figures["loop_s"] = median_time(loop, args.loop_rounds)
    bare_s = figures["bare_s"]
    print(f"{'what':44s} {'median s':>9s} {'× bare':>7s}")
    for label, key in (
        ("bare batched LRP (same images, same rows)", "bare_s"),
        ("pytest, no pictures", "pytest_no_pictures_s"),
        ("pytest, with pictures (the default)", "pytest_s"),
        ("one-image-at-a-time loop (zennit)", "loop_s"),
    ):
        print(f"{label:44s} {figures[key]:9.2f} {figures[key] / bare_s:7.2f}")
    print(
        f"loop / pytest with pictures: {figures['loop_s'] / figures['pytest_s']:.1f}×; "
        f"loop / pytest without: {figures['loop_s'] / figures['pytest_no_pictures_s']:.1f}×",
        flush=True,
    )
    return figures


def run_xdist(work: Path, registry_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    suites = work / "suites-xdist"
    cases = scale_suites(suites, args.xdist_copies)

    def once(workers: int) -> tuple[float, float]:
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(suites),
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            str(workers),
            "--rootdir",
            str(work),
            "--xai-models",
            str(registry_path),
            "--xai-results",
            str(work / "results.csv"),
            "--xai-assets",
            str(work / "assets"),
            "--xai-batch-size",
            str(args.batch_size),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    out: dict[str, Any] = {"cases": cases}
    for workers in (0, 2):
        runs = [once(workers) for _ in range(args.rounds)]
        out[f"n{workers}_s"] = statistics.median(w for w, _ in runs)
        out[f"n{workers}_cpu_s"] = statistics.median(c for _, c in runs)
    print(f"\n[xdist] demo suites scaled to {cases} cases, pictures on, whole command (interpreter start included):")
    for workers in (0, 2):
        wall, cpu = out[f"n{workers}_s"], out[f"n{workers}_cpu_s"]
        print(f"pytest -n {workers}: {wall:6.2f} s, {cpu:6.2f} CPU s ({cpu / wall:.2f} cores busy)")
    print(f"speed-up of -n 2: {out['n0_s'] / out['n2_s']:.2f}× on {os.cpu_count()} cores", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", default="demo,vgg11", help="comma list of: " + ", ".join(SETUPS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop-rounds", type=int, default=1, help="rounds of the (slow) one-image loop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--copies",
        type=int,
        default=None,
        help="copies of each shipped case in every setup (default: 7 for demo, 1 for vgg11)",
    )
    parser.add_argument("--xdist-copies", type=int, default=7, help="copies of each shipped case for -n 2 vs -n 0")
    parser.add_argument("--skip-xdist", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    work = Path(tempfile.mkdtemp(prefix="xai-bench-"))
    try:
        registry_path = write_registry(work)
        print(
            f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
        )
        figures: dict[str, Any] = {
            "machine": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
            "setups": {},
        }
        for name in args.setups.split(","):
            figures["setups"][name] = run_setup(SETUPS[name], work, registry_path, args)
        if not args.skip_xdist:
            figures["xdist"] = run_xdist(work, registry_path, args)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
            print(f"wrote {args.json}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
