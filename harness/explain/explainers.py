"""Explainers by name: LRP composites (zennit, or the fast engine when it covers the
model) and a plain gradient baseline.

Every explainer maps a batch and one target class per row to ``(logits, relevance)``
where relevance has the input's shape. LRP starts from ``logits * one_hot(target)``,
so a map's sum approximates the target logit (conservation; biases absorb a little).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from harness.errors import HarnessError
from harness.models import LoadedModel

Backend = Literal["auto", "fast", "zennit"]

LRP_RULE_SETS = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")
EXPLAINERS: dict[str, str] = {
    **{f"lrp/{rule}": f"LRP with zennit's {rule} composite" for rule in LRP_RULE_SETS},
    "gradient/input_x_gradient": "input times gradient of the target logit (no LRP rules; a baseline)",
}
ALIASES = {rule: f"lrp/{rule}" for rule in LRP_RULE_SETS} | {"lrp": "lrp/epsilon_plus_flat",
                                                              "input_x_gradient": "gradient/input_x_gradient"}


def canonical_name(name: str) -> str:
    """Registry key for a YAML explainer string; raises with the known names."""
    key = ALIASES.get(name, name)
    if key not in EXPLAINERS:
        raise HarnessError(f"unknown explainer {name!r}; known explainers: {', '.join(EXPLAINERS)}")
    return key


def _one_hot_of(targets: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def start(output: torch.Tensor) -> torch.Tensor:
        return output * torch.nn.functional.one_hot(targets, output.shape[1]).to(output.dtype)
    return start


def _needs_batchnorm_merge(model: LoadedModel) -> bool:
    if model.entry.canonizer == "none":
        return False
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.module.modules())
    return model.entry.canonizer == "batchnorm" or has_bn


def zennit_composite(rule_set: str, model: LoadedModel, batch_shape: torch.Size):
    """The zennit composite for a rule set, with the canonizers the architecture needs."""
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat

    canonizers = [SequentialMergeBatchNorm()] if _needs_batchnorm_merge(model) else []
    if rule_set == "epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=canonizers)
    if rule_set == "epsilon_alpha2_beta1_flat":
        return EpsilonAlpha2Beta1Flat(canonizers=canonizers)
    if rule_set == "epsilon_gamma_box":
        low, high = model.preprocessing.bounds()
        device = model.device
        return EpsilonGammaBox(low=low.to(device).expand(batch_shape), high=high.to(device).expand(batch_shape),
                               canonizers=canonizers)
    raise HarnessError(f"unknown LRP rule set {rule_set!r}")


@dataclass
class Explainer:
    """A callable explainer bound to one model.

    Attributes
    ----------
    name
        Registry key, e.g. ``lrp/epsilon_plus_flat``.
    backend
        ``fast`` (our layer-wise engine), ``zennit`` or ``autograd``.
    note
        Why the backend was chosen (shown once in the run header).
    """

    name: str
    model: LoadedModel
    backend: str
    note: str = ""
    _fast: object | None = None

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, relevance)`` for batch ``x`` and one target index per row."""
        kind, _, rule = self.name.partition("/")
        module = self.model.module
        if kind == "gradient":
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = module(x)
                (grad,) = torch.autograd.grad(_one_hot_of(targets)(logits).sum(), x)
            return logits.detach(), (grad * x).detach()
        if self.backend == "fast" and self._fast is not None:
            with torch.no_grad():
                return self._fast(x, targets)  # type: ignore[operator]
        from zennit.attribution import Gradient

        composite = zennit_composite(rule, self.model, x.shape)
        with Gradient(model=module, composite=composite) as attributor:
            logits, relevance = attributor(x.detach(), _one_hot_of(targets))
        return logits.detach(), relevance.detach()


def make_explainer(name: str, model: LoadedModel, backend: Backend = "auto") -> Explainer:
    """Bind explainer ``name`` to ``model``; ``auto`` prefers the fast LRP engine and
    falls back to zennit when the engine does not cover a module of the model."""
    key = canonical_name(name)
    kind, _, rule = key.partition("/")
    if kind != "lrp":
        return Explainer(key, model, "autograd")
    if backend == "zennit":
        return Explainer(key, model, "zennit", "zennit requested")
    from harness.explain import sequential as lrp_fast

    reason = lrp_fast.FastLRP.check(model.module, rule)
    if reason is not None:
        if backend == "fast":
            raise HarnessError(f"--xai-lrp-backend fast: model {model.name!r} is not supported: {reason}")
        return Explainer(key, model, "zennit", f"fast LRP does not cover model {model.name!r} ({reason}); using zennit")
    low, high = model.preprocessing.bounds()
    # Both backends must see the same canonisation, or their relevance would differ.
    engine = lrp_fast.FastLRP(model.module, rule, low=low.to(model.device), high=high.to(model.device),
                              merge_batchnorm=_needs_batchnorm_merge(model))
    return Explainer(key, model, "fast", "fast LRP engine (checked against zennit in the test suite)", engine)
