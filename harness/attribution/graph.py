"""Fast LRP over a traced graph, numerically equal to zennit's composites with canonizers.

:class:`GraphLRP` traces the classifier with ``torch.fx`` (:mod:`harness.attribution.trace`),
runs the model's own operations node by node under ``torch.no_grad()``, keeping only
the activations the relevance pass needs, and then propagates relevance from
``logits * one_hot(targets)`` back over the graph:

* Conv2d (grouped, strided, dilated, padded) and Linear layers use the composite's rules
  (:mod:`harness.attribution.rules`), with a batch norm merged in where the layer's output
  feeds only that batch norm.  The forward pass runs the original layer *and* its batch
  norm, so the logits are the model's own; merged weights serve the relevance pass only.
* residual additions split relevance in proportion to the summands (zennit's ``Sum`` with
  the ``Norm`` rule), concatenations split it back;
* in ``a * sigmoid(...)`` squeeze-excite gates the gated operand keeps all relevance and
  the gate branch gets none (see :mod:`harness.attribution.trace` for every choice);
* operations that only move or select elements (permute, slicing, chunk, channel
  shuffle) move relevance back with their gradient;
* activations and unmerged batch norms pass relevance unchanged (zennit's ``Pass``);
  average pooling and spatial means use ``Norm``; max pooling routes to the arg-max.

The first Conv2d/Linear in execution order gets the composite's first-layer rule (Flat,
or ZBox for ``epsilon_gamma_box`` on a Conv2d), as zennit's ``SpecialFirstLayerMapComposite``
does for the first such module it meets.

One known difference to stock zennit: zennit's ``MergeBatchNorm`` leaves the batch norm
in place as ``x / sqrt(1 + eps)``, so the activations its rules see (and its logits) are
scaled by that factor at each merged batch norm.  This engine uses the model's true
activations (the difference is about ``eps / 2`` per merged layer, ~5e-6 for the default
``eps = 1e-5``).
"""

from __future__ import annotations

import copy
import inspect
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from harness.attribution import rules
from harness.attribution.rules import AffineRule, stabilize, stabilize_
from harness.attribution.trace import Kind, Traced, TracedNode, UnsupportedModel, trace
from harness.attribution.workspace import Workspace

__all__ = ["GraphLRP", "UnsupportedModel"]

_RULE_SETS = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")
_INPLACE_FUNCTIONS: dict[Any, Any] = {
    operator.iadd: operator.add,
    operator.imul: operator.mul,
    torch.relu_: torch.relu,
    F.relu_: F.relu,
}
_MAX_POOL_SIGNATURE = inspect.signature(F.max_pool2d_with_indices)


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(e) for e in v]


class GraphLRP:
    """LRP over the traced graph of a classifier, equal to zennit's composites.

    The relevance equals what ``zennit.attribution.Gradient`` returns for the composite
    named by ``rule_set`` once the model is canonised for LRP (batch norms merged,
    additions routed through ``zennit.layer.Sum``, gates and functional activations
    passed), with output relevance ``logits * one_hot(targets)``, up to float rounding.

    Parameters
    ----------
    module : torch.nn.Module
        The classifier, traceable by ``torch.fx``; eval-mode semantics are computed.
        Parameters are read in ``__init__``; build a new engine after changing them.
    rule_set : str
        One of :attr:`RULE_SETS`.
    low, high : torch.Tensor or float, optional
        Box bounds of the (normalised) input for ``epsilon_gamma_box``.
    merge_batchnorm : bool, optional
        Merge batch norms into the Conv2d/Linear feeding only them (default), as
        zennit's canonizers do; ``False`` gives every batch norm the Pass rule.
    epsilon, gamma, stabilizer : float, optional
        zennit's rule parameters.

    Raises
    ------
    UnsupportedModel
        If :meth:`check` gives a reason.
    ValueError
        If ``rule_set`` is unknown.
    """

    RULE_SETS = _RULE_SETS

    def __init__(
        self,
        module: nn.Module,
        rule_set: str,
        *,
        low: Tensor | float = -3.0,
        high: Tensor | float = 3.0,
        merge_batchnorm: bool = True,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
    ) -> None:
        if rule_set not in self.RULE_SETS:
            raise ValueError(f"unknown rule set {rule_set!r}; expected one of {self.RULE_SETS}")
        self.rule_set = rule_set
        self.stabilizer = stabilizer
        self.traced: Traced = trace(module, merge_batchnorm)
        self._rules: dict[fx.Node, AffineRule] = {}
        # scratch buffers shared by all layers and kept between batches
        self.workspace = Workspace()
        self._assign_rules(low, high, epsilon, gamma)
        self._plan()
        self._key: tuple[torch.device, torch.dtype] | None = None
        param = next(module.parameters(), None)
        if param is not None and param.is_floating_point():
            self._prepare(param.device, param.dtype)

    # -- set-up ----------------------------------------------------------------------------
    @staticmethod
    def check(module: nn.Module, rule_set: str) -> str | None:
        """Return ``None`` if the engine supports ``module``, else a one-line reason naming the module or op."""
        if rule_set not in _RULE_SETS:
            return f"rule set {rule_set!r} is not one of {_RULE_SETS}"
        try:
            trace(module)
        except UnsupportedModel as exc:
            return str(exc)
        return None

    def _assign_rules(self, low: Tensor | float, high: Tensor | float, epsilon: float, gamma: float) -> None:
        tr = self.traced
        conv_rule = {
            "epsilon_plus_flat": rules.ZPLUS,
            "epsilon_gamma_box": rules.GAMMA,
            "epsilon_alpha2_beta1_flat": rules.ALPHA_BETA,
        }[self.rule_set]
        first_types: tuple[type, ...] = (nn.Conv2d,) if self.rule_set == "epsilon_gamma_box" else (nn.Conv2d, nn.Linear)
        first_rule = rules.ZBOX if self.rule_set == "epsilon_gamma_box" else rules.FLAT
        bn_of = {src: bn for bn, src in tr.merged.items()}
        first_done = False
        for node in tr.live:
            info = tr.nodes[node]
            if info.kind != Kind.AFFINE:
                continue
            layer = info.module
            assert isinstance(layer, (nn.Conv2d, nn.Linear))
            if not first_done and isinstance(layer, first_types):
                rule, first_done = first_rule, True
            else:
                rule = conv_rule if isinstance(layer, nn.Conv2d) else rules.EPSILON
            bn = bn_of.get(node)
            bn_module = None if bn is None else tr.nodes[bn].module
            assert bn_module is None or isinstance(bn_module, nn.modules.batchnorm._BatchNorm)
            src = info.sources[0]
            self._rules[node] = AffineRule(
                layer,
                bn_module,
                rule,
                nonneg=tr.nodes[src].nonneg,
                epsilon=epsilon,
                stabilizer=self.stabilizer,
                gamma=gamma,
                low=low,
                high=high,
                workspace=self.workspace,
            )

    def _plan(self) -> None:
        """Decide what each node keeps for the relevance pass, and how the forward calls it."""
        tr = self.traced
        gm = tr.graph_module
        self._order = list(gm.graph.nodes)
        live = set(tr.live)
        # values the relevance pass reads: node -> set of live nodes reading it
        keep: dict[fx.Node, set[fx.Node]] = {}

        def needs(value: fx.Node, reader: fx.Node) -> None:
            keep.setdefault(value, set()).add(reader)

        self._affine_out: dict[fx.Node, fx.Node] = {}
        bn_of = {src: bn for bn, src in tr.merged.items()}
        for node in tr.live:
            info = tr.nodes[node]
            if info.kind == Kind.AFFINE:
                rule = self._rules[node]
                out = bn_of.get(node, node)
                self._affine_out[node] = out
                if rule.needs_input:
                    needs(info.sources[0], node)
                if rule.needs_output:
                    needs(out, node)
            elif info.kind in (Kind.AVG_POOL, Kind.MEAN):
                needs(info.sources[0], node)
                needs(node, node)
            elif info.kind == Kind.ADD:
                # the sum is recomputed from the summands, so that the activation after it
                # may run in place
                for src in info.sources:
                    needs(src, node)
        self._keep = keep
        # a moving/selecting node needs its source's shape, which may be freed before the node
        # runs (the parts of a chunk outlive the chunked tensor): noted when the source is computed
        self._shape_for: dict[fx.Node, list[fx.Node]] = {}
        for node in tr.live:
            if tr.nodes[node].kind == Kind.MOVE:
                self._shape_for.setdefault(tr.nodes[node].sources[0], []).append(node)
        # backward position of each live node; a kept value is freed after its last reader
        position = {node: i for i, node in enumerate(reversed(tr.live))}
        self._free_after: dict[fx.Node, list[fx.Node]] = {}
        for value, readers in keep.items():
            last = max(readers, key=lambda r: position[r])
            self._free_after.setdefault(last, []).append(value)
        # forward: free every value after its last forward user unless kept
        index = {node: i for i, node in enumerate(self._order)}
        self._release: dict[fx.Node, list[fx.Node]] = {}
        for node in self._order:
            if node in keep or node.op == "output":
                continue
            users = list(node.users)
            last_user = max(users, key=lambda u: index[u]) if users else node
            self._release.setdefault(last_user, []).append(node)
        # modules with in-place activations run out of place: the engine keeps their inputs
        self._calls: dict[fx.Node, Any] = {}
        for node in self._order:
            if node.op != "call_module":
                continue
            module = gm.get_submodule(str(node.target))
            kind = tr.nodes[node].kind if node in tr.nodes else None
            if kind == Kind.BATCH_NORM:
                self._calls[node] = _batch_norm_eval(module)
            elif kind == Kind.MAX_POOL and node in live:
                self._calls[node] = None  # run by _max_pool
            elif isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
                self._calls[node] = _identity  # eval semantics whatever the module's mode
            elif hasattr(module, "inplace"):
                # in place only on a fresh tensor that nothing else reads (saves a large
                # allocation per activation); otherwise out of place, whatever the model says
                inplace = self._may_overwrite(node.args[0] if node.args else None)
                if bool(module.inplace) != inplace:
                    module = copy.copy(module)
                    module.inplace = inplace  # type: ignore[assignment]
                self._calls[node] = module
            else:
                self._calls[node] = module

        self._relu_in_place = {
            node
            for node in self._order
            if node.op == "call_function"
            and node.target in (F.relu, torch.relu, F.relu_, torch.relu_)
            and len(node.args) == 1
            and set(node.kwargs) <= {"inplace"}
            and self._may_overwrite(node.args[0])
        }

    def _may_overwrite(self, value: Any) -> bool:
        """Whether an activation may run in place on ``value``: a fresh output of a layer,
        batch norm, addition or gate that has no other reader and that no rule keeps."""
        tr = self.traced
        return (
            isinstance(value, fx.Node)
            and value in tr.nodes
            and tr.nodes[value].kind in (Kind.AFFINE, Kind.BATCH_NORM, Kind.ADD, Kind.GATE)
            and len(value.users) == 1
            and value not in self._keep
            and value is not tr.output
        )

    def _prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        key = (device, dtype)
        if key != self._key:
            with torch.no_grad():
                for rule in self._rules.values():
                    rule.convert(device, dtype)
            self._key = key

    # -- forward -----------------------------------------------------------------------------
    def _forward(
        self, x: Tensor, capture: dict[fx.Node, Any] | None = None
    ) -> tuple[dict[fx.Node, Any], dict[fx.Node, Any]]:
        """Run the graph; return the kept values and per-node saved data (shapes, pool indices).

        ``capture``: nodes whose values to copy into it as they are computed (for an explainer
        that shares this forward, :mod:`harness.attribution.shared`); copies, because the forward
        frees values and may overwrite them in place."""
        tr = self.traced
        env: dict[fx.Node, Any] = {}
        saved: dict[fx.Node, Any] = {}
        for node in self._order:
            if node.op == "output":
                break
            info = tr.nodes.get(node)
            live = info is not None and node in self._live_set
            value, pool = self._run_node(node, env, x)
            if pool is not None:
                saved[node] = pool
            env[node] = value
            for move in self._shape_for.get(node, ()):
                saved[move] = value.shape
            if capture is not None and node in capture:
                capture[node] = value.clone() if isinstance(value, Tensor) else value
            if live and info is not None:
                if info.kind in (Kind.RESHAPE, Kind.PAD, Kind.AFFINE, Kind.GATE):
                    saved[node] = env[info.sources[0]].shape
                elif info.kind == Kind.CAT:
                    saved[node] = [
                        env[a].shape[info.info["dim"]] if isinstance(a, fx.Node) else None for a in info.info["items"]
                    ]
            for dead in self._release.get(node, ()):
                env.pop(dead, None)
        return env, saved

    def _run_node(self, node: fx.Node, env: dict[fx.Node, Any], x: Tensor | None) -> tuple[Any, Any]:
        """One node of the forward over the values in ``env``: its value, and a live max pool's
        indices (else ``None``)."""
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        info = self.traced.nodes.get(node)
        if node.op == "placeholder":
            return x, None
        if node.op == "get_attr":
            return _fetch_attr(self.traced.graph_module, str(node.target)), None
        if info is not None and info.kind == Kind.MAX_POOL and node in self._live_set:
            return _max_pool(info, args, kwargs)
        if node.op == "call_module":
            return self._calls[node](*args, **kwargs), None
        if node.op == "call_function":
            target = _INPLACE_FUNCTIONS.get(node.target, node.target)
            if kwargs.get("inplace"):
                kwargs = {**kwargs, "inplace": False}
            if node in self._relu_in_place:
                target, kwargs = torch.relu_, {}
            return target(*args, **kwargs), None
        name = str(node.target)  # call_method
        if name.endswith("_") and hasattr(torch.Tensor, name[:-1]):
            name = name[:-1]
        return getattr(args[0], name)(*args[1:], **kwargs), None

    def run_nodes(self, nodes: list[fx.Node], env: dict[fx.Node, Any]) -> None:
        """Run ``nodes`` (in graph order, no placeholder among them) as the forward runs them,
        reading and adding values in ``env`` (for a partial forward, e.g. Grad-CAM's from its
        layer to the logits with autograd)."""
        for node in nodes:
            env[node] = self._run_node(node, env, None)[0]

    @property
    def order(self) -> list[fx.Node]:
        """Every node of the traced graph in execution order."""
        return self._order

    # -- relevance -------------------------------------------------------------------------
    def __call__(self, x: Tensor, targets: Tensor, capture: dict[fx.Node, Any] | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(logits (N, K), relevance shaped like x)`` for a batch and one target class per row
        (``capture``: see :meth:`_forward`)."""
        with torch.no_grad():
            self._prepare(x.device, x.dtype)
            env, saved = self._forward(x.detach(), capture)
            tr = self.traced
            logits = env[tr.output]
            if not isinstance(logits, Tensor) or logits.ndim != 2:
                raise ValueError(f"expected logits of shape (N, K), got {getattr(logits, 'shape', logits)}")
            index = torch.as_tensor(targets, device=logits.device).long().reshape(-1, 1)
            if index.shape[0] != logits.shape[0]:
                raise ValueError(f"{index.shape[0]} targets for a batch of {logits.shape[0]}")
            relevance: dict[fx.Node, Tensor] = {
                tr.output: torch.zeros_like(logits).scatter_(1, index, logits.gather(1, index))
            }
            input_node = tr.live[0] if tr.nodes[tr.live[0]].kind == Kind.INPUT else None
            for node in reversed(tr.live):
                g = relevance.pop(node, None)
                info = tr.nodes[node]
                if g is not None and info.kind != Kind.INPUT:
                    for src, r in self._backward(info, g, env, saved):
                        prev = relevance.get(src)
                        relevance[src] = r if prev is None else prev.add_(r)
                elif g is not None:
                    relevance[node] = g
                    break
                for value in self._free_after.get(node, ()):
                    env.pop(value, None)
            result = relevance.get(input_node) if input_node is not None else None
            if result is None:
                result = torch.zeros_like(x)
            return logits, result.contiguous()

    @property
    def _live_set(self) -> set[fx.Node]:
        live = getattr(self, "_live_cache", None)
        if live is None:
            live = self._live_cache = set(self.traced.live)
        return live

    def _backward(
        self, info: TracedNode, g: Tensor, env: dict[fx.Node, Any], saved: dict[fx.Node, Any]
    ) -> list[tuple[fx.Node, Tensor]]:
        node, kind, srcs = info.node, info.kind, info.sources
        if kind in (Kind.PASS, Kind.BATCH_NORM, Kind.GATE):
            if kind == Kind.GATE and g.shape != saved[node]:
                raise UnsupportedModel(f"{info.label}: the gated operand is broadcast")
            return [(srcs[0], g)] if srcs else []
        if kind == Kind.AFFINE:
            rule = self._rules[node]
            a = env[srcs[0]] if rule.needs_input else None
            z = env[self._affine_out[node]] if rule.needs_output else None
            return [(srcs[0], rule.relevance(g, a, z, saved[node]))]
        if kind == Kind.RESHAPE:
            return [(srcs[0], g.reshape(saved[node]))]
        if kind == Kind.MOVE:
            # the gradient of an operation that only moves elements reads no values: an
            # uninitialised stand-in of the source's shape serves
            with torch.enable_grad():
                leaf = g.new_empty(saved[node]).requires_grad_(True)
                (grad,) = torch.autograd.grad(info.info["move"](leaf), leaf, g)
            return [(srcs[0], grad)]
        if kind == Kind.ADD:
            a, b = env[srcs[0]], env[srcs[1]]
            if a.shape != b.shape:
                raise UnsupportedModel(f"{info.label}: addition with broadcasting has no LRP rule")
            s = g.div_(stabilize_(torch.add(a, b), self.stabilizer))
            return [(srcs[0], a * s), (srcs[1], s.mul_(b))]
        if kind == Kind.CAT:
            dim = info.info["dim"]
            sizes = [n for n in saved[node]]
            parts = g.split(sizes, dim=dim)
            return [
                (item, part)
                for item, part in zip(info.info["items"], parts)
                if isinstance(item, fx.Node) and item in srcs
            ]
        if kind == Kind.PAD:
            return [(srcs[0], _crop(g, info.info["pad"], saved[node], info.label))]
        if kind == Kind.MAX_POOL:
            return [(srcs[0], _max_unpool(g, saved[node]))]
        if kind == Kind.AVG_POOL:
            a, out = env[srcs[0]], env[node]
            s = g.div_(stabilize(out, self.stabilizer))
            call = self._calls.get(node) if node.op == "call_module" else None
            with torch.enable_grad():
                leaf = a.detach().requires_grad_(True)
                args = fx.node.map_arg(node.args[1:], lambda n: env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                pooled = call(leaf) if call is not None else node.target(leaf, *args, **kwargs)  # type: ignore[operator]
                (grad,) = torch.autograd.grad(pooled, leaf, s)
            return [(srcs[0], grad.mul_(a))]
        if kind == Kind.MEAN:
            a, out = env[srcs[0]], env[node]
            s = g.div_(stabilize(out, self.stabilizer))
            if not info.info["keepdim"]:
                s = s.reshape(s.shape + (1, 1))
            count = a.shape[2] * a.shape[3]
            return [(srcs[0], (s / count).mul(a))]
        raise UnsupportedModel(f"{info.label} has no LRP rule")  # pragma: no cover - excluded by trace


def _identity(x: Tensor) -> Tensor:
    return x


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _batch_norm_eval(bn: Any) -> Any:
    """Eval-mode batch norm with the module's running statistics, as ``bn.eval()(x)`` computes it."""

    def call(x: Tensor) -> Tensor:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    return call


def _max_pool(info: TracedNode, args: Any, kwargs: Any) -> tuple[Tensor, Any]:
    if "adaptive" in info.info:
        x = args[0]
        out, idx = F.adaptive_max_pool2d(x, info.info["adaptive"], return_indices=True)
        return out, (idx, x.shape, None)
    if info.module is not None:
        x = args[0]
        k, s, p, d, ceil = info.info["args"]
    else:
        bound = _MAX_POOL_SIGNATURE.bind(*args, **kwargs)
        bound.apply_defaults()
        x, k, s, p, d, ceil = (
            bound.arguments[n] for n in ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
        )
    s = s or k
    out, idx = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)
    return out, (idx, x.shape, (_pair(k), _pair(s), _pair(p), _pair(d), bool(ceil)))


def _max_unpool(g: Tensor, saved: Any) -> Tensor:
    idx, shape, params = saved
    if params is None:
        # adaptive windows may overlap and pick one element twice: scatter-add, as autograd does
        n, c = g.shape[:2]
        out = g.new_zeros(n, c, shape[-2] * shape[-1])
        return out.scatter_add_(2, idx.reshape(n, c, -1), g.reshape(n, c, -1)).reshape(shape)
    k, s, p, d, ceil = params
    if all(si >= di * (ki - 1) + 1 for ki, si, di in zip(k, s, d)):
        # windows that share no element: each input receives at most one value, a scatter
        return F.max_unpool2d(g, idx, k, s, p, output_size=list(shape[-2:]))
    # the summing max-pool gradient kernel (what autograd runs in zennit) reads only the
    # shape of the pooled input, so an uninitialised stand-in spares keeping it
    shell = torch.empty(shape, dtype=g.dtype, device=g.device)
    return torch.ops.aten.max_pool2d_with_indices_backward(g.contiguous(), shell, k, s, p, d, ceil, idx)


def _crop(g: Tensor, pad: tuple[int, ...], shape: torch.Size, label: str) -> Tensor:
    """Gradient of zero padding: cut the padded border off."""
    if any(p < 0 for p in pad):
        raise UnsupportedModel(f"{label}: negative (cropping) padding is not supported")
    index: list[slice] = [slice(None)] * g.ndim
    for i in range(len(pad) // 2):
        dim = g.ndim - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        index[dim] = slice(before, g.shape[dim] - after)
    out = g[tuple(index)]
    assert out.shape == shape
    return out
