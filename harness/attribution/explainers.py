"""Explainers by name, and the choice of backend that computes them.

Every explainer maps a batch and one target class per row to ``(logits, relevance)``
where relevance has the input's shape and the logits are the unmodified model's own
(its predictions). LRP starts from ``logits * one_hot(target)``, so a map's sum
approximates the target logit (conservation; biases absorb a little).

LRP backends, in the order ``auto`` tries them:

1. the graph engine (:class:`harness.attribution.graph.GraphLRP`), the fast engine, for
   traceable models;
2. zennit (:class:`harness.attribution.zennit_backend.ZennitLRP`), prepared for the
   architecture (ResNetCanonizer, VGGCanonizer or an fx rewrite), with a note why.

A vision transformer (torchvision's ``VisionTransformer``) gets the transformer engine
(:class:`harness.attribution.transformer.TransformerLRP`, backend ``transformer``) under
``auto`` and ``fast``: neither backend above has a rule for attention.

The graph engine computes the same relevance as zennit (its test suite checks it).
A model that neither can explain correctly is a :class:`HarnessError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from harness.attribution.gradient import InputXGradient
from harness.attribution.transformer import looks_like_vit
from harness.attribution.zennit_backend import ZennitLRP, canonizers_for, choose_method, make_composite
from harness.errors import HarnessError
from harness.models import LoadedModel

Backend = Literal["auto", "fast", "zennit"]
Engine = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

LRP_RULE_SETS = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")
EXPLAINERS: dict[str, str] = {
    **{f"lrp/{rule}": f"LRP with zennit's {rule} composite" for rule in LRP_RULE_SETS},
    "gradient/input_x_gradient": "input times gradient of the target logit (no LRP rules; a baseline)",
    "cam/gradcam": "Grad-CAM on the last convolution (a ViT: its patch tokens) or the registry's cam_layer, ReLU'd, "
    "upsampled bilinearly",
}
ALIASES = {rule: f"lrp/{rule}" for rule in LRP_RULE_SETS} | {
    "lrp": "lrp/epsilon_plus_flat",
    "input_x_gradient": "gradient/input_x_gradient",
    "gradcam": "cam/gradcam",
}


# Explainers added at run time (register_explainer): name -> factory of the engine.
CUSTOM: dict[str, Callable[[LoadedModel], Engine]] = {}


def register_explainer(name: str, description: str, factory: Callable[[LoadedModel], Engine]) -> None:
    """Add explainer ``family/name`` whose engine ``factory(model)`` builds (for example a
    test's edge detector that ignores the model, for the sanity check). Its maps get the
    non-LRP health checks (finite, not all zero); the built-in names cannot be replaced."""
    family, _, rest = name.partition("/")
    if not rest or family in ("lrp", "cam", "gradient") or name in ALIASES:
        raise HarnessError(f"cannot register explainer {name!r}: give family/name outside lrp/, cam/, gradient/")
    EXPLAINERS[name] = description
    CUSTOM[name] = factory


def canonical_name(name: str) -> str:
    """Registry key for a YAML explainer string; raises with the known names."""
    key = ALIASES.get(name, name)
    if key not in EXPLAINERS:
        raise HarnessError(f"unknown explainer {name!r}; known explainers: {', '.join(EXPLAINERS)}")
    return key


def zennit_composite(rule_set: str, model: LoadedModel, batch_shape: torch.Size | None = None) -> Any:
    """Stock zennit's composite for ``rule_set`` with the canonizers zennit itself offers for
    the architecture (ResNetCanonizer, VGGCanonizer, else SequentialMergeBatchNorm).

    For benchmarks against plain zennit only: it is right for sequential models and
    torchvision ResNets/VGGs, not for other graphs (the harness explains those with
    :class:`~harness.attribution.zennit_backend.ZennitLRP`). ``batch_shape`` is unused (zennit
    broadcasts the box bounds) and kept for callers that pass it.
    """
    from zennit.canonizers import SequentialMergeBatchNorm

    if model.entry.canonizer == "none":
        canonizers: list[Any] = []
    else:
        method = choose_method(model.module, model.entry.canonizer)
        canonizers = canonizers_for(method) if method.endswith("canonizer") else [SequentialMergeBatchNorm()]
    low, high = model.preprocessing.bounds()
    return make_composite(rule_set, canonizers, low=low.to(model.device), high=high.to(model.device))


@dataclass
class Explainer:
    """A callable explainer bound to one model.

    Attributes
    ----------
    name
        Registry key, e.g. ``lrp/epsilon_plus_flat``.
    backend
        ``fast`` (the graph engine), ``zennit``, ``transformer`` (a vision transformer), ``autograd``
        or ``custom``.
    note
        Why the backend was chosen (shown once in the run header).
    engine
        ``(x, targets) -> (logits, relevance)``.
    """

    name: str
    model: LoadedModel
    backend: str
    note: str
    engine: Engine

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, relevance)`` for batch ``x`` and one target index per row."""
        return self.engine(x, targets)


def _fast_engine(model: LoadedModel, rule: str) -> tuple[Engine | None, str, str]:
    """The graph engine if it covers the model: ``(engine, note, why not)``."""
    try:
        from harness.attribution.graph import GraphLRP
    except ImportError as exc:  # pragma: no cover - part of the package
        return None, "", f"graph engine: not available ({exc})"
    low, high = (b.to(model.device) for b in model.preprocessing.bounds())
    # Every backend must see the same canonisation, or their relevance would differ.
    merge = model.entry.canonizer != "none"
    try:
        reason = GraphLRP.check(model.module, rule)
        if reason is None:
            engine = GraphLRP(model.module, rule, low=low, high=high, merge_batchnorm=merge)
            return engine, "fast LRP engine (graph; checked against zennit in the test suite)", ""
    except Exception as exc:  # noqa: BLE001 - an engine that fails to set up leaves zennit its turn
        reason = f"{type(exc).__name__}: {exc}"
    return None, "", f"graph engine: {reason}"


def make_explainer(name: str, model: LoadedModel, backend: Backend = "auto") -> Explainer:
    """Bind explainer ``name`` to ``model``.

    ``auto`` prefers the fast LRP engine (the graph engine) and falls back to zennit when
    it does not cover the model (the note says why); ``fast`` raises instead of falling
    back; ``zennit`` forces the zennit backend.

    Raises
    ------
    HarnessError
        Unknown explainer or backend; ``fast`` on a model the graph engine does not
        cover; a model that no backend can explain correctly (naming the module).
    """
    key = canonical_name(name)
    kind, _, rule = key.partition("/")
    if key in CUSTOM:
        return Explainer(key, model, "custom", "", CUSTOM[key](model))
    if kind == "cam":
        return _gradcam(key, model)
    if kind != "lrp":
        return Explainer(key, model, "autograd", "", InputXGradient(model.module))
    if backend not in ("auto", "fast", "zennit"):
        raise HarnessError(f"unknown LRP backend {backend!r}; expected auto, fast or zennit")
    if looks_like_vit(model.module):
        if backend == "zennit":
            raise HarnessError(
                f"model {model.name!r} is a vision transformer: zennit has no LRP rule for attention; "
                "use the LRP backend auto or fast (the transformer engine)"
            )
        return _transformer(key, rule, model)
    why = ""
    if backend == "zennit":
        note = "zennit requested"
    else:
        engine, note, why = _fast_engine(model, rule)
        if engine is not None:
            return Explainer(key, model, "fast", note, engine)
        if backend == "fast":
            raise HarnessError(f"--xai-lrp-backend fast: model {model.name!r} is not supported: {why}")
        note = f"fast LRP does not cover model {model.name!r} ({why}); using zennit"
    low, high = (b.to(model.device) for b in model.preprocessing.bounds())
    try:
        zennit = ZennitLRP(model.module, rule, low=low, high=high, canonizer=model.entry.canonizer)
    except HarnessError as exc:
        if not why:
            raise
        raise HarnessError(f"model {model.name!r}: {exc}; nor does the fast LRP engine cover it ({why})") from None
    return Explainer(key, model, "zennit", f"{note} ({zennit.describe()})", zennit)


def _transformer(key: str, rule: str, model: LoadedModel) -> Explainer:
    """The transformer LRP engine for a vision transformer (zennit has no rule for attention)."""
    from harness.attribution.transformer import TransformerLRP, vit_problem

    problem = vit_problem(model.module)
    if problem is not None:
        raise HarnessError(
            f"model {model.name!r} looks like a vision transformer, but LRP cannot explain it: {problem}"
        )
    low, high = (b.to(model.device) for b in model.preprocessing.bounds())
    engine = TransformerLRP(model.module, rule, low=low, high=high)
    return Explainer(key, model, "transformer", engine.describe(), engine)


def _gradcam(key: str, model: LoadedModel) -> Explainer:
    """Grad-CAM on the registry's ``cam_layer``, else on the last convolution the logits
    depend on (found with one probe forward of a zero image at the model's input size);
    for a vision transformer, on the patch tokens (:mod:`harness.attribution.vit_cam`)."""
    from harness.attribution.cam import GradCAM, last_conv_layer

    if looks_like_vit(model.module):
        from harness.attribution.vit_cam import TokenGradCAM

        token_cam = TokenGradCAM(model.module, model.entry.cam_layer)
        how = "cam_layer in the registry" if model.entry.cam_layer else "the last block's ln_1"
        return Explainer(key, model, "autograd", f"{token_cam.describe()} ({how})", token_cam)
    layer = model.entry.cam_layer
    how = "cam_layer in the registry"
    if layer is None:
        height, width = model.preprocessing.size
        probe = torch.zeros(1, len(model.preprocessing.mean), height, width, device=model.device)
        layer = last_conv_layer(model.module, probe)
        how = "the last convolution"
    cam = GradCAM(model.module, layer)
    return Explainer(key, model, "autograd", f"{cam.describe()} ({how})", cam)
