"""The command-line commands (parsed by :mod:`harness.cli`).

Each takes the parsed arguments and returns an exit status; messages go to stdout,
warnings to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.authoring.classmap import ClassMap, parse_map_args, read_map_file
from harness.authoring.drafts import CaseDraft, RegionDraft, sanitise_id
from harness.authoring.expand import DEFAULT_MASK_PATTERN, expand_cases
from harness.authoring.importers import ImportResult
from harness.authoring.writer import SuiteHead, WriteResult, write_suite
from harness.errors import HarnessError, ModelError, SpecError


class UsageError(HarnessError):
    """The arguments do not make sense together."""


def _warn(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def _registry(path: str) -> Any:
    from harness.models import load_registry

    return load_registry(path)


def _classes(registry_path: str, model: str | None) -> list[str] | None:
    """The model's classes (``None`` when no model is named).

    A named model whose classes cannot be read (no registry, unknown name, an entry
    without classes) is an error: cases written against it could not be checked.
    """
    if not model:
        return None
    try:
        return _registry(registry_path).get(model).classes
    except ModelError as exc:
        raise ModelError(f"cannot check class names against model {model!r}: {exc}") from None


def _suite_model(path: Path) -> str | None:
    """The model named in an existing suite (for class checks when appending)."""
    from harness.yamlio import load_marked

    try:
        raw = load_marked(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a broken suite is reported by write_suite; here it only means "unknown"
        return None
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("model"), str):
        return raw["model"]
    models = raw.get("models")
    return models[0] if isinstance(models, list) and models and isinstance(models[0], str) else None


def _target_model(args: argparse.Namespace) -> str | None:
    output = Path(args.output)
    if args.model:
        return args.model
    if output.is_file() and not getattr(args, "overwrite", False):
        return _suite_model(output)
    return None


def _write(args: argparse.Namespace, cases: list[CaseDraft], origin: str, label: str | None = None) -> WriteResult:
    output = Path(args.output)
    if not output.name.endswith(".xai.yaml"):
        _warn([f"{output} does not end in .xai.yaml, so pytest will not collect it"])
    exists = output.is_file() and not getattr(args, "overwrite", False)
    if not exists and not args.model:
        raise UsageError("a new suite needs --model NAME (the model under test)")
    if exists and args.model and _suite_model(output) not in (None, args.model):
        _warn([f"{output} already names its model ({_suite_model(output)}); --model {args.model} is not written"])
    head = SuiteHead(model=args.model, explainer=args.explainer, schema=args.schema_hook, origin=origin, label=label)
    result = write_suite(output, cases, head, overwrite=getattr(args, "overwrite", False))
    verb = "appended" if result.appended else "wrote"
    shown = ", ".join(result.ids[:8]) + (f", ... ({len(result.ids) - 8} more)" if len(result.ids) > 8 else "")
    print(f"{verb} {len(result.ids)} case(s) to {output}: {shown}")
    if result.masks:
        print(f"saved {len(result.masks)} mask PNG(s) in {output.parent / 'masks'}")
    todo = sum(c.needs_annotation for c in cases)
    if todo:
        print(f"{todo} case(s) still need their object drawn (search for 'TODO' in {output})")
    print(f"next: python -m harness validate {output}")
    return result


def _class_map(args: argparse.Namespace) -> ClassMap:
    mapping: dict[str, str | None] = {}
    if args.map_file:
        mapping.update(read_map_file(args.map_file))
    mapping.update(parse_map_args(args.map))
    classes = _classes(args.models, _target_model(args))
    return ClassMap(mapping=mapping, classes=classes, keep_unknown=args.keep_unknown)


# --------------------------------------------------------------------------- validate / schema


def validate(args: argparse.Namespace) -> int:
    """``validate PATH...``: print every problem as file:line: field: message."""
    from harness.authoring.validate import validate_paths

    registry = None
    registry_errors: list[SpecError] = []
    if not args.no_models:
        try:
            registry = _registry(args.models)
        except ModelError as exc:
            registry_errors.append(SpecError(args.models, None, "", f"{exc} (model and label checks skipped)"))
    report = validate_paths(args.paths, registry, args.model)
    if registry is not None:
        registry_errors += _registry_problems(registry, args.model or _suite_models(args.paths))
    report.errors = registry_errors + report.errors
    for error in report.errors:
        print(error.format())
    print(report.summary())
    return 1 if report.errors else 0


def _suite_models(paths: list[str]) -> list[str]:
    """The models the suites under ``paths`` name (in first-seen order)."""
    from harness.authoring.validate import find_suites
    from harness.yamlio import load_marked

    names: dict[str, None] = {}
    for path in find_suites(paths)[0]:
        try:
            raw = load_marked(path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - a broken suite is reported by validate_paths
            continue
        if not isinstance(raw, dict):
            continue
        listed = raw.get("models")
        found: list[Any] = listed if isinstance(listed, list) else [raw.get("model")]
        names.update((n, None) for n in found if isinstance(n, str))
    return list(names)


def _registry_problems(registry: Any, models: list[str]) -> list[SpecError]:
    """Errors of the registry file for the entries in use: broken keys, architectures that
    do not import, missing weights (nothing is built)."""
    found: list[SpecError] = []
    for name in models:
        if name in registry.names():
            found += registry.problems(name)
    return found


def models(args: argparse.Namespace) -> int:
    """``models``: every registered model, its input, classes, preprocessing and LRP backend."""
    from harness.inventory import describe, format_info

    registry = _registry(args.models)
    names = args.model or registry.names()
    errors = 0
    for index, name in enumerate(names):
        info = describe(registry, name, args.explainer)
        errors += bool(info.error)
        print(("\n" if index else "") + format_info(info))
    print(f"\n{len(names)} models, {errors} errors ({args.models})")
    return 1 if errors or not names else 0


def schema(args: argparse.Namespace) -> int:
    """``schema``: the JSON Schema of a suite."""
    from harness.spec import suite_json_schema

    text = json.dumps(suite_json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


# --------------------------------------------------------------------------- new


def _parse_polygon(tokens: list[str]) -> list[tuple[float, float]]:
    points = []
    for token in tokens:
        try:
            x, y = (float(v) for v in token.split(","))
        except ValueError:
            raise UsageError(f"--polygon points look like X,Y (got {token!r})") from None
        points.append((x, y))
    if len(points) < 3:
        raise UsageError("--polygon needs at least 3 points")
    return points


def _given_region(args: argparse.Namespace) -> RegionDraft | None:
    if args.mask:
        return RegionDraft("mask", Path(args.mask).resolve())
    if args.box:
        x0, y0, x1, y1 = args.box
        if not (x1 > x0 and y1 > y0):
            raise UsageError("--box is X0 Y0 X1 Y1 with X1 > X0 and Y1 > Y0")
        return RegionDraft("box", tuple(args.box))
    if args.polygon:
        return RegionDraft("polygon", _parse_polygon(args.polygon))
    return None


def new(args: argparse.Namespace) -> int:
    """``new SUITE``: scaffold a suite or append one case (or one per image of a glob)."""
    region = _given_region(args)
    if args.image:
        if args.mask_pattern or args.label_regex:
            raise UsageError("--mask-pattern and --label-regex go with --glob")
        if region is None:
            raise UsageError("give the object: --mask PNG, --box X0 Y0 X1 Y1 or --polygon X,Y X,Y X,Y ...")
        if not args.label:
            raise UsageError("give the expected class with --label")
        image = Path(args.image)
        if not image.is_file():
            raise UsageError(f"image not found: {image}")
        cases = [
            CaseDraft(id=sanitise_id(args.id or image.stem), image=image.resolve(), label=args.label, regions=[region])
        ]
        warnings: list[str] = []
    else:
        if not args.label and not args.label_regex:
            raise UsageError("give the expected class with --label (or --label-regex)")
        found = expand_cases(
            args.glob,
            args.mask_pattern or DEFAULT_MASK_PATTERN,
            label=args.label,
            label_regex=args.label_regex,
            id_pattern=args.id or "{stem}",
            missing="todo" if region is not None else "skip",
        )
        cases, warnings = found.cases, found.warnings
        if region is not None:
            for case in cases:  # a region shared by every image of the glob
                case.regions = [region]
    for case in cases:
        case.description, case.tags = args.description, list(args.tag)
        case.skip, case.xfail = args.skip or False, args.xfail or False
    _warn(warnings)
    if not cases:
        print("nothing to write", file=sys.stderr)
        return 1
    model = _target_model(args)
    classes = _classes(args.models, model)
    unknown = sorted({c.label for c in cases if classes is not None and c.label and c.label not in classes})
    if unknown:
        _warn([f"class {name!r} is not a class of model {model!r} ({', '.join(classes or [])})" for name in unknown])
    _write(args, cases, "python -m harness new")
    return 0


# --------------------------------------------------------------------------- import


def _read(args: argparse.Namespace) -> ImportResult:
    result = ImportResult()
    if args.format == "labelme":
        from harness.authoring.importers.labelme import import_labelme

        return import_labelme(args.inputs)
    if args.format == "coco":
        from harness.authoring.importers.coco import import_coco

        for path in args.inputs:
            result.extend(import_coco(path, args.images, args.category, args.min_area))
        return result
    if args.format == "voc":
        from harness.authoring.importers.voc import import_voc_boxes, import_voc_segmentation

        if args.segmentation:
            return import_voc_segmentation(args.inputs, args.segmentation, args.images)
        return import_voc_boxes(args.inputs, args.images)
    if not args.label and not args.label_regex:
        raise UsageError("import masks needs --label CLASS or --label-regex REGEX")
    for path in args.inputs:
        result.extend(expand_cases(path, args.mask_pattern, label=args.label, label_regex=args.label_regex))
    return result


def import_(args: argparse.Namespace) -> int:
    """``import FORMAT INPUT...``: annotation exports to cases."""
    found = _read(args)
    cases, dropped = _class_map(args).apply(found.cases)
    _warn(found.warnings + dropped)
    if not cases:
        print("no cases to write", file=sys.stderr)
        return 1
    _write(args, cases, f"python -m harness import {args.format}")
    return 0


# --------------------------------------------------------------------------- sample


def _annotations(args: argparse.Namespace, class_map: ClassMap) -> dict[str, list[RegionDraft]]:
    from harness.authoring.sample import annotation_index

    path = Path(args.annotations)
    if path.is_dir():
        kind = "labelme"
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--annotations {path}: not readable as JSON ({exc})") from None
        kind = "coco" if isinstance(data, dict) and "annotations" in data else "labelme"
    if kind == "coco":
        from harness.authoring.importers.coco import import_coco

        found = import_coco(path, args.images if Path(args.images).is_dir() else Path(args.images).parent)
    else:
        from harness.authoring.importers.labelme import import_labelme

        found = import_labelme([path])
    cases, _ = class_map.apply(found.cases)
    _warn(found.warnings)
    return annotation_index(ImportResult(cases), args.class_name)


def sample(args: argparse.Namespace) -> int:
    """``sample``: cases for the most and least confident images of a class."""
    import torch

    from harness.authoring.sample import sample_cases
    from harness.models import build_model

    if args.most < 0 or args.least < 0 or args.most + args.least == 0:
        raise UsageError("--most and --least must be >= 0 and not both 0")
    model = build_model(args.model, _registry(args.models), torch.device("cpu"))
    class_map = ClassMap(
        mapping={**(read_map_file(args.map_file) if args.map_file else {}), **parse_map_args(args.map)},
        classes=model.classes,
        keep_unknown=False,
    )
    annotations = _annotations(args, class_map) if args.annotations else None
    found = sample_cases(
        model,
        args.class_name,
        args.images,
        args.most,
        args.least,
        args.mask_pattern,
        annotations,
        args.batch_size,
        label=args.label,
    )
    _warn(found.warnings)
    _write(args, found.cases, "python -m harness sample")
    return 0
