"""Command line: ``python -m harness`` / ``xai-harness``.

The parser lives here; the commands are in :mod:`harness.authoring.commands`, which
imports torch only for the commands that need it, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError

DESCRIPTION = """\
Author and check explanation-based test suites (*.xai.yaml) for image classifiers.
Run the suites themselves with pytest:  pytest testcases/ --xai-report reports/index.html"""

EPILOG = """\
workflow:
  python -m harness import labelme annotations/ -o testcases/dogs.xai.yaml --model imagenette
  python -m harness models                    # what the registry holds, and how each model is explained
  python -m harness validate testcases/
  pytest testcases/ --xai-report reports/index.html

Every command has its own --help with examples."""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add(sub: argparse._SubParsersAction, name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text, epilog=epilog, formatter_class=_formatter)


_PYTEST_REGISTRY = "the one pytest would use: xai_models, else fixtures/models.yaml, in pytest's rootdir"


def _registry_options(parser: argparse.ArgumentParser, as_pytest: bool = False) -> None:
    parser.add_argument(
        "--models",
        default=None if as_pytest else "fixtures/models.yaml",
        metavar="FILE",
        help=f"model registry YAML (default: {_PYTEST_REGISTRY if as_pytest else '%(default)s'}); loads no weights",
    )


def _writer_options(parser: argparse.ArgumentParser, model_option: bool = True) -> None:
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="SUITE",
        help="suite to write; if it exists the cases are appended (its text is kept)",
    )
    if model_option:
        parser.add_argument(
            "--model",
            metavar="NAME",
            help="model under test, written into a new suite (default: the existing suite's model)",
        )
    parser.add_argument(
        "--explainer", default="lrp/epsilon_plus_flat", help="explainer of a new suite (default: %(default)s)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the output file instead of appending")
    parser.add_argument(
        "--schema-hook", metavar="PATH", help="write '# yaml-language-server: $schema=PATH' at the top of a new suite"
    )
    _registry_options(parser)


def _mapping_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="SRC=DST",
        help="rename an annotation class to a model class (repeatable; SRC= drops SRC)",
    )
    parser.add_argument("--map-file", metavar="YAML", help="mapping 'annotation class: model class' (null drops it)")
    parser.add_argument(
        "--keep-unknown",
        action="store_true",
        help="keep classes that are not classes of the model (default: skip them with a warning)",
    )


VALIDATE_EPILOG = """\
Checks, without running any model: the schema (keys, types, thresholds, variants,
duplicate ids), that images and masks exist and decode, that masks have the image's
size and are neither empty nor full (also at the model's input size), that polygons
and boxes lie within the image, that sticker/background images are readable, and that
labels are classes of the model (from the registry; no weights are loaded).

Errors are printed as  file:line: field: message  and end with a summary line.
Exit status: 0 when no error was found, 1 otherwise.

examples:
  python -m harness validate testcases/
  python -m harness validate testcases/signs.xai.yaml --model signs-clean
  python -m harness validate suites/ --models my/models.yaml"""

MODELS_EPILOG = """\
Builds every model of the registry on the CPU (weights loaded, one probe forward) and
prints its architecture, input size, class count, the preprocessing the harness
applies (preset, effective value range, mean, std and resize policy) and the LRP
backend that explains it: the fast engine, or zennit and why. Every registry key is
described in docs/registry.md.

Exit status: 0 when every listed model builds, 1 otherwise.

examples:
  python -m harness models
  python -m harness models --registry my/models.yaml --model resnet50-pets"""

SCHEMA_EPILOG = """\
examples:
  python -m harness schema --output docs/suite.schema.json
  # then, as the first line of a suite (path relative to the suite):
  # yaml-language-server: $schema=../../docs/suite.schema.json"""

NEW_EPILOG = """\
Writes a new suite (header with model, explainer, default thresholds and the four
variants spelled out) or appends a case to an existing one, keeping its text.

examples:
  python -m harness new testcases/signs.xai.yaml --model signs-shortcut \\
      --image fixtures/signs/heldout/speed_50_000.png \\
      --mask fixtures/signs/heldout/speed_50_000_mask.png --label speed_50
  python -m harness new testcases/signs.xai.yaml --image photo.png --box 10 12 50 60 --label stop --id stop_photo
  python -m harness new testcases/signs.xai.yaml --image photo.png --polygon 10,10 40,12 30,50 --label yield
  # one case per image of a glob, masks found by a naming pattern:
  python -m harness new testcases/signs.xai.yaml --glob 'fixtures/signs/heldout/speed_50_*.png' \\
      --mask-pattern '{stem}_mask.png' --label speed_50"""

IMPORT_EPILOG = """\
formats:
  labelme  LabelMe JSON files or folders (polygons, rectangles, circles)
  coco     a COCO instances JSON (polygons, RLE masks, boxes), one case per instance
  voc      Pascal VOC XML boxes, or segmentation PNGs with --segmentation object|class
  masks    a folder (or glob) of images with masks named by --mask-pattern

examples:
  python -m harness import labelme labelme/ -o testcases/pets.xai.yaml --model pets --map dog=canine
  python -m harness import coco instances_val.json --images val/ --category dog --min-area 500 \\
      -o testcases/dogs.xai.yaml --model imagenette --map-file coco_to_imagenette.yaml
  python -m harness import voc VOC2012/Annotations/2007_000032.xml -o testcases/voc.xai.yaml --model voc
  python -m harness import voc --segmentation object VOC2012/SegmentationObject/ -o testcases/voc.xai.yaml --model voc
  python -m harness import masks fixtures/signs/heldout --label-regex '^(?P<label>.+)_\\d+$' \\
      -o testcases/heldout.xai.yaml --model signs-shortcut"""

SAMPLE_EPILOG = """\
Runs the model on the CPU over the images, ranks them by the probability of the class
and writes cases for the N most and M least confident. Masks named by --mask-pattern
(or regions from a LabelMe/COCO --annotations file) are attached; images without one
get a '# TODO: annotate the object' placeholder that validate (and pytest) report as
an error until the object is drawn.

examples:
  python -m harness sample --model signs-shortcut --class speed_50 \\
      --images 'fixtures/signs/heldout/speed_50_*.png' --label speed_50 --most 10 --least 20 \\
      --output testcases/speed50_confidence.xai.yaml
  python -m harness sample --model imagenette --class tench --images photos/tench/ \\
      --most 10 --least 20 --annotations photos/tench/coco.json -o testcases/tench.xai.yaml"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    prog = "xai-harness" if Path(sys.argv[0]).name.startswith("xai-harness") else "python -m harness"
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG, formatter_class=_formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "validate", "check suites without running a model", VALIDATE_EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH", help="suite files, or folders searched for *.xai.yaml")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="check against this model instead of the suites' (repeatable, like pytest's --xai-model)",
    )
    _registry_options(p, as_pytest=True)
    p.add_argument("--no-models", action="store_true", help="skip the registry (model names and labels)")

    p = _add(sub, "models", "list the registered models and how they are run and explained", MODELS_EPILOG)
    p.add_argument(
        "--registry",
        "--models",
        dest="models",
        default="fixtures/models.yaml",
        metavar="FILE",
        help="model registry YAML (default: %(default)s)",
    )
    p.add_argument("--model", action="append", default=[], metavar="NAME", help="list only this model (repeatable)")
    p.add_argument(
        "--explainer",
        default="lrp/epsilon_plus_flat",
        help="LRP explainer whose backend is reported (default: %(default)s)",
    )

    p = _add(sub, "schema", "print the JSON Schema of a suite file", SCHEMA_EPILOG)
    p.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")

    p = _add(sub, "new", "scaffold a suite, or append a case to one", NEW_EPILOG)
    p.add_argument("output", metavar="SUITE", help="suite file (*.xai.yaml); created or appended to")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="the image of the case")
    source.add_argument("--glob", help="one case per image matching this glob (quote it)")
    region = p.add_mutually_exclusive_group()
    region.add_argument("--mask", help="mask PNG of the object (non-zero pixels)")
    region.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="box in image pixels")
    region.add_argument("--polygon", nargs="+", metavar="X,Y", help="polygon points in image pixels")
    region.add_argument("--mask-pattern", help="with --glob: mask file per image, e.g. '{stem}_mask.png'")
    p.add_argument("--label", help="expected class")
    p.add_argument("--label-regex", help="with --glob: take the class from the file stem, e.g. '^(?P<label>.+)_\\d+$'")
    p.add_argument("--id", help="case id (default: the image's file stem; with --glob '{stem}' is replaced)")
    p.add_argument("--description", default="", help="what the case is about")
    p.add_argument("--tag", action="append", default=[], help="tag (a pytest marker; repeatable)")
    p.add_argument("--skip", metavar="REASON", help="write the case as skipped")
    p.add_argument("--xfail", metavar="REASON", help="write the case as expected to fail")
    p.add_argument("--model", metavar="NAME", help="model under test (needed for a new suite)")
    p.add_argument("--explainer", default="lrp/epsilon_plus_flat", help="explainer of a new suite")
    p.add_argument("--schema-hook", metavar="PATH", help="yaml-language-server schema line for a new suite")
    _registry_options(p)

    p = _add(sub, "import", "turn annotation exports into cases", IMPORT_EPILOG)
    p.add_argument("format", choices=("labelme", "coco", "voc", "masks"), help="annotation format")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="annotation files or folders")
    p.add_argument(
        "--images", metavar="DIR", help="image folder (coco: file_name is relative to it; voc: default ../JPEGImages)"
    )
    p.add_argument("--category", action="append", metavar="NAME", help="coco: only this category (repeatable)")
    p.add_argument("--min-area", type=float, default=0.0, help="coco: skip instances smaller than this (pixels)")
    p.add_argument(
        "--segmentation",
        choices=("object", "class"),
        help="voc: inputs are SegmentationObject (instance) or SegmentationClass PNGs",
    )
    p.add_argument(
        "--mask-pattern", default="{stem}_mask.png", help="masks: mask file per image (default: %(default)s)"
    )
    p.add_argument("--label", help="masks: the class of every image")
    p.add_argument("--label-regex", help="masks: take the class from the file stem, e.g. '^(?P<label>.+)_\\d+$'")
    _mapping_options(p)
    _writer_options(p)

    p = _add(sub, "sample", "write cases for the most / least confident images of a class", SAMPLE_EPILOG)
    p.add_argument("--model", required=True, metavar="NAME", help="model to rank the images with")
    p.add_argument("--class", dest="class_name", required=True, metavar="C", help="the class")
    p.add_argument("--images", required=True, metavar="DIR_OR_GLOB", help="images to rank (quote a glob)")
    p.add_argument("--most", type=int, default=10, metavar="N", help="most confident images (default: %(default)s)")
    p.add_argument("--least", type=int, default=20, metavar="M", help="least confident images (default: %(default)s)")
    p.add_argument("--mask-pattern", default="{stem}_mask.png", help="mask file per image (default: %(default)s)")
    p.add_argument("--annotations", metavar="FILE", help="LabelMe JSON (file or folder) or COCO JSON with the objects")
    p.add_argument(
        "--label",
        metavar="CLASS",
        help="the class every image shows (else: from --annotations or a "
        "folder named after --class; images with no label are left out)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    _mapping_options(p)
    _writer_options(p, model_option=False)

    from harness.scan.command import SCAN_EPILOG, add_arguments

    p = _add(sub, "scan", "scan a data set: object mass per image, SpRAy clusters per class", SCAN_EPILOG)
    add_arguments(p)
    return parser


def _scan(args: argparse.Namespace) -> int:
    from harness.scan.command import scan

    return scan(args)


def _pytest_registry(args: argparse.Namespace) -> None:
    """``validate`` without ``--models`` checks against the registry pytest would load
    for the same paths, from whichever folder it is run."""
    from harness.authoring.validate import locate_registry

    found = locate_registry(args.paths)
    args.models = str(found.path)
    if not args.no_models and not found.path.is_file():
        print(f"validate: no model registry at {found.describe()}; give --models FILE", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run a command; returns the exit status (0 ok, 1 problems found, 2 usage error)."""
    from harness.authoring import commands

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "validate" and args.models is None:
        _pytest_registry(args)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "validate": commands.validate,
        "models": commands.models,
        "schema": commands.schema,
        "new": commands.new,
        "import": commands.import_,
        "sample": commands.sample,
        "scan": _scan,
    }
    try:
        return handlers[args.command](args)
    except commands.UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
