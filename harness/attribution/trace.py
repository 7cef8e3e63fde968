"""Tracing a classifier into the graph the LRP engine propagates relevance over.

:func:`trace` runs ``torch.fx.symbolic_trace`` (which sees functional calls such as
``torch.flatten``, ``F.relu`` or ``out + x``) and classifies every node that carries
data from the input by its LRP treatment (:class:`Kind`).  Nodes that only compute
shapes (``x.size(0)``) carry nothing.  Only *live* nodes, those relevance reaches from
the output, must have a known treatment: the gate branch of a squeeze-excite block
receives no relevance, so whatever it computes needs no rule.

Choices (each matches the zennit reference of the test suite):

* ``a * gate`` where ``gate`` comes out of a sigmoid or hard sigmoid (through reshapes):
  the gated operand keeps all the relevance, the gate gets none ("signal takes all",
  the usual LRP treatment of gates, e.g. in LSTMs).  Any other product of two tensors is
  unsupported.
* ``a + b`` of two tensors: zennit's ``Sum`` with the ``Norm`` rule, i.e. relevance split
  in proportion to the summands, epsilon-stabilised.  Adding a constant tensor (a
  parameter) is unsupported.
* ``x + c``, ``x - c``, ``x * c``, ``x / c`` with a number ``c``: relevance passes to ``x``
  unchanged (for a fixed factor, the epsilon rule of that diagonal layer gives exactly
  this; a constant offset is treated like a bias that takes no relevance).
* ``torch.cat``: relevance split back; reshapes, zero padding, dropout, identity: the
  gradient (reshape back, crop, pass).
* operations that only move or select elements (``permute``, ``transpose``, ``flip``,
  ``narrow``, indexing with constant slices, a part of ``chunk``/``split``/``unbind``,
  channel and pixel shuffles): the gradient, which moves each element's relevance back to
  where it came from (a selected part's source gets zeros elsewhere).  zennit has no rule
  for them either, so its gradient does the same.
* activations (module or functional): zennit's ``Pass`` rule, relevance unchanged.
* batch norm: merged into the Conv2d/Linear whose only consumer it is (zennit's
  canonizers), else ``Pass`` as zennit's composites give it.
* max pooling (also adaptive): the gradient (relevance to each window's arg-max); average pooling,
  adaptive average pooling and a mean over the spatial dimensions: zennit's ``Norm``.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["Kind", "Traced", "TracedNode", "UnsupportedModel", "trace"]


class UnsupportedModel(Exception):
    """The model contains a module, function or structure the graph engine does not cover."""


class Kind(enum.Enum):
    INPUT = "input"
    AFFINE = "affine"  # Conv2d / Linear module
    BATCH_NORM = "batch_norm"
    PASS = "pass"  # relevance unchanged: activations, dropout, identity
    GATE = "gate"  # a * sigmoid(...): relevance to the gated operand only
    ADD = "add"
    CAT = "cat"
    RESHAPE = "reshape"
    PAD = "pad"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    MEAN = "mean"
    MOVE = "move"  # permute, transpose, slicing, chunk/split: relevance moved back (the gradient)


_ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.SiLU, nn.GELU, nn.Hardswish, nn.ELU,
    nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Softplus, nn.Mish,
)  # fmt: skip
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_NONNEG_MODULES = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid)
_GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid)

_ACTIVATION_FUNCTIONS: set[Any] = {
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.leaky_relu, F.hardtanh, F.silu, F.gelu, F.hardswish,
    F.elu, F.softplus, torch.sigmoid, F.sigmoid, F.hardsigmoid, torch.tanh, F.tanh, F.mish,
}  # fmt: skip
_NONNEG_FUNCTIONS: set[Any] = {
    F.relu,
    torch.relu,
    F.relu_,
    torch.relu_,
    F.relu6,
    torch.sigmoid,
    F.sigmoid,
    F.hardsigmoid,
}
_GATE_FUNCTIONS: set[Any] = {torch.sigmoid, F.sigmoid, F.hardsigmoid}
_ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
_NONNEG_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_"}
_GATE_METHODS = {"sigmoid", "sigmoid_"}
_IDENTITY_FUNCTIONS: set[Any] = {F.dropout, F.dropout2d}
# copies and same-valued conversions (a dtype change passes relevance as it is)
_IDENTITY_METHODS = {"contiguous", "clone", "float", "to", "type_as"}

_RESHAPE_FUNCTIONS: set[Any] = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as", "unflatten"}
_SHAPE_ONLY_METHODS = _RESHAPE_METHODS | {"expand", "expand_as"}
_CAT_FUNCTIONS: set[Any] = {torch.cat, torch.concat, torch.concatenate}
_ADD_FUNCTIONS: set[Any] = {operator.add, operator.iadd, torch.add}
_MUL_FUNCTIONS: set[Any] = {operator.mul, operator.imul, torch.mul}
_SUB_FUNCTIONS: set[Any] = {operator.sub, operator.isub, torch.sub}
_DIV_FUNCTIONS: set[Any] = {operator.truediv, operator.itruediv, torch.div, torch.true_divide}
_MOVE_METHODS = {"permute", "transpose", "flip", "narrow", "select", "movedim", "swapaxes", "swapdims", "roll", "t"}
_MOVE_FUNCTIONS: set[Any] = {
    torch.permute, torch.transpose, torch.flip, torch.narrow, torch.select, torch.movedim, torch.swapaxes,
    torch.swapdims, torch.roll, torch.t, F.pixel_shuffle, F.pixel_unshuffle, torch.pixel_shuffle,
    torch.pixel_unshuffle, torch.channel_shuffle, F.channel_shuffle,
}  # fmt: skip
_MOVE_MODULES = (nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle)
# produce a tuple of parts, one of which a getitem then picks
_SPLIT_METHODS = {"chunk", "split", "unbind", "tensor_split"}
_SPLIT_FUNCTIONS: set[Any] = {torch.chunk, torch.split, torch.unbind, torch.tensor_split}
_META_METHODS = {"size", "dim", "numel"}
_META_ATTRIBUTES = {"shape", "dtype", "device", "ndim"}


def _stochastic_depth() -> Any:
    try:
        from torchvision.ops import stochastic_depth
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    return stochastic_depth


@dataclass
class TracedNode:
    """A node that carries data from the input, with its LRP treatment."""

    node: fx.Node
    kind: Kind
    label: str
    module: nn.Module | None = None
    #: the tensor inputs relevance flows to (in argument order; a gate's gate is absent)
    sources: list[fx.Node] = field(default_factory=list)
    #: whether the node's output is known to be non-negative
    nonneg: bool = False
    #: kind-specific settings (pooling arguments, cat dim, padding, mean dims, ...)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Traced:
    """The traced graph: every fx node in order, and the data-carrying ones classified."""

    graph_module: fx.GraphModule
    nodes: dict[fx.Node, TracedNode]
    #: nodes relevance reaches, in topological order
    live: list[fx.Node]
    output: fx.Node
    #: batch norm node -> the affine node it is merged into
    merged: dict[fx.Node, fx.Node]


def _label(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' ({type(gm.get_submodule(str(node.target))).__name__})"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)} at node '{node.name}'"
    if node.op == "call_method":
        return f"method .{node.target}() at node '{node.name}'"
    return f"{node.op} node '{node.name}'"


def _flat_args(node: fx.Node) -> list[Any]:
    out: list[Any] = []
    fx.node.map_aggregate((node.args, node.kwargs), out.append)
    return out


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _gate_producer(node: Any, kinds: dict[fx.Node, TracedNode]) -> bool:
    """Whether ``node`` is a sigmoid / hard sigmoid output, looking through reshapes."""
    while isinstance(node, fx.Node):
        gm_kind = kinds.get(node)
        if gm_kind is None:
            return False
        if gm_kind.info.get("gate"):
            return True
        if node.op == "call_method" and node.target in _SHAPE_ONLY_METHODS or gm_kind.kind == Kind.RESHAPE:
            node = node.args[0]
            continue
        return False
    return False


def _classify(gm: fx.GraphModule, node: fx.Node, carrying: set[fx.Node], done: dict[fx.Node, TracedNode]) -> TracedNode:
    """Classify a data-carrying node; raise UnsupportedModel for an unknown one."""
    label = _label(gm, node)
    tensor_args = [a for a in _flat_args(node) if isinstance(a, fx.Node) and a in carrying]
    first = node.args[0] if node.args else None

    def known(kind: Kind, **info: Any) -> TracedNode:
        src = [first] if isinstance(first, fx.Node) and first in carrying else tensor_args[:1]
        return TracedNode(node, kind, label, sources=src, info=info)

    def nonneg_of(arg: Any) -> bool:
        return isinstance(arg, fx.Node) and arg in done and done[arg].nonneg

    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if isinstance(module, (nn.Conv2d, nn.Linear)) and type(module) in (nn.Conv2d, nn.Linear):
            if isinstance(module, nn.Conv2d):
                from harness.attribution.products import conv_padding

                if module.padding_mode != "zeros":
                    raise UnsupportedModel(f"{label} has padding_mode='{module.padding_mode}'")
                if conv_padding(module) is None:
                    raise UnsupportedModel(f"{label} has padding='same' with an even kernel (asymmetric)")
            out = known(Kind.AFFINE)
        elif type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
            if module.running_mean is None or module.running_var is None:
                raise UnsupportedModel(f"{label} has no running statistics")
            out = known(Kind.BATCH_NORM)
        elif type(module) in _ACTIVATION_MODULES:
            nonneg = isinstance(module, _NONNEG_MODULES) or (isinstance(module, nn.Hardtanh) and module.min_val >= 0.0)
            out = known(Kind.PASS, gate=isinstance(module, _GATE_MODULES))
            out.nonneg = nonneg
        elif type(module) in _IDENTITY_MODULES:
            out = known(Kind.PASS)
            out.nonneg = nonneg_of(first)
        elif type(module) is nn.Flatten:
            out = known(Kind.RESHAPE)
        elif type(module) in _MOVE_MODULES:
            out = known(Kind.MOVE, move=module)
        elif isinstance(module, nn.ConstantPad2d) and float(getattr(module, "value", 1.0)) == 0.0:
            out = known(Kind.PAD, pad=tuple(getattr(module, "padding", ())))
        elif type(module) is nn.MaxPool2d and not module.return_indices:
            out = known(
                Kind.MAX_POOL,
                args=(module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode),
            )
        elif type(module) is nn.AdaptiveMaxPool2d and not module.return_indices:
            out = known(Kind.MAX_POOL, adaptive=module.output_size)
        elif type(module) in (nn.AvgPool2d, nn.AdaptiveAvgPool2d):
            out = known(Kind.AVG_POOL)
        else:
            raise UnsupportedModel(f"{label} has no LRP rule")
        out.module = module
        if out.kind in (Kind.MAX_POOL, Kind.AVG_POOL, Kind.RESHAPE, Kind.PAD, Kind.MOVE):
            out.nonneg = nonneg_of(first)
        return out

    target = node.target
    if node.op == "call_function":
        if target in _ACTIVATION_FUNCTIONS:
            nonneg = target in _NONNEG_FUNCTIONS or (
                target is F.hardtanh and float(_arg(node, 1, "min_val", -1.0)) >= 0.0
            )
            out = known(Kind.PASS, gate=target in _GATE_FUNCTIONS)
            out.nonneg = nonneg
            return out
        if target in _IDENTITY_FUNCTIONS or (target is _stochastic_depth() and target is not None):
            out = known(Kind.PASS)
            out.nonneg = nonneg_of(first)
            return out
        if target in _RESHAPE_FUNCTIONS:
            out = known(Kind.RESHAPE)
            out.nonneg = nonneg_of(first)
            return out
        if target in _CAT_FUNCTIONS:
            items = list(first) if isinstance(first, (list, tuple)) else []
            dim = _arg(node, 1, "dim", 0)
            if not isinstance(dim, int):
                raise UnsupportedModel(f"{label}: the concatenation dimension is not a constant")
            srcs = [a for a in items if isinstance(a, fx.Node) and a in carrying]
            out = TracedNode(node, Kind.CAT, label, sources=srcs, info={"dim": dim, "items": items})
            out.nonneg = len(srcs) == len(items) and all(nonneg_of(a) for a in items)
            return out
        if target is F.pad:
            mode = _arg(node, 2, "mode", "constant")
            value = _arg(node, 3, "value", None)
            pad = _arg(node, 1, "pad")
            if mode != "constant" or (value not in (None, 0, 0.0)) or not isinstance(pad, (list, tuple)):
                raise UnsupportedModel(f"{label}: only constant zero padding with fixed widths is supported")
            out = known(Kind.PAD, pad=tuple(pad))
            out.nonneg = nonneg_of(first)
            return out
        if target is F.max_pool2d and not _arg(node, 6, "return_indices", False):
            out = known(Kind.MAX_POOL, call=True)
            out.nonneg = nonneg_of(first)
            return out
        if target is F.adaptive_max_pool2d and not _arg(node, 2, "return_indices", False):
            size = _arg(node, 1, "output_size")
            if not _constant(size):
                raise UnsupportedModel(f"{label}: the output size is not a constant")
            out = known(Kind.MAX_POOL, adaptive=size)
            out.nonneg = nonneg_of(first)
            return out
        if target in (F.avg_pool2d, F.adaptive_avg_pool2d):
            out = known(Kind.AVG_POOL)
            out.nonneg = nonneg_of(first)
            return out
    if node.op == "call_method":
        if target in _ACTIVATION_METHODS:
            out = known(Kind.PASS, gate=target in _GATE_METHODS)
            out.nonneg = target in _NONNEG_METHODS
            return out
        if target in _IDENTITY_METHODS:
            out = known(Kind.PASS)
            out.nonneg = nonneg_of(first)
            return out
        if target in _RESHAPE_METHODS:
            out = known(Kind.RESHAPE)
            out.nonneg = nonneg_of(first)
            return out
    moved = _movement(node, carrying)
    if moved is not None:
        source, move = moved
        out = TracedNode(node, Kind.MOVE, label, sources=[source], info={"move": move})
        out.nonneg = nonneg_of(source)
        return out
    if node.op in ("call_function", "call_method"):
        op = _arithmetic(node)
        if op is not None:
            return _classify_arithmetic(node, op, label, carrying, done)
    if node.op == "call_function" and target is torch.mean or node.op == "call_method" and target == "mean":
        dims = _arg(node, 1, "dim")
        keepdim = bool(_arg(node, 2, "keepdim", False))
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
        if sorted(d % 4 if isinstance(d, int) else -1 for d in dims) != [2, 3]:
            raise UnsupportedModel(f"{label}: only a mean over the spatial dimensions (2, 3) is supported")
        out = known(Kind.MEAN, dims=(2, 3), keepdim=keepdim)
        out.nonneg = nonneg_of(first)
        return out
    raise UnsupportedModel(f"{label} has no LRP rule")


def _constant(value: Any) -> bool:
    """Whether ``value`` holds no graph node (so that the operation can be re-run on another tensor)."""
    found: list[Any] = []
    fx.node.map_aggregate(value, lambda v: found.append(v) if isinstance(v, fx.Node) else None)
    return not found


def _replay(node: fx.Node) -> Any:
    """``node``'s operation as a function of its first argument, the other arguments fixed."""
    args, kwargs, target = node.args[1:], dict(node.kwargs), node.target
    if node.op == "call_method":
        return lambda t: getattr(t, str(target))(*args, **kwargs)
    return lambda t: target(t, *args, **kwargs)  # type: ignore[operator]


def _movement(node: fx.Node, carrying: set[fx.Node]) -> tuple[fx.Node, Any] | None:
    """For an operation that only moves or selects elements of one carrying tensor, that
    tensor and the operation as a function of it; else None."""
    if not node.args or not isinstance(node.args[0], fx.Node) or node.args[0] not in carrying:
        return None
    source, rest = node.args[0], (node.args[1:], node.kwargs)
    if node.op == "call_function" and node.target is operator.getitem:
        index = node.args[1]
        if not _constant(index):
            return None
        producer = source
        splits = (producer.op == "call_method" and producer.target in _SPLIT_METHODS) or (
            producer.op == "call_function" and producer.target in _SPLIT_FUNCTIONS
        )
        if splits:
            # a part of chunk/split/unbind: the part, as a function of what was split
            origin = producer.args[0] if producer.args else None
            if not isinstance(origin, fx.Node) or not _constant((producer.args[1:], producer.kwargs)):
                return None
            split = _replay(producer)
            return origin, lambda t: split(t)[index]
        return source, lambda t: t[index]
    moves = (node.op == "call_method" and node.target in _MOVE_METHODS) or (
        node.op == "call_function" and node.target in _MOVE_FUNCTIONS
    )
    if moves and _constant(rest):
        return source, _replay(node)
    return None


def _arithmetic(node: fx.Node) -> str | None:
    target = node.target
    if node.op == "call_function":
        for name, group in (
            ("add", _ADD_FUNCTIONS),
            ("mul", _MUL_FUNCTIONS),
            ("sub", _SUB_FUNCTIONS),
            ("div", _DIV_FUNCTIONS),
        ):
            if target in group:
                return name
        return None
    name = str(target).rstrip("_")
    return name if name in ("add", "mul", "sub", "div") else None


def _classify_arithmetic(
    node: fx.Node, op: str, label: str, carrying: set[fx.Node], done: dict[fx.Node, TracedNode]
) -> TracedNode:
    """``a + b`` (Sum/Norm), ``x * gate`` (gate), and ``x + c``, ``x - c``, ``x * c``, ``x / c``
    with a number ``c``, which pass relevance to ``x`` unchanged as the zennit rewrite does
    (for a fixed factor the epsilon rule of a diagonal layer gives exactly that)."""
    operands = list(node.args[:2])
    if (
        len(operands) != 2
        or any(k not in ("alpha", "rounding_mode") for k in node.kwargs)
        or (node.kwargs.get("alpha", 1) != 1 or node.kwargs.get("rounding_mode") is not None)
    ):
        raise UnsupportedModel(f"{label}: unsupported arguments")
    tensors = [isinstance(a, fx.Node) and a in carrying for a in operands]
    numbers = [isinstance(a, (int, float)) and not isinstance(a, bool) for a in operands]
    nonneg = [isinstance(a, fx.Node) and a in done and done[a].nonneg for a in operands]
    if tensors.count(True) == 1 and numbers.count(True) == 1:
        x = operands[tensors.index(True)]
        c = operands[numbers.index(True)]
        if op in ("div", "sub") and not tensors[0]:
            raise UnsupportedModel(f"{label}: a number {'divided' if op == 'div' else 'minus'} by a tensor")
        assert isinstance(x, fx.Node)
        out = TracedNode(node, Kind.PASS, label, sources=[x])
        out.nonneg = nonneg[tensors.index(True)] and op in ("mul", "div") and isinstance(c, (int, float)) and c >= 0
        return out
    if tensors.count(True) != 2:
        raise UnsupportedModel(f"{label}: {op} of a tensor and a constant tensor has no LRP rule")
    a, b = operands
    assert isinstance(a, fx.Node) and isinstance(b, fx.Node)
    if op == "add":
        out = TracedNode(node, Kind.ADD, label, sources=[a, b])
        out.nonneg = all(nonneg)
        return out
    if op == "mul":
        gates = [_gate_producer(a, done), _gate_producer(b, done)]
        if gates.count(True) == 1:
            kept = b if gates[0] else a
            out = TracedNode(node, Kind.GATE, label, sources=[kept])
            out.nonneg = nonneg[gates.index(False)]  # a sigmoid gate is non-negative
            return out
        raise UnsupportedModel(f"{label}: product of two tensors where neither or both are a sigmoid gate")
    raise UnsupportedModel(f"{label}: {op} of two tensors has no LRP rule")


def _is_meta(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in _META_METHODS:
        return True
    return bool(node.op == "call_function" and node.target is getattr and node.args[1] in _META_ATTRIBUTES)


def trace(model: nn.Module, merge_batchnorm: bool = True) -> Traced:
    """Trace ``model`` (in eval mode) and classify its data-carrying nodes.

    Raises
    ------
    UnsupportedModel
        If the model cannot be traced, or a node that relevance reaches has no LRP rule.
    """
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()  # branches on self.training (dropout, stochastic depth) are traced as in eval
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "not supported"
        raise UnsupportedModel(
            f"model {type(model).__name__} cannot be traced with torch.fx: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModel(f"model {type(model).__name__} takes {len(placeholders)} inputs; one is supported")
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    if not isinstance(result, fx.Node):
        raise UnsupportedModel(f"model {type(model).__name__} returns {type(result).__name__}, not one tensor")

    carrying: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            carrying.add(node)
        elif node.op in ("call_module", "call_function", "call_method") and not _is_meta(node):
            if any(isinstance(a, fx.Node) and a in carrying for a in _flat_args(node)):
                carrying.add(node)
    if result not in carrying:
        raise UnsupportedModel("the model's output does not depend on its input")

    # classify lazily: a node that relevance never reaches may be anything
    nodes: dict[fx.Node, TracedNode] = {}
    errors: dict[fx.Node, str] = {}
    for node in graph.nodes:
        if node not in carrying:
            continue
        if node.op == "placeholder":
            nodes[node] = TracedNode(node, Kind.INPUT, "input")
            continue
        try:
            nodes[node] = _classify(gm, node, carrying, nodes)
        except UnsupportedModel as exc:
            errors[node] = str(exc)
            # keep walking with a stand-in, so that live-ness decides whether it matters
            nodes[node] = TracedNode(
                node,
                Kind.PASS,
                _label(gm, node),
                sources=[a for a in _flat_args(node) if isinstance(a, fx.Node) and a in carrying],
            )

    live_set: set[fx.Node] = set()
    stack = [result]
    while stack:
        node = stack.pop()
        if node in live_set:
            continue
        live_set.add(node)
        stack.extend(nodes[node].sources)
    live = [n for n in graph.nodes if n in live_set]
    for node in live:
        if node in errors:
            raise UnsupportedModel(errors[node])

    # one hook per module in zennit: a parameterised layer called twice has no single rule
    calls: dict[str, int] = {}
    for node in live:
        if nodes[node].kind in (Kind.AFFINE, Kind.BATCH_NORM):
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
            if calls[str(node.target)] > 1:
                raise UnsupportedModel(f"{nodes[node].label} is called more than once")

    merged: dict[fx.Node, fx.Node] = {}
    if merge_batchnorm:
        for node in live:
            info = nodes[node]
            if info.kind != Kind.BATCH_NORM:
                continue
            src = info.sources[0] if info.sources else None
            if src is not None and nodes[src].kind == Kind.AFFINE and len(src.users) == 1:
                merged[node] = src
    return Traced(gm, nodes, live, result, merged)
