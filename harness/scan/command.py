"""``python -m harness scan``: the command's options and its handler (the parser lives in cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError

__all__ = ["SCAN_EPILOG", "add_arguments", "scan"]

SCAN_EPILOG = """\
Runs the model and the explainer over every image in batches (streaming: a part file per
batch under OUT/parts/, so memory does not grow and a rerun resumes where it stopped),
then writes OUT/scan.parquet (one row per image), OUT/heatmaps.npy and OUT/index.html:
the share of images whose relevance lies mostly outside the object (with regions) and
the SpRAy clusters of each class's heatmaps. IMAGES are folders, globs, image files or
CSV/Parquet manifests (columns path, label, region); see docs/scan.md.

examples:
  python -m harness scan --model signs-shortcut --label yield images/ --masks masks/ -o reports/scan/
  python -m harness scan --model signs-shortcut data/manifest.csv -o reports/scan/ \\
      --suite-from cluster=2 --sample 10
  python -m harness scan --model resnet50-pets --label dog photos/ -o reports/scan/ --engine ray --workers 4"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The scan command's options."""
    p.add_argument("images", nargs="+", metavar="IMAGES", help="folders, globs, images or .csv/.parquet manifests")
    p.add_argument("--model", required=True, metavar="NAME", help="registry model to scan with")
    p.add_argument(
        "--label", metavar="CLASS", help="class of the images (with a labelled manifest: scan only this class)"
    )
    regions = p.add_mutually_exclusive_group()
    regions.add_argument("--masks", metavar="DIR", help="object masks: DIR/<image stem>.png")
    regions.add_argument(
        "--annotations", metavar="FILE", help="CSV/Parquet manifest whose 'region' column gives the objects"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (resumed when it holds a scan)")
    p.add_argument("--explainer", default="lrp/epsilon_plus_flat", help="explainer (default: %(default)s)")
    p.add_argument(
        "--models", default="fixtures/models.yaml", metavar="FILE", help="model registry (default: %(default)s)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:1 (default: %(default)s)")
    p.add_argument("--lrp-backend", default="auto", choices=("auto", "fast", "zennit"), help="LRP backend")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default: %(default)s)")
    p.add_argument(
        "--min-object-mass",
        type=float,
        default=0.5,
        metavar="M",
        help="relevance mass on the object below which an image counts as mostly outside (default: %(default)s)",
    )
    p.add_argument("--heatmap-size", type=int, default=32, metavar="S", help="side of the stored maps (default: 32)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or Ray Data")
    p.add_argument("--workers", type=int, metavar="N", help="ray: actors (default: one per GPU, else per CPU)")
    p.add_argument("--ray-address", metavar="ADDR", help="ray: cluster to join, e.g. auto or ray://head:10001")
    p.add_argument("--restart", action="store_true", help="discard the parts of an earlier scan in the folder")
    p.add_argument("--max-clusters", type=int, default=8, metavar="K", help="largest k the eigengap may pick")
    p.add_argument("--clusters", type=int, metavar="K", help="use k clusters instead of the eigengap's choice")
    p.add_argument("--spray-max", type=int, default=5000, metavar="N", help="cluster a seeded sample of N maps at most")
    p.add_argument("--suite-from", metavar="GROUP", help="write a draft suite from cluster=N, outside or all")
    p.add_argument(
        "--sample", type=int, default=10, metavar="N", help="images in the draft: half most, half least confident"
    )
    p.add_argument("--suite", metavar="FILE", help="draft suite path (default: OUT/draft.xai.yaml)")


def scan(args: argparse.Namespace) -> int:
    """Handler of ``scan``; returns the exit status."""
    from .run import ScanOptions, run_scan
    from .worker import ScanSettings

    if args.heatmap_size < 4:
        raise HarnessError(f"--heatmap-size must be at least 4, got {args.heatmap_size}")
    registry = Path(args.models)
    if not registry.is_file():
        raise HarnessError(f"model registry not found: {registry}")
    settings = ScanSettings(
        model=args.model,
        registry=str(registry.resolve()),
        explainer=args.explainer,
        backend=args.lrp_backend,
        device=args.device,
        heatmap_size=args.heatmap_size,
        min_object_mass=args.min_object_mass,
    )
    options = ScanOptions(
        engine=args.engine,
        batch_size=args.batch_size,
        workers=args.workers,
        ray_address=args.ray_address,
        restart=args.restart,
        max_clusters=args.max_clusters,
        clusters=args.clusters,
        spray_max=args.spray_max,
        suite_from=args.suite_from,
        sample=args.sample,
        suite=args.suite,
    )
    if args.suite_from:
        from .suite_draft import parse_choice

        parse_choice(args.suite_from)  # a typo fails before the scan, not after it
    result = run_scan(
        args.images, args.label, args.output, settings, options, masks=args.masks, annotations=args.annotations
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for summary in result.summaries:
        print(summary.sentence(settings.min_object_mass))
    for group in result.groups:
        sizes = ", ".join(f"{len(c.rows)}" for c in group.clusters)
        print(f"{group.label}: {group.result.k} SpRAy cluster(s) of {sizes} images")
    print(f"wrote {result.out_dir / 'scan.parquet'} ({result.table.num_rows} rows) and {result.page}")
    if result.suite is not None:
        print(f"wrote draft suite {result.suite}; next: python -m harness validate {result.suite}")
    return 0
