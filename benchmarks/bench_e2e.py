"""End-to-end benchmark: what the harness adds on top of batched LRP.

Usage::

    .venv/bin/python benchmarks/bench_e2e.py [--copies 7] [--rounds 3] [--json out.json]

The shipped demo suites are scaled up (``--copies`` renamed copies of every case, so
the default gives 210 cases / 840 items) into a temporary folder. Then, in ONE process
with the same torch threads (so ratios hold on a noisy machine), each figure the
median of ``--rounds`` runs:

* **bare batched LRP**: the exact images the items need (variants generated once,
  beforehand) pushed through model + explainer in batches; nothing else;
* **pytest**: ``pytest.main`` on the scaled suites (planning, variants, LRP, metrics,
  verdicts, results table), with and without writing each item's PNGs;
* **one-image loop**: what the seed notebooks do — for every item, load, perturb,
  forward and zennit LRP one image at a time.

Finally ``pytest -n 2`` against ``-n 0`` as two subprocesses each (interpreter start
included in both). Prints a table and writes JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

from harness.engine import case_uid  # noqa: E402
from harness.explain import make_explainer  # noqa: E402
from harness.imageio import read_rgb  # noqa: E402
from harness.models import build_model, load_registry, resize_image, resize_mask  # noqa: E402
from harness.perturb import OriginalSettings, apply_variant  # noqa: E402
from harness.regions import rasterize  # noqa: E402
from harness.spec import load_suite  # noqa: E402

MODEL = "signs-shortcut"


def scale_suites(out: Path, copies: int) -> int:
    """Write ``copies`` renamed copies of every shipped suite (absolute file paths)."""
    out.mkdir(parents=True, exist_ok=True)
    cases = 0
    for suite in sorted((ROOT / "testcases").rglob("*.xai.yaml")):
        text = suite.read_text()
        # Absolute paths, so the copies can live anywhere.
        text = re.sub(r"(image|mask): (\.\./[^\s}]+)",
                      lambda m: f"{m.group(1)}: {(suite.parent / m.group(2)).resolve()}", text)
        text = re.sub(r"^# yaml-language-server.*\n", "", text, flags=re.M)
        for copy in range(copies):
            renamed = re.sub(r"- id: (\S+)", lambda m: f"- id: {m.group(1)}_c{copy}", text)
            target = out / f"{suite.name[:-len('.xai.yaml')]}_c{copy}.xai.yaml"
            target.write_text(renamed)
            cases += len(load_suite(target).cases)
    return cases


def median_time(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def planned_images(folder: Path, size: tuple[int, int]) -> list[tuple[Any, str, Any]]:
    """(case, variant, image at model size) for every image the items need, deduplicated."""
    seen: set[tuple[str, str]] = set()
    out = []
    for path in sorted(folder.glob("*.xai.yaml")):
        for case in load_suite(path).cases:
            image = read_rgb(case.image)
            mask = rasterize(case.regions, image.shape[:2], case.base_dir)
            for variant in case.variants:
                names = ["original", variant.name] if variant.name == "sticker_added" else [variant.name]
                for name in names:
                    if (case_uid(case), name) in seen:
                        continue
                    seen.add((case_uid(case), name))
                    settings = variant.settings if name == variant.name else OriginalSettings()
                    native = apply_variant(name, settings, image, mask, read_rgb, read_rgb)
                    out.append((case, name, resize_image(native.image, size)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=7, help="copies of each shipped case (default 7 → 210 cases)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-xdist", action="store_true")
    parser.add_argument("--models", type=Path, default=ROOT / "fixtures" / "models.yaml", help="model registry")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    work = Path(tempfile.mkdtemp(prefix="xai-bench-"))
    suites = work / "suites"
    cases = scale_suites(suites, args.copies)
    registry = load_registry(args.models)
    model = build_model(MODEL, registry, torch.device("cpu"))
    classes = model.classes
    images = planned_images(suites, model.preprocessing.size)
    explainer = make_explainer("lrp/epsilon_plus_flat", model)
    items = sum(len(c.variants) for p in suites.glob("*.xai.yaml") for c in load_suite(p).cases)
    print(f"{cases} cases, {items} items, {len(images)} distinct images at "
          f"{model.preprocessing.size}, model {MODEL}, LRP backend {explainer.backend}, "
          f"torch threads {torch.get_num_threads()}, batch size {args.batch_size}")

    labels = torch.tensor([classes.index(case.label) for case, _, _ in images])

    def bare() -> None:
        for start in range(0, len(images), args.batch_size):
            x = model.to_input([img for _, _, img in images[start:start + args.batch_size]])
            explainer(x, labels[start:start + args.batch_size])

    def run_pytest(assets: bool) -> None:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            code = run_main(assets)
        assert code in (0, 1), f"pytest exited {code}"

    def run_main(assets: bool) -> int:
        extra = [] if assets else ["--xai-assets", ""]
        return pytest.main([str(suites), "-q", "-p", "no:cacheprovider",
                            "--rootdir", str(work), "--xai-models", str(args.models),
                            "--xai-results", str(work / "results.csv"), "--xai-assets", str(work / "assets"),
                            "--xai-batch-size", str(args.batch_size), *extra])

    def loop() -> None:
        from zennit.attribution import Gradient

        from harness.explain import zennit_composite

        for case, name, img in images:
            x = model.to_input([img])
            composite = zennit_composite("epsilon_plus_flat", model, x.shape)
            with Gradient(model=model.module, composite=composite) as attributor:
                attributor(x, lambda out: out * torch.nn.functional.one_hot(
                    torch.tensor([classes.index(case.label)]), out.shape[1]))

    bare()  # warm-up
    figures: dict[str, Any] = {
        "cases": cases, "items": items, "images": len(images), "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "backend": explainer.backend, "machine": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
    }
    figures["bare_s"] = median_time(bare, args.rounds)
    figures["pytest_no_pictures_s"] = median_time(lambda: run_pytest(False), args.rounds)
    figures["pytest_s"] = median_time(lambda: run_pytest(True), args.rounds)
    figures["loop_s"] = median_time(loop, max(1, args.rounds - 2))

    if not args.skip_xdist:
        def subprocess_run(workers: int) -> None:
            cmd = [sys.executable, "-m", "pytest", str(suites), "-q", "-p", "no:cacheprovider", "-n", str(workers),
                   "--rootdir", str(work), "--xai-models", str(args.models),
                   "--xai-results", str(work / "results.csv"), "--xai-assets", str(work / "assets"),
                   "--xai-batch-size", str(args.batch_size)]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
        figures["cli_n0_s"] = median_time(lambda: subprocess_run(0), args.rounds)
        figures["cli_n2_s"] = median_time(lambda: subprocess_run(2), args.rounds)

    rows = [
        ("bare batched LRP (same images)", figures["bare_s"], 1.0),
        ("pytest, no pictures", figures["pytest_no_pictures_s"], figures["pytest_no_pictures_s"] / figures["bare_s"]),
        ("pytest, with pictures (default)", figures["pytest_s"], figures["pytest_s"] / figures["bare_s"]),
        ("one-image-at-a-time loop (zennit)", figures["loop_s"], figures["loop_s"] / figures["bare_s"]),
    ]
    print(f"\n{'what':40s} {'median s':>10s} {'× bare':>8s}")
    for name, seconds, ratio in rows:
        print(f"{name:40s} {seconds:10.2f} {ratio:8.2f}")
    print(f"loop / pytest: {figures['loop_s'] / figures['pytest_s']:.1f}× slower than the harness")
    if "cli_n0_s" in figures:
        print(f"pytest -n 0: {figures['cli_n0_s']:.1f} s, -n 2: {figures['cli_n2_s']:.1f} s "
              f"(speed-up {figures['cli_n0_s'] / figures['cli_n2_s']:.2f}×)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
