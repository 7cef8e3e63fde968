"""The zennit LRP backend, correct on real architectures, and the harness's LRP reference.

zennit computes LRP through rules attached to modules, after *canonizers* have brought
the model into a form those rules fit. Which form a model needs depends on its
architecture, and choosing wrongly is silent: with only ``SequentialMergeBatchNorm`` a
ResNet's residual additions get no rule and its relevance sums to hundreds of times
the target logit. This backend prepares each model once:

* torchvision ``ResNet`` (unmodified ``forward`` and blocks): zennit's ``ResNetCanonizer``;
* torchvision ``VGG``: zennit's ``VGGCanonizer`` (batch norms merged);
* anything else: a ``torch.fx`` rewrite (:mod:`harness.attribution.lrp_rewrite`) that gives
  additions, functional activations, gates and means their rules and merges batch
  norms graph-based; a model it cannot trace, or with an op without a rule, is a
  :class:`~harness.errors.HarnessError` naming the module.

The prepared model is a private deep copy with the composite registered once; the
model itself is never modified. Predictions are the model's own: each call runs the
unmodified model under ``torch.no_grad()`` for the logits, and the prepared copy only
for the relevance (the rewrite's outputs are checked against them on every batch).

Reference: :func:`zennit_explain` is the stable entry point other engines test against.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor, nn

from harness.attribution.lrp_rewrite import Mean, UnexplainableOp, rewrite
from harness.errors import HarnessError

Canonizer = Literal["auto", "batchnorm", "none", "graph", "resnet", "vgg"]
"""How to prepare a model.

``auto`` and ``batchnorm`` (the registry's values): what the architecture needs, batch
norms merged; ``none``: no batch norm merged (each gets the Pass rule), but residual
additions and other ops still get their rules, since without them LRP is wrong;
``graph``: force the fx rewrite (with merging); ``resnet`` / ``vgg``: force zennit's
canonizer for that torchvision family (a :class:`HarnessError` on other models).
"""

RULE_SETS = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")

# The tolerance of the per-batch check that the prepared copy still computes the model:
# merged batch norms round differently (about 1e-6 relative); a wrong rewrite is off by O(1).
_FUNCTION_TOLERANCE = 1e-2


def is_torchvision_resnet(module: nn.Module) -> bool:
    """A torchvision ResNet whose forward and blocks are torchvision's own (what
    ``ResNetCanonizer`` rewrites; a subclass with its own forward is not covered)."""
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    if not isinstance(module, ResNet) or type(module).forward is not ResNet.forward:
        return False
    if type(module)._forward_impl is not ResNet._forward_impl:
        return False
    blocks = [m for m in module.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    return all(type(b) in (BasicBlock, Bottleneck) for b in blocks)


def is_torchvision_vgg(module: nn.Module) -> bool:
    """A torchvision VGG with torchvision's forward (a purely sequential network)."""
    try:
        from torchvision.models.vgg import VGG
    except ImportError:  # pragma: no cover
        return False
    if not isinstance(module, VGG) or type(module).forward is not VGG.forward:
        return False
    return all(type(m) is nn.Sequential for m in (module.features, module.classifier))


def choose_method(module: nn.Module, canonizer: str = "auto") -> str:
    """Which preparation :class:`ZennitLRP` uses: ``resnet-canonizer``, ``vgg-canonizer``,
    ``graph-rewrite`` or ``graph-rewrite-no-merge``."""
    if canonizer not in ("auto", "batchnorm", "none", "graph", "resnet", "vgg"):
        raise HarnessError(f"unknown canonizer {canonizer!r}; expected auto, batchnorm, none, graph, resnet or vgg")
    if canonizer == "resnet":
        if not is_torchvision_resnet(module):
            raise HarnessError(f"canonizer 'resnet' needs a torchvision ResNet, not {type(module).__name__}")
        return "resnet-canonizer"
    if canonizer == "vgg":
        if not is_torchvision_vgg(module):
            raise HarnessError(f"canonizer 'vgg' needs a torchvision VGG, not {type(module).__name__}")
        return "vgg-canonizer"
    if canonizer == "none":
        return "graph-rewrite-no-merge"
    if canonizer in ("auto", "batchnorm"):
        if is_torchvision_resnet(module):
            return "resnet-canonizer"
        if is_torchvision_vgg(module):
            return "vgg-canonizer"
    return "graph-rewrite"


def make_composite(
    rule_set: str,
    canonizers: list[Any],
    *,
    low: Tensor | float = -3.0,
    high: Tensor | float = 3.0,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
) -> Any:
    """zennit's composite for ``rule_set`` with ``canonizers``, plus the rules of the
    modules the rewrite introduces (:class:`~harness.attribution.lrp_rewrite.Mean`: ``Norm``;
    ``nn.Mish``, which zennit does not list as an activation: ``Pass``)."""
    from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat
    from zennit.rules import Norm, Pass

    extra = [(Mean, Norm(stabilizer=stabilizer)), (nn.Mish, Pass())]
    if rule_set == "epsilon_plus_flat":
        return EpsilonPlusFlat(epsilon=epsilon, stabilizer=stabilizer, layer_map=extra, canonizers=canonizers)
    if rule_set == "epsilon_alpha2_beta1_flat":
        return EpsilonAlpha2Beta1Flat(epsilon=epsilon, stabilizer=stabilizer, layer_map=extra, canonizers=canonizers)
    if rule_set == "epsilon_gamma_box":
        # ZBox broadcasts (1, C, 1, 1) bounds to each batch itself: one composite serves every batch size
        return EpsilonGammaBox(
            low=low,
            high=high,
            epsilon=epsilon,
            gamma=gamma,
            stabilizer=stabilizer,
            layer_map=extra,
            canonizers=canonizers,
        )
    raise HarnessError(f"unknown LRP rule set {rule_set!r}; expected one of {', '.join(RULE_SETS)}")


def canonizers_for(method: str) -> list[Any]:
    """zennit canonizers of a preparation method (the fx rewrite needs none: it merges itself)."""
    if method == "resnet-canonizer":
        from zennit.torchvision import ResNetCanonizer

        return [ResNetCanonizer()]
    if method == "vgg-canonizer":
        from zennit.torchvision import VGGCanonizer

        return [VGGCanonizer()]
    return []


class ZennitLRP:
    """LRP with zennit on a prepared copy of ``module``.

    Parameters
    ----------
    module
        The classifier (eval mode). It is deep-copied; the copy is rewritten and
        canonised once, and the composite stays registered on it.
    rule_set
        One of :data:`RULE_SETS`.
    low, high
        Box bounds of the normalised input (``epsilon_gamma_box``): floats or tensors of
        shape ``(1, C, 1, 1)``.
    canonizer
        See :data:`Canonizer`.

    Attributes
    ----------
    method
        ``resnet-canonizer``, ``vgg-canonizer``, ``graph-rewrite`` or ``graph-rewrite-no-merge``.
    summary
        What the fx rewrite changed (empty for the canonizer methods).

    Raises
    ------
    HarnessError
        If the model cannot be explained correctly (naming the module), or the rule set
        or canonizer is unknown.
    """

    def __init__(
        self,
        module: nn.Module,
        rule_set: str,
        *,
        low: Tensor | float = -3.0,
        high: Tensor | float = 3.0,
        canonizer: str = "auto",
    ) -> None:
        if rule_set not in RULE_SETS:
            raise HarnessError(f"unknown LRP rule set {rule_set!r}; expected one of {', '.join(RULE_SETS)}")
        self.module = module
        self.rule_set = rule_set
        self.method = choose_method(module, canonizer)
        prepared = copy.deepcopy(module).eval()
        self.summary: dict[str, int] = {}
        if self.method.startswith("graph-rewrite"):
            try:
                prepared, counts = rewrite(prepared, merge_batchnorm=self.method == "graph-rewrite")
            except UnexplainableOp as exc:
                raise HarnessError(f"zennit LRP cannot explain {type(module).__name__} correctly: {exc}") from None
            self.summary = dict(counts)
        for param in prepared.parameters():
            param.requires_grad_(False)
        self.canonizers = canonizers_for(self.method)
        self.composite = make_composite(rule_set, self.canonizers, low=low, high=high)
        self.composite.register(prepared)
        self._exact_merges()
        self.prepared = prepared

    def _exact_merges(self) -> None:
        """Make zennit's merged batch norms the identity.

        zennit's ``MergeBatchNorm`` leaves each merged batch norm computing
        ``x / sqrt(1 + eps)``, which scales the canonised model's activations and logits
        (by 18 % per layer for ``eps = 0.5``). The copy is private and never un-canonised,
        so its ``eps`` can be zero: the canonised model then computes the model's own
        function, as the fx rewrite (which removes merged batch norms) and the graph engine do.
        """
        from zennit.canonizers import MergeBatchNorm

        for handle in self.composite.handles:
            if isinstance(handle, MergeBatchNorm) and handle.batch_norm is not None:
                handle.batch_norm.eps = 0.0

    @staticmethod
    def check(module: nn.Module, canonizer: str = "auto") -> str | None:
        """``None`` if this backend explains ``module`` correctly, else a reason naming the module."""
        try:
            method = choose_method(module, canonizer)
        except HarnessError as exc:
            return str(exc)
        if method.startswith("graph-rewrite"):
            try:
                rewrite(module, merge_batchnorm=False)  # merging would modify the module's layers
            except UnexplainableOp as exc:
                return str(exc)
        return None

    def describe(self) -> str:
        """One line: how the model was prepared (for the run header)."""
        if self.method == "resnet-canonizer":
            return "zennit ResNetCanonizer"
        if self.method == "vgg-canonizer":
            return "zennit VGGCanonizer"
        done = ", ".join(f"{n} {what}" for what, n in self.summary.items()) or "nothing to change"
        return f"fx rewrite for zennit ({done})"

    def __call__(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, relevance)``: the unmodified model's logits and LRP relevance of
        ``logits * one_hot(targets)`` (as zennit's ``Gradient`` attributor computes it)."""
        with torch.no_grad():
            logits = self.module(x)
        index = torch.as_tensor(targets, device=x.device).long().reshape(-1, 1)
        inputs = x.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                output = self.prepared(inputs)
                start = torch.zeros_like(output).scatter_(1, index, output.detach().gather(1, index))
                (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=start)
        finally:
            for hook in self.composite.hook_refs:
                hook.stored_tensors.clear()  # the hooks would keep the last batch's activations alive
        scale = max(1.0, float(logits.abs().max()))
        if not torch.allclose(output.detach(), logits, rtol=0.0, atol=_FUNCTION_TOLERANCE * scale):
            raise HarnessError(
                f"zennit LRP: the prepared {type(self.module).__name__} ({self.describe()}) computes "
                f"other logits than the model (max difference "
                f"{float((output.detach() - logits).abs().max()):.3g}); relevance would be wrong"
            )
        return logits, relevance.detach()


def zennit_explain(
    module: nn.Module,
    rule_set: str,
    x: Tensor,
    targets: Tensor,
    low: Tensor | float = -3.0,
    high: Tensor | float = 3.0,
    canonizer: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Reference LRP: the relevance zennit computes once the model is prepared correctly.

    A stable, documented entry point for equality tests of other LRP engines.

    Parameters
    ----------
    module
        The classifier in eval mode (left unchanged).
    rule_set
        ``epsilon_plus_flat``, ``epsilon_gamma_box`` or ``epsilon_alpha2_beta1_flat``.
    x
        Input batch (normalised), ``(N, C, H, W)``.
    targets
        One class index per row; LRP starts from ``logits * one_hot(targets)``.
    low, high
        Box bounds of the input for ``epsilon_gamma_box`` (floats or ``(1, C, 1, 1)``).
    canonizer
        ``auto`` (what the architecture needs), ``batchnorm``, ``none`` (no batch norm
        merged), ``graph`` (force the fx rewrite), ``resnet`` or ``vgg``.

    Returns
    -------
    (logits, relevance)
        The unmodified model's logits ``(N, K)`` and the relevance, shaped like ``x``.

    Raises
    ------
    HarnessError
        If the model cannot be explained correctly (the message names the module).
    """
    return ZennitLRP(module, rule_set, low=low, high=high, canonizer=canonizer)(x, targets)
