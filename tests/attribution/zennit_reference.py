"""Test-only zennit reference for graph models: what zennit computes once the model is canonised.

zennit attaches rules to modules only, so the model is traced with ``torch.fx`` and
rewritten (on a deep copy) before zennit sees it:

* ``a + b`` of two tensors goes through ``zennit.layer.Sum`` (on ``torch.stack``), which
  the composites give the ``Norm`` rule;
* ``x * gate`` (gate: a sigmoid / hard sigmoid output) and ``x * c`` / ``x / c`` with a
  number ``c``: an autograd function passes relevance to ``x`` unchanged, none to the gate
  (``x + c`` needs nothing: its gradient passes relevance unchanged);
* functional activations become modules (``Pass``), functional average pools and spatial
  means become ``nn.AdaptiveAvgPool2d`` / ``nn.AvgPool2d`` modules (``Norm``);
* a BatchNorm whose input is a Conv2d/Linear feeding only it is merged into that layer
  with zennit's formula and removed from the graph (the exact merge: zennit's own
  ``MergeBatchNorm`` leaves ``x / sqrt(1 + eps)`` behind, see :func:`stock_resnet_reference`).

Everything else (cat, flatten, view, padding, max pooling, dropout) keeps its gradient,
which is the right routing of relevance.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat
from zennit.layer import Sum


class _PassFirst(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, gate: Any) -> Tensor:
        return x * gate

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def pass_first(x: Tensor, gate: Any) -> Tensor:
    """``x * gate`` with all relevance to ``x``; the gate leaves the autograd graph, so the
    hooks of the layers computing it never fire (zennit's rules cannot take a missing gradient)."""
    out: Tensor = _PassFirst.apply(x, gate.detach() if isinstance(gate, Tensor) else gate)
    return out


def pass_div(x: Tensor, c: float) -> Tensor:
    out: Tensor = _PassFirst.apply(x, 1.0 / c)
    return out


class StackSum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sum = Sum(dim=-1)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.sum(torch.stack([a, b], dim=-1))


_ACTS: dict[Any, type[nn.Module]] = {
    F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.silu: nn.SiLU, F.gelu: nn.GELU,
    F.hardswish: nn.Hardswish, torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid, F.hardsigmoid: nn.Hardsigmoid,
    torch.tanh: nn.Tanh, F.leaky_relu: nn.LeakyReLU, F.mish: nn.Mish,
}  # fmt: skip
_GATES = (nn.Sigmoid, nn.Hardsigmoid)


def _is_gate(gm: fx.GraphModule, node: Any) -> bool:
    while isinstance(node, fx.Node):
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), _GATES):
            return True
        if node.op == "call_function" and node.target in (torch.sigmoid, F.sigmoid, F.hardsigmoid):
            return True
        if node.op == "call_method" and node.target in ("view", "reshape", "flatten", "expand_as", "expand"):
            node = node.args[0]
            continue
        return False
    return False


def canonise(model: nn.Module, merge_batchnorm: bool = True) -> fx.GraphModule:
    """A deep-copied, traced and rewritten model that zennit explains as LRP should."""
    model = copy.deepcopy(model).eval()
    gm = fx.symbolic_trace(model)
    graph = gm.graph
    count = 0

    def add_module(module: nn.Module) -> str:
        nonlocal count
        count += 1
        name = f"lrp_ref_{count}"
        gm.add_submodule(name, module)
        return name

    for node in list(graph.nodes):
        target = node.target
        is_add = (
            node.op == "call_function"
            and target in (operator.add, operator.iadd, torch.add)
            or (node.op == "call_method" and target in ("add", "add_"))
        )
        is_mul = node.op == "call_function" and target in (operator.mul, operator.imul, torch.mul)
        if is_add and all(isinstance(a, fx.Node) for a in node.args[:2]):
            with graph.inserting_after(node):
                new = graph.call_module(add_module(StackSum()), tuple(node.args[:2]))
        elif is_add:
            continue  # x + c: its gradient already passes relevance to x unchanged
        elif is_mul:
            a, b = node.args[:2]
            if isinstance(a, fx.Node) and isinstance(b, fx.Node):
                kept, gate = (a, b) if _is_gate(gm, b) else (b, a)
                assert _is_gate(gm, gate), f"not a gate: {node}"
            else:
                kept, gate = (a, b) if isinstance(a, fx.Node) else (b, a)
            with graph.inserting_after(node):
                new = graph.call_function(pass_first, (kept, gate))
        elif node.op == "call_function" and target is operator.truediv and not isinstance(node.args[1], fx.Node):
            with graph.inserting_after(node):
                new = graph.call_function(pass_div, tuple(node.args[:2]))
        elif node.op == "call_function" and target in _ACTS:
            extra = {"negative_slope": node.args[1]} if target is F.leaky_relu and len(node.args) > 1 else {}
            with graph.inserting_after(node):
                new = graph.call_module(add_module(_ACTS[target](**extra)), (node.args[0],))
        elif node.op == "call_function" and target is F.adaptive_avg_pool2d:
            with graph.inserting_after(node):
                new = graph.call_module(add_module(nn.AdaptiveAvgPool2d(node.args[1])), (node.args[0],))
        elif node.op in ("call_function", "call_method") and (target is torch.mean or target == "mean"):
            keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
            with graph.inserting_after(node):
                pooled = graph.call_module(add_module(nn.AdaptiveAvgPool2d(1)), (node.args[0],))
            if keepdim:
                new = pooled
            else:
                with graph.inserting_after(pooled):
                    new = graph.call_function(torch.flatten, (pooled, 1))
        elif node.op == "call_function" and target is F.dropout:
            new = node.args[0]
        else:
            continue
        node.replace_all_uses_with(new)
        graph.erase_node(node)

    if merge_batchnorm:
        for node in list(graph.nodes):
            batch_norm = nn.modules.batchnorm._BatchNorm
            if not (node.op == "call_module" and isinstance(gm.get_submodule(node.target), batch_norm)):
                continue
            src = node.args[0]
            if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1):
                continue
            layer: Any = gm.get_submodule(str(src.target))
            if not isinstance(layer, (nn.Conv2d, nn.Linear)):
                continue
            bn: Any = gm.get_submodule(str(node.target))
            with torch.no_grad():
                scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
                bias = layer.bias if layer.bias is not None else torch.zeros(1)
                index = (slice(None),) + (None,) * (layer.weight.ndim - 1)
                layer.weight = nn.Parameter(layer.weight * scale[index])
                layer.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            node.replace_all_uses_with(src)
            graph.erase_node(node)
    graph.lint()
    gm.recompile()
    for p in gm.parameters():
        p.requires_grad_(False)
    return gm.eval()


def composite(rule_set: str, low: Tensor | float, high: Tensor | float, canonizers: list[Any] | None = None) -> Any:
    from zennit.rules import Pass

    canonizers = canonizers or []
    # zennit's composites list no rule for Mish; like every other activation it passes relevance
    extra = [(nn.Mish, Pass())]
    if rule_set == "epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=canonizers, layer_map=extra)
    if rule_set == "epsilon_gamma_box":
        return EpsilonGammaBox(low=low, high=high, canonizers=canonizers, layer_map=extra)
    return EpsilonAlpha2Beta1Flat(canonizers=canonizers, layer_map=extra)


def attribute(model: nn.Module, comp: Any, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    with Gradient(model, comp) as attributor:
        logits, relevance = attributor(x, lambda out: out * F.one_hot(targets, out.shape[1]).to(out))
    return logits.detach(), relevance.detach()


def reference(
    model: nn.Module,
    rule_set: str,
    x: Tensor,
    targets: Tensor,
    *,
    low: Tensor | float = -3.0,
    high: Tensor | float = 3.0,
    merge_batchnorm: bool = True,
) -> tuple[Tensor, Tensor]:
    """``(logits, relevance)`` of zennit's composite on the canonised model."""
    return attribute(canonise(model, merge_batchnorm), composite(rule_set, low, high), x, targets)


def stock_resnet_reference(
    model: nn.Module,
    rule_set: str,
    x: Tensor,
    targets: Tensor,
    *,
    low: Tensor | float = -3.0,
    high: Tensor | float = 3.0,
) -> tuple[Tensor, Tensor]:
    """zennit's own ``ResNetCanonizer`` on a torchvision ResNet (with its ``x / sqrt(1 + eps)`` merge)."""
    from zennit.torchvision import ResNetCanonizer

    return attribute(model, composite(rule_set, low, high, [ResNetCanonizer()]), x, targets)


# -- helpers shared by the graph engine's tests ------------------------------------------------

#: per-channel box bounds as the harness passes them: (1, C, 1, 1), already normalised
LOW = torch.tensor([-2.0, -1.8, -2.1]).view(1, 3, 1, 1)
HIGH = torch.tensor([2.2, 2.4, 2.6]).view(1, 3, 1, 1)
RULE_SETS = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")


def randomise(model: nn.Module, *, seed: int = 0, mean: float = 0.5, bias: float = 0.1) -> nn.Module:
    """Seeded non-trivial batch-norm statistics and affine parameters, non-zero biases; eval mode, frozen."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(t: Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) * (hi - lo) + lo)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                assert m.running_mean is not None and m.running_var is not None
                uniform(m.running_mean, -mean, mean)
                uniform(m.running_var, 0.5, 2.0)
                if m.affine:
                    uniform(m.weight, 0.5, 1.5)
                    uniform(m.bias, -0.2, 0.2)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                uniform(m.bias, -bias, bias)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def without_shifts(model: nn.Module) -> nn.Module:
    """Zero every batch norm's running mean and bias and every linear bias, so that nothing
    absorbs relevance and LRP conserves it exactly (the target logit is the map's sum)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None
                m.running_mean.zero_()
                m.bias.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.zero_()
    return model


def assert_relevance_close(relevance: Tensor, ref: Tensor, rtol: float = 1e-4, atol_scale: float = 1e-5) -> None:
    """``allclose`` with ``rtol`` plus an absolute tolerance scaled to the reference map's largest value."""
    assert relevance.shape == ref.shape
    assert torch.isfinite(relevance).all()
    scale = ref.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(relevance, ref, rtol=rtol, atol=atol_scale * scale)
