"""What a registry holds, model by model: ``python -m harness models``.

Each model is built (weights loaded, one probe forward) and bound to the LRP explainer,
so the listing says what a run would do: the input size and preprocessing the harness
applies, the class count, and which LRP backend explains the model and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.registry import Registry

CLASSES_SHOWN = 6


@dataclass
class ModelInfo:
    """One model of the listing; ``error`` set when it cannot be used."""

    name: str
    architecture: str = ""
    args: dict[str, object] = field(default_factory=dict)
    weights: str = ""
    classes: list[str] = field(default_factory=list)
    classes_source: str = ""
    size: tuple[int, int] = (0, 0)
    preprocessing: str = ""
    canonizer: str = ""
    backend: str = ""
    backend_note: str = ""
    description: str = ""
    error: str = ""


def describe(registry: Registry, name: str, explainer: str = "lrp/epsilon_plus_flat") -> ModelInfo:
    """Build model ``name`` on the CPU and find the backend that explains it."""
    import torch

    from harness.attribution import make_explainer
    from harness.models import build_model

    info = ModelInfo(name=name)
    try:
        entry = registry.get(name)
    except HarnessError as exc:
        info.error = str(exc)
        return info
    info.architecture, info.args, info.canonizer = entry.architecture, dict(entry.args), entry.canonizer
    info.weights = str(entry.base_dir / entry.weights) if entry.weights else "(none: the factory's initialisation)"
    info.classes, info.classes_source = list(entry.classes), entry.classes_source
    info.size, info.description = entry.preprocessing.size, entry.description
    info.preprocessing = entry.preprocessing.describe()
    try:
        loaded = build_model(name, registry, torch.device("cpu"))
        bound = make_explainer(explainer, loaded, "auto")
    except Exception as exc:  # noqa: BLE001 - user architectures can raise anything; the listing shows it
        info.error = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
        return info
    info.backend, info.backend_note = bound.backend, bound.note
    return info


def format_info(info: ModelInfo) -> str:
    """The listing's block of one model."""
    lines = [info.name]

    def row(key: str, value: str) -> None:
        lines.append(f"  {key:<14} {value}")

    if info.architecture:
        args = ", ".join(f"{k}={v!r}" for k, v in info.args.items())
        row("architecture", info.architecture + (f" ({args})" if args else ""))
        row("weights", info.weights)
        shown = ", ".join(info.classes[:CLASSES_SHOWN])
        more = f", ... ({len(info.classes) - CLASSES_SHOWN} more)" if len(info.classes) > CLASSES_SHOWN else ""
        row("input size", f"{info.size[0]} x {info.size[1]} (height x width), RGB")
        row("classes", f"{len(info.classes)} from {info.classes_source}: {shown}{more}")
        row("preprocessing", info.preprocessing)
        row("canonizer", info.canonizer)
    if info.backend:
        row("LRP backend", f"{info.backend}: {info.backend_note}" if info.backend_note else info.backend)
    if info.description:
        row("description", " ".join(info.description.split()))
    if info.error:
        row("error", info.error)
    return "\n".join(lines)
