"""Rewrite a traceable classifier (``torch.fx``) so that zennit's composites explain it correctly.

zennit attaches LRP rules to *modules*; whatever a model computes in its own ``forward``
code (``out + identity``, ``F.relu(x)``, ``x.mean((2, 3))``, ``x * gate``) is seen by
zennit only as a plain gradient, which is the wrong relevance for most of those ops: a
residual addition passes the *full* relevance to both summands (relevance sums grow
with every block), a multiplication by a constant scales relevance by that constant.
This module rewrites the traced graph so that every such op is a module with the right
rule, or an explicit relevance routing:

======================================  =====================================================
op in the graph                         becomes
======================================  =====================================================
``a + b`` of tensors (add, iadd, ...)   :class:`Add` — a stack of the summands into zennit's
                                        ``Sum``, which the composites give the ``Norm`` rule
``x + c``, ``x - c`` (number c)          kept: the gradient passes all relevance to ``x``
``x * gate(...)`` (sigmoid/hardsigmoid  :class:`Gate` — relevance passes to ``x`` unchanged,
gate), ``x * c``, ``x / c``, ``x * p``  none to the gate (the gate acts as a per-element
(p a parameter, e.g. layer scale)       weight; the epsilon rule for a weight gives exactly
                                        that)
``F.relu``, ``F.silu``, ``torch.sigmoid`` the matching ``nn`` module (composites: ``Pass``)
and other functional activations
``x.mean(dims)``                         :class:`Mean` (composites here: ``Norm``)
``F.adaptive_avg_pool2d``, ``avg_pool``  ``nn.AdaptiveAvgPool2d`` / ``nn.AvgPool2d`` (``Norm``)
BatchNorm after a Conv/Linear that       merged into that Conv/Linear (graph-based: the
feeds only the BatchNorm                 Conv's single user is the BatchNorm)
other BatchNorm                          kept (composites: ``Pass``)
``stochastic_depth`` (eval), dropout     removed (identity in eval mode)
======================================  =====================================================

Routing ops need nothing: their gradient *is* the right relevance routing (``cat``,
``flatten``, ``view``/``reshape``, ``permute``, indexing, ``chunk``, max pooling pass
each output's relevance to the input element it came from). Every module called more
than once gets its own copy, since zennit's hooks keep one input per module.

Anything else that touches a tensor — a leaf module without an LRP rule (LayerNorm,
GroupNorm, attention), a product of two computed tensors, a subtraction of tensors — is
refused with :class:`UnexplainableOp` naming the module, never approximated.
"""

from __future__ import annotations

import copy
import operator
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn


class UnexplainableOp(Exception):
    """The graph has an op that LRP (via zennit) cannot explain correctly."""


class Add(nn.Module):
    """``a + b (+ ...)`` through zennit's ``Sum``, so that the composite's ``Norm`` rule
    splits relevance in proportion to each summand's contribution."""

    def __init__(self) -> None:
        super().__init__()
        from zennit.layer import Sum

        self.sum = Sum(dim=-1)

    def forward(self, *summands: Tensor) -> Tensor:
        # broadcast first so that a bias-like summand (a parameter of smaller shape) can be
        # stacked; broadcasting's gradient sums relevance back, which conserves it
        return self.sum(torch.stack(torch.broadcast_tensors(*summands), dim=-1))


class _PassToFirst(torch.autograd.Function):
    """``x * g`` whose backward passes the upper relevance to ``x`` unchanged and nothing to ``g``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, gate: Tensor | float) -> Tensor:
        ctx.x_shape = x.shape
        ctx.gate_like = gate.detach() if isinstance(gate, Tensor) and gate.requires_grad else None
        return x * gate

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None]:
        if grad.shape != ctx.x_shape:
            grad = grad.sum_to_size(ctx.x_shape)
        # zeros rather than None: zennit's hooks on the layers computing the gate still run
        # and cannot take an undefined gradient
        gate_grad = None if ctx.gate_like is None else torch.zeros_like(ctx.gate_like)
        return grad, gate_grad


class Gate(nn.Module):
    """Elementwise ``x * gate``: all relevance to ``x``, none to the gate.

    Chosen as an autograd function rather than a zennit rule: it needs no composite entry,
    so it behaves the same under every rule set. For a fixed gate the product is a
    diagonal linear layer, for which the epsilon rule gives ``R_x = x g / (x g) R = R``;
    the gate itself carries no relevance (as in the common LRP treatment of
    squeeze-excite and gating), so the layers computing it receive none.
    """

    def forward(self, x: Tensor, gate: Tensor | float) -> Tensor:
        return _PassToFirst.apply(x, gate)


class Mean(nn.Module):
    """``x.mean(dim, keepdim)`` as a module, so that the composite gives it the ``Norm`` rule."""

    def __init__(self, dim: int | tuple[int, ...] | list[int], keepdim: bool = False) -> None:
        super().__init__()
        self.dim = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
        self.keepdim = keepdim

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=self.dim, keepdim=self.keepdim)


# Leaf modules whose rule the composites supply, or which zennit's own types cover.
def _ruled_types() -> tuple[type, ...]:
    from zennit.layer import Sum
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution

    return (Convolution, nn.Linear, BatchNorm, AvgPool, Activation, nn.Mish, Sum, Mean, Gate, Add)


# Leaf modules whose gradient routes relevance correctly (or that are the identity in eval mode).
_ROUTING_MODULES: tuple[type, ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.ZeroPad2d,
    nn.ChannelShuffle,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
)
# zennit counts MultiheadAttention as an activation (Pass rule), which is not LRP for attention.
_REFUSED_MODULES: tuple[type, ...] = (nn.MultiheadAttention,)

_ROUTING_FUNCTIONS: set[Any] = {
    torch.flatten,
    torch.cat,
    torch.concat,
    torch.stack,
    torch.reshape,
    torch.permute,
    torch.transpose,
    torch.squeeze,
    torch.unsqueeze,
    torch.chunk,
    torch.split,
    torch.narrow,
    torch.channel_shuffle,
    operator.getitem,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.pixel_shuffle,
    F.pixel_unshuffle,
}
_ROUTING_METHODS = {
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "chunk",
    "split",
    "view_as",
    "reshape_as",
    "narrow",
    "clone",
    "detach",
    "float",
    "to",
    "type_as",
    "__getitem__",
    "unflatten",
}
# Calls that return sizes, not tensors.
_SHAPE_METHODS = {"size", "dim", "numel", "ndimension"}

_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_SUB = {operator.sub, operator.isub, torch.sub}
_DIV = {operator.truediv, operator.itruediv, torch.div, torch.true_divide}


def _arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


_ACTIVATION_FUNCTIONS: dict[Any, Callable[[fx.Node], nn.Module]] = {
    F.relu: lambda n: nn.ReLU(),
    torch.relu: lambda n: nn.ReLU(),
    torch.relu_: lambda n: nn.ReLU(),
    F.relu6: lambda n: nn.ReLU6(),
    F.silu: lambda n: nn.SiLU(),
    F.hardswish: lambda n: nn.Hardswish(),
    F.mish: lambda n: nn.Mish(),
    F.gelu: lambda n: nn.GELU(approximate=_arg(n, 1, "approximate", "none")),
    torch.sigmoid: lambda n: nn.Sigmoid(),
    F.sigmoid: lambda n: nn.Sigmoid(),
    torch.tanh: lambda n: nn.Tanh(),
    F.tanh: lambda n: nn.Tanh(),
    F.hardsigmoid: lambda n: nn.Hardsigmoid(),
    F.leaky_relu: lambda n: nn.LeakyReLU(_arg(n, 1, "negative_slope", 0.01)),
    F.elu: lambda n: nn.ELU(_arg(n, 1, "alpha", 1.0)),
    F.hardtanh: lambda n: nn.Hardtanh(_arg(n, 1, "min_val", -1.0), _arg(n, 2, "max_val", 1.0)),
    F.softplus: lambda n: nn.Softplus(_arg(n, 1, "beta", 1.0), _arg(n, 2, "threshold", 20.0)),
}
_ACTIVATION_METHODS: dict[str, Callable[[fx.Node], nn.Module]] = {
    "relu": lambda n: nn.ReLU(),
    "relu_": lambda n: nn.ReLU(),
    "sigmoid": lambda n: nn.Sigmoid(),
    "sigmoid_": lambda n: nn.Sigmoid(),
    "tanh": lambda n: nn.Tanh(),
    "tanh_": lambda n: nn.Tanh(),
}
# Producers whose output, multiplied into a tensor, is a gate (squeeze-excite and the like).
_GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid)
_GATE_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.hardsigmoid}

_TENSOR, _TENSORS, _OTHER = "tensor", "tensors", "other"


class _Rewriter:
    """One rewrite of one traced graph (see the module docstring)."""

    def __init__(self, gm: fx.GraphModule, merge_batchnorm: bool) -> None:
        self.gm = gm
        self.graph = gm.graph
        self.merge_batchnorm = merge_batchnorm
        self.kind: dict[fx.Node, str] = {}
        self.summary: Counter[str] = Counter()
        self._count = 0

    # -- helpers --------------------------------------------------------------------------
    def where(self, node: fx.Node) -> str:
        """The module whose code made ``node`` (for messages)."""
        if node.op == "call_module":
            return f"module '{node.target}' ({type(self.gm.get_submodule(str(node.target))).__name__})"
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            path, cls = list(stack.values())[-1]
            name = getattr(cls, "__name__", str(cls))
            return f"module '{path}' ({name})"
        return "the model's top-level forward"

    def refuse(self, node: fx.Node, what: str) -> UnexplainableOp:
        return UnexplainableOp(f"{self.where(node)}: {what} has no LRP rule (node '{node.name}')")

    def add_module(self, stem: str, module: nn.Module) -> str:
        self._count += 1
        name = f"lrp_{stem}_{self._count}"
        self.gm.add_submodule(name, module)
        return name

    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, fx.Node) and self.kind.get(value) == _TENSOR

    def replace(self, node: fx.Node, stem: str, module: nn.Module, args: tuple[Any, ...]) -> None:
        name = self.add_module(stem, module)
        with self.graph.inserting_before(node):
            new = self.graph.call_module(name, args)
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        self.graph.erase_node(node)
        self.kind[new] = _TENSOR

    def bypass(self, node: fx.Node, source: fx.Node) -> None:
        node.replace_all_uses_with(source)
        self.graph.erase_node(node)

    # -- passes ---------------------------------------------------------------------------
    def run(self) -> Counter[str]:
        self.uniquify_modules()
        for node in list(self.graph.nodes):
            self.visit(node)
        if self.merge_batchnorm:
            self.merge_batch_norms()
        self.graph.lint()
        self.gm.delete_all_unused_submodules()
        self.gm.recompile()
        return self.summary

    def uniquify_modules(self) -> None:
        seen: set[str] = set()
        for node in self.graph.nodes:
            if node.op != "call_module":
                continue
            target = str(node.target)
            if target in seen:
                node.target = self.add_module("copy", copy.deepcopy(self.gm.get_submodule(target)))
                self.summary["modules called twice, copied"] += 1
            seen.add(str(node.target))

    def visit(self, node: fx.Node) -> None:
        if node.op in ("placeholder", "get_attr"):
            self.kind[node] = _TENSOR
        elif node.op == "output":
            return
        elif node.op == "call_module":
            self.visit_module(node)
        else:
            self.visit_call(node)

    def visit_module(self, node: fx.Node) -> None:
        module = self.gm.get_submodule(str(node.target))
        self.kind[node] = _TENSOR
        if isinstance(module, _REFUSED_MODULES) or not isinstance(module, _ruled_types() + _ROUTING_MODULES):
            raise self.refuse(node, f"{type(module).__name__}")

    def visit_call(self, node: fx.Node) -> None:
        inputs = [a for a in node.all_input_nodes if self.kind.get(a) in (_TENSOR, _TENSORS)]
        target = node.target
        method = target if node.op == "call_method" else None
        if not inputs:  # arithmetic on sizes and other Python values
            self.kind[node] = _OTHER
            return
        if method in _SHAPE_METHODS or (target is getattr and node.args[1] in ("shape", "dtype", "device", "ndim")):
            self.kind[node] = _OTHER
            return
        self.kind[node] = _TENSOR
        if target in (torch.chunk, torch.split) or method in ("chunk", "split"):
            self.kind[node] = _TENSORS
        elif target is operator.getitem and self.kind.get(node.args[0]) == _OTHER:  # type: ignore[arg-type]
            self.kind[node] = _OTHER
        elif target in _ROUTING_FUNCTIONS or method in _ROUTING_METHODS:
            return
        elif target is F.pad:
            if _arg(node, 2, "mode", "constant") != "constant" or _arg(node, 3, "value", None) not in (None, 0, 0.0):
                raise self.refuse(node, "padding other than with zeros")
            return  # zero padding: the gradient crops relevance back to the input
        elif target in _ADD or method in ("add", "add_"):
            self.rewrite_add(node)
        elif target in _SUB or method in ("sub", "sub_"):
            self.rewrite_sub(node)
        elif target in _MUL or method in ("mul", "mul_"):
            self.rewrite_mul(node)
        elif target in _DIV or method in ("div", "div_"):
            self.rewrite_div(node)
        elif target in _ACTIVATION_FUNCTIONS or method in _ACTIVATION_METHODS:
            factory = _ACTIVATION_FUNCTIONS[target] if method is None else _ACTIVATION_METHODS[str(method)]
            self.summary["functional activations made modules"] += 1
            self.replace(node, "act", factory(node), (node.args[0],))
        elif target is torch.mean or method == "mean":
            self.rewrite_mean(node)
        elif target in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d):
            pool = {
                F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
                F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
                F.adaptive_avg_pool3d: nn.AdaptiveAvgPool3d,
            }[target]
            self.summary["functional average pools made modules"] += 1
            self.replace(node, "pool", pool(_arg(node, 1, "output_size", None)), (node.args[0],))
        elif target is F.avg_pool2d:
            self.rewrite_avg_pool2d(node)
        elif getattr(target, "__name__", "") == "stochastic_depth" or target in (F.dropout, F.dropout2d):
            training = _arg(node, 3 if target not in (F.dropout, F.dropout2d) else 2, "training", True)
            if training is not False:
                raise self.refuse(node, f"{getattr(target, '__name__', target)} in training mode")
            self.summary["eval-mode identities removed"] += 1
            self.bypass(node, node.args[0])  # type: ignore[arg-type]
        else:
            name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
            raise self.refuse(node, f"op '{name}'")

    def rewrite_add(self, node: fx.Node) -> None:
        a, b = node.args[0], _arg(node, 1, "other", None)
        if _arg(node, 2, "alpha", 1) != 1:
            raise self.refuse(node, "addition with alpha != 1")
        tensors = [v for v in (a, b) if isinstance(v, fx.Node) and self.is_tensor(v)]
        if len(tensors) == 1:  # x + c: its gradient already passes all relevance to x, the constant takes none
            self.summary["constant shifts passed through"] += 1
            return
        self.summary["tensor additions routed through Sum"] += 1
        self.replace(node, "add", Add(), (a, b))

    def rewrite_sub(self, node: fx.Node) -> None:
        a, b = node.args[0], _arg(node, 1, "other", None)
        if self.is_tensor(a) and not self.is_tensor(b):  # x - c: as x + c
            self.summary["constant shifts passed through"] += 1
            return
        raise self.refuse(node, "subtraction of tensors (or from a constant)")

    def _is_gate(self, value: Any) -> bool:
        if not isinstance(value, fx.Node):
            return False
        if value.op == "call_module":
            return isinstance(self.gm.get_submodule(str(value.target)), _GATE_MODULES)
        return value.target in _GATE_FUNCTIONS or (value.op == "call_method" and value.target == "sigmoid")

    def rewrite_mul(self, node: fx.Node) -> None:
        a, b = node.args[0], _arg(node, 1, "other", None)
        if not (self.is_tensor(a) and self.is_tensor(b)):
            x, gate = (a, b) if self.is_tensor(a) else (b, a)
            self.summary["constant scalings passed through"] += 1
        elif self._is_gate(b) or (isinstance(b, fx.Node) and b.op == "get_attr"):
            x, gate = a, b
            self.summary["gates (x * sigmoid, x * parameter)"] += 1
        elif self._is_gate(a) or (isinstance(a, fx.Node) and a.op == "get_attr"):
            x, gate = b, a
            self.summary["gates (x * sigmoid, x * parameter)"] += 1
        else:
            raise self.refuse(node, "product of two computed tensors (not a sigmoid gate)")
        self.replace(node, "gate", Gate(), (x, gate))

    def rewrite_div(self, node: fx.Node) -> None:
        a, b = node.args[0], _arg(node, 1, "other", None)
        if self.is_tensor(b) or _arg(node, 2, "rounding_mode", None) is not None:
            raise self.refuse(node, "division by a tensor")
        self.summary["constant scalings passed through"] += 1
        self.replace(node, "gate", Gate(), (a, 1.0 / b))

    def rewrite_mean(self, node: fx.Node) -> None:
        dim = _arg(node, 1, "dim", None)
        if dim is None or _arg(node, 3, "dtype", None) is not None:
            raise self.refuse(node, "mean over all dimensions (the batch included)")
        self.summary["means made Mean modules (Norm rule)"] += 1
        self.replace(node, "mean", Mean(dim, bool(_arg(node, 2, "keepdim", False))), (node.args[0],))

    def rewrite_avg_pool2d(self, node: fx.Node) -> None:
        pool = nn.AvgPool2d(
            _arg(node, 1, "kernel_size", None),
            _arg(node, 2, "stride", None),
            _arg(node, 3, "padding", 0),
            _arg(node, 4, "ceil_mode", False),
            _arg(node, 5, "count_include_pad", True),
            _arg(node, 6, "divisor_override", None),
        )
        self.summary["functional average pools made modules"] += 1
        self.replace(node, "pool", pool, (node.args[0],))

    def merge_batch_norms(self) -> None:
        for node in list(self.graph.nodes):
            if node.op != "call_module":
                continue
            bn = self.gm.get_submodule(str(node.target))
            if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
                continue
            source = node.args[0]
            if not (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1):
                continue
            layer = self.gm.get_submodule(str(source.target))
            # exact types: a subclass may compute something else with its weight
            if type(layer) not in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear) or not isinstance(
                layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
            ):
                continue
            _merge_into(layer, bn)
            self.summary["BatchNorms merged into the layer before"] += 1
            self.bypass(node, source)


def _merge_into(layer: nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold an eval-mode batch norm into the layer feeding it, with zennit's formula
    (``MergeBatchNorm.merge_batch_norm``), so that the numbers equal its canonizers'."""
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        scale = (bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)) / (
            bn.running_var + bn.eps
        ) ** 0.5
        shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        bias = (
            layer.bias
            if layer.bias is not None
            else torch.zeros(1, dtype=layer.weight.dtype, device=layer.weight.device)
        )
        weight = layer.weight * scale[(slice(None),) + (None,) * (layer.weight.ndim - 1)]
        new_bias = (bias - bn.running_mean) * scale + shift
        layer.weight = nn.Parameter(weight, requires_grad=False)
        layer.bias = nn.Parameter(new_bias, requires_grad=False)


class _NamingTracer(fx.Tracer):
    """A tracer that remembers the innermost module whose tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_in: str | None = None

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                try:
                    self.failed_in = f"module '{self.path_of_module(m)}' ({type(m).__name__})"
                except NameError:
                    self.failed_in = f"a {type(m).__name__} module"
            raise


def trace(module: nn.Module) -> fx.GraphModule:
    """``torch.fx`` trace of ``module``; :class:`UnexplainableOp` naming the failing module."""
    tracer = _NamingTracer()
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds on untraceable code
        where = tracer.failed_in or f"module '' ({type(module).__name__})"
        raise UnexplainableOp(
            f"{where} cannot be traced by torch.fx ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); LRP cannot see the ops "
            "inside it, so additions or products there would get no rule"
        ) from None
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def rewrite(module: nn.Module, merge_batchnorm: bool = True) -> tuple[fx.GraphModule, Counter[str]]:
    """Trace ``module`` and rewrite it for zennit (see the module docstring).

    The module's parameters are shared with the returned graph module except where a
    batch norm is merged (the merged layer gets new parameters); pass a copy if the
    original must stay unchanged when ``merge_batchnorm`` is true.

    Returns
    -------
    (graph module, summary)
        The rewritten model (eval mode, same function as ``module``) and a count of
        each kind of rewrite.

    Raises
    ------
    UnexplainableOp
        Naming the module, when the model cannot be traced or has an op without a rule.
    """
    gm = trace(module)
    gm.train(module.training)  # only the flag of the new root: the submodules are the module's own
    summary = _Rewriter(gm, merge_batchnorm).run()
    return gm, summary
