"""Fast layer-by-layer LRP for sequential CNNs, numerically equal to zennit's composites.

zennit computes LRP by hooking every layer and, in the backward pass, re-running each
layer's forward with modified parameters under autograd.  For a plain sequential CNN
the same numbers can be had much more cheaply:

* batch norms are folded into the preceding convolution/linear layer once, in
  ``__init__`` (zennit's ``SequentialMergeBatchNorm`` does this on every call);
* the modified weights each rule needs (clamped positive/negative parts, gamma-scaled
  weights, stacked box-rule weights) are also prepared once;
* the forward activations are kept and reused; only the rule's denominator
  (e.g. ``z+ = W+ a + b+``) is recomputed, right before it is needed;
* the relevance is propagated with ``conv_transpose2d`` / matrix products under
  ``torch.no_grad()``, dividing and multiplying in place, with no autograd graph;
* max pooling routes relevance with the indices stored in the forward pass.

Two identities make the gamma rule as cheap as the z+ rule on ReLU networks.  When the
layer input is known to be non-negative (it comes out of a ReLU), the terms that
zennit builds from the negative part of the input are exactly zero.  And when the
layer output feeds a ReLU whose consumer multiplies relevance by its input (every
rule except Flat and ZBox does), the relevance reaching that layer is exactly zero
wherever its pre-activation ``z <= 0``, so zennit's negative-output branch of the
gamma rule contributes exact zeros as well.  Both conditions are decided statically
from the layer sequence; where they do not hold the general formulas are used.

Only modules whose LRP treatment is known exactly are accepted (see
:meth:`FastLRP.check`); anything else raises :class:`UnsupportedModel` so that the
caller can fall back to zennit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FastLRP", "UnsupportedModel", "zennit_relevance"]


class UnsupportedModel(Exception):
    """The model contains a module (or structure) the fast engine does not cover."""


# Rule names used internally; they mirror zennit's rule classes.
_FLAT, _ZBOX, _ZPLUS, _GAMMA, _ALPHA_BETA, _EPSILON = (
    "flat",
    "zbox",
    "zplus",
    "gamma",
    "alpha_beta",
    "epsilon",
)
# Rules whose relevance at the layer input is ``input * something``: relevance
# vanishes wherever the input is zero.  Flat and ZBox are the exceptions.
_MULTIPLICATIVE = {_ZPLUS, _GAMMA, _ALPHA_BETA, _EPSILON}

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_SUPPORTED_TYPES = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Identity,
    *_DROPOUTS,
)


def _eps_like(t: Tensor, eps: float) -> Tensor:
    """``+eps`` where ``t >= 0`` (including ``-0.0``), ``-eps`` where ``t < 0``."""
    return torch.where(t < 0.0, t.new_tensor(-eps), t.new_tensor(eps))


def _stabilize(t: Tensor, eps: float) -> Tensor:
    """Return ``t`` shifted away from zero by ``eps`` with each entry's sign (``+`` for 0).

    This is zennit's default stabiliser ``t + eps * ((t == 0) + sign(t))``; adding
    ``±eps`` selected by a mask gives bit-identical results with far fewer full-size
    temporaries, which matters on large activation maps.
    """
    return t + _eps_like(t, eps)


def _stabilize_(t: Tensor, eps: float) -> Tensor:
    """In-place :func:`_stabilize` for tensors the caller owns.

    Denominators usually have one sign (z+ >= 0, z- <= 0), where the stabiliser is a
    plain ``+ eps`` (``-0.0`` included), or ``- eps`` except at zeros; one min/max
    reduction decides that far more cheaply than building the sign-dependent shift.
    """
    if not t.numel():
        return t
    low, high = torch.aminmax(t)
    if bool(low >= 0.0):
        return t.add_(eps)
    if bool(high <= 0.0):
        zeros = t == 0.0
        return t.sub_(eps).masked_fill_(zeros, eps)
    return t.add_(_eps_like(t, eps))


def _is_channels_last(t: Tensor) -> bool:
    return t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _pair(v: int | tuple[int, ...] | list[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(e) for e in v]


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """Numeric (symmetric) padding of ``conv``.

    Raises
    ------
    UnsupportedModel
        If the padding is ``'same'`` with an even effective kernel, which PyTorch pads
        asymmetrically.
    """
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        pads = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            if total % 2:
                raise UnsupportedModel("padding='same' with an even effective kernel is asymmetric")
            pads.append(total // 2)
        return (pads[0], pads[1])
    return (int(conv.padding[0]), int(conv.padding[1]))


def _fold_batch_norm(
    weight: Tensor, bias: Tensor | None, bn: dict[str, Tensor] | None, eps: float
) -> tuple[Tensor, Tensor | None]:
    """Return ``weight`` and ``bias`` with the batch norm ``bn`` merged in.

    ``bn`` holds ``weight``, ``bias``, ``running_mean`` and ``running_var``.  The
    arithmetic follows zennit's ``MergeBatchNorm.merge_batch_norm`` (a missing bias is
    treated as a one-element zero tensor, as zennit does) so that the merged
    parameters are identical.  Without a batch norm the tensors are returned as they
    are: shared, not copied, since the engine never writes to them (VGG's classifier
    alone is 0.5 GB).
    """
    if bn is None:
        return weight, bias
    denominator = (bn["running_var"] + eps) ** 0.5
    scale = bn["weight"] / denominator
    if bias is None:
        bias = torch.zeros(1, device=weight.device, dtype=weight.dtype)
    index = (slice(None),) + (None,) * (weight.ndim - 1)
    weight = weight * scale[index]
    bias = (bias - bn["running_mean"]) * scale + bn["bias"]
    return weight, bias


def _clamp_or_none(t: Tensor | None, **kwargs: float) -> Tensor | None:
    return None if t is None else t.clamp(**kwargs)


class _Op:
    """One step of the layer sequence: a forward that stashes what the backward needs."""

    name: str = ""
    #: whether ``forward`` stores its output for the backward (then nobody may
    #: modify that output in place)
    keeps_output: bool = False

    def forward(self, a: Tensor) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def backward(self, g: Tensor, saved: Any) -> Tensor:
        """Map relevance at the output to relevance at the input; ``g`` may be overwritten."""
        raise NotImplementedError

    def convert(self, device: torch.device, dtype: torch.dtype, channels_last: bool) -> None:
        """Move prepared tensors to ``device``/``dtype`` (and layout) and drop shape caches."""


class _ReLU(_Op):
    """ReLU with zennit's Pass rule: relevance passes through unchanged."""

    def __init__(self, name: str, inplace: bool) -> None:
        self.name = name
        self.inplace = inplace

    def forward(self, a: Tensor) -> tuple[Tensor, Any]:
        return (a.relu_() if self.inplace else a.relu()), None

    def backward(self, g: Tensor, saved: Any) -> Tensor:
        return g


class _Flatten(_Op):
    """Flatten: the backward (an ordinary gradient in zennit) is a reshape."""

    def __init__(self, name: str, start_dim: int, end_dim: int) -> None:
        self.name = name
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, a: Tensor) -> tuple[Tensor, Any]:
        return a.flatten(self.start_dim, self.end_dim), a.shape

    def backward(self, g: Tensor, saved: Any) -> Tensor:
        return g.reshape(saved)


class _BatchNormPass(_Op):
    """A batch norm that is not merged: applied in the forward, zennit's Pass rule backward."""

    def __init__(self, name: str, bn: nn.modules.batchnorm._BatchNorm) -> None:
        self.name = name
        self.eps = bn.eps
        self.src = {
            k: (None if getattr(bn, k) is None else getattr(bn, k).detach())
            for k in ("running_mean", "running_var", "weight", "bias")
        }
        self.t = dict(self.src)

    def forward(self, a: Tensor) -> tuple[Tensor, Any]:
        t = self.t
        return F.batch_norm(a, t["running_mean"], t["running_var"], t["weight"], t["bias"], False, 0.0, self.eps), None

    def backward(self, g: Tensor, saved: Any) -> Tensor:
        return g

    def convert(self, device: torch.device, dtype: torch.dtype, channels_last: bool) -> None:
        self.t = {k: (None if v is None else v.to(device=device, dtype=dtype)) for k, v in self.src.items()}


class _MaxPool(_Op):
    """Max pooling: zennit has no rule for it, so relevance follows the gradient,
    i.e. it goes to the arg-max of each window (summed where windows overlap)."""

    def __init__(self, name: str, pool: nn.MaxPool2d) -> None:
        self.name = name
        self.args = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
        k, s, d = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.dilation)
        # windows that cannot share an element: each input receives at most one value
        self.disjoint = all(si >= di * (ki - 1) + 1 for ki, si, di in zip(k, s, d))

    def forward(self, a: Tensor) -> tuple[Tensor, Any]:
        k, s, p, d, ceil = self.args
        out, idx = F.max_pool2d(a, k, s, p, d, ceil_mode=ceil, return_indices=True)
        layout = torch.channels_last if _is_channels_last(a) else torch.contiguous_format
        return out, (idx, a.shape, layout)

    def backward(self, g: Tensor, saved: Any) -> Tensor:
        idx, shape, layout = saved
        if self.disjoint:
            return F.max_unpool2d(g, idx, self.args[0], self.args[1], self.args[2], output_size=shape[-2:])
        k, s, p, d, ceil = self.args
        # Overlapping windows need the summing max-pool gradient kernel (what zennit's
        # autograd runs).  It reads only the shape and layout of the pooled input, so
        # an uninitialised stand-in saves keeping that (large) activation map alive.
        shell = torch.empty(shape, dtype=g.dtype, device=g.device, memory_format=layout)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            g, shell, _pair(k), _pair(s or k), _pair(p), _pair(d), ceil, idx
        )


class _AvgPoolNorm(_Op):
    """Average pooling with zennit's Norm rule: ``R_in = a * pool^T(R_out / stab(pool(a)))``."""

    def __init__(self, name: str, pool: nn.Module, stabilizer: float) -> None:
        self.name = name
        self.pool = pool
        self.stabilizer = stabilizer
        self.keeps_output = True

    def _pool(self, a: Tensor) -> Tensor:
        p = self.pool
        if isinstance(p, nn.AdaptiveAvgPool2d):
            return F.adaptive_avg_pool2d(a, p.output_size)
        return F.avg_pool2d(
            a, p.kernel_size, p.stride, p.padding, p.ceil_mode, p.count_include_pad, p.divisor_override
        )

    def forward(self, a: Tensor) -> tuple[Tensor, Any]:
        out = self._pool(a)
        return out, (a, out)

    def backward(self, g: Tensor, saved: Any) -> Tensor:
        a, out = saved
        s = g.div_(_stabilize(out, self.stabilizer))
        # The pooled maps are small; a local autograd call is the simplest exact
        # transpose of every pooling variant (padding, ceil_mode, adaptive bins).
        with torch.enable_grad():
            leaf = a.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._pool(leaf), leaf, s)
        return grad.mul_(a)


class _Affine(_Op):
    """A Conv2d or Linear layer (with a following batch norm folded in) and its LRP rule."""

    def __init__(
        self,
        name: str,
        layer: nn.Conv2d | nn.Linear,
        bn: nn.modules.batchnorm._BatchNorm | None,
        rule: str,
        *,
        nonneg_in: bool,
        vanishes: bool,
        epsilon: float,
        stabilizer: float,
        gamma: float,
        low: Tensor | float,
        high: Tensor | float,
    ) -> None:
        self.name = name
        self.rule = rule
        self.is_conv = isinstance(layer, nn.Conv2d)
        if self.is_conv:
            self.stride = tuple(layer.stride)
            self.padding = _conv_padding(layer)
            self.dilation = tuple(layer.dilation)
            self.kernel_size = tuple(layer.kernel_size)
        self.epsilon = epsilon
        self.stabilizer = stabilizer
        # "nonneg": the input comes out of a ReLU, so zennit's negative-input terms are
        # exact zeros.  "vanishes": relevance at the output is zero wherever z <= 0.
        self.nonneg = nonneg_in
        self.vanishes = vanishes
        self.fast = nonneg_in and (rule != _GAMMA or vanishes)
        self.keeps_output = rule in (_ZBOX, _EPSILON) or (rule == _GAMMA and not self.fast)

        # zennit does not remove a merged batch norm: it resets it to mean 0, var 1,
        # weight 1, bias 0, which still divides by sqrt(1 + eps).  The activations
        # (not the rule's denominators) carry that factor; reproduce it to stay equal.
        self.bn_scale = None if bn is None or bn.eps == 0 else 1.0 / (1.0 + bn.eps) ** 0.5
        self.gamma = gamma
        # Sources, read-only; the rule's tensors are derived from them by ``convert``
        # in the dtype of the input, as zennit derives them from the model's dtype.
        self.src_weight = layer.weight.detach()
        self.src_bias = None if layer.bias is None else layer.bias.detach()
        self.src_bn = None if bn is None else {
            k: getattr(bn, k).detach() for k in ("weight", "bias", "running_mean", "running_var")
        }
        self.bn_eps = 0.0 if bn is None else bn.eps
        if rule == _ZBOX:
            self.low, self.high = low, high
        self.t: dict[str, Tensor | None] = {}
        self._cache: dict[tuple[int, ...], Any] = {}

    def convert(self, device: torch.device, dtype: torch.dtype, channels_last: bool) -> None:
        def moved(v: Tensor | None) -> Tensor | None:
            return None if v is None else v.to(device=device, dtype=dtype)

        bn = None if self.src_bn is None else {k: moved(v) for k, v in self.src_bn.items()}
        w, b = _fold_batch_norm(moved(self.src_weight), moved(self.src_bias), bn, self.bn_eps)
        rule, gamma = self.rule, self.gamma
        t: dict[str, Tensor | None] = {"w": w, "b": b}
        if rule in (_ZPLUS, _ALPHA_BETA, _ZBOX):
            t["wp"], t["bp"] = w.clamp(min=0.0), _clamp_or_none(b, min=0.0)
            t["wn"], t["bn"] = w.clamp(max=0.0), _clamp_or_none(b, max=0.0)
            if rule == _ZPLUS and self.fast:
                del t["wn"], t["bn"]
            if rule == _ZBOX:
                # One transposed convolution yields W^T s, W+^T s and W-^T s at once.
                t["w_stack"] = torch.cat([w, t["wp"], t["wn"]], dim=1)
        elif rule == _GAMMA:
            # zennit's GammaMod: param + gamma * param.clamp(...); the "bias-free"
            # variants of the rule simply have no bias.
            t["w1"] = w + gamma * w.clamp(min=0.0)
            t["b1"] = None if b is None else b + gamma * b.clamp(min=0.0)
            if not self.fast:
                t["w2"] = w + gamma * w.clamp(max=0.0)
                t["b3"] = None if b is None else b + gamma * b.clamp(max=0.0)
        if channels_last:
            t = {k: (v.contiguous(memory_format=torch.channels_last) if v is not None and v.ndim == 4 else v)
                 for k, v in t.items()}
        self.t = t
        self._cache.clear()

    # -- geometry -------------------------------------------------------------------
    def _lin(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        if self.is_conv:
            return F.conv2d(x, w, b, self.stride, self.padding, self.dilation)
        return F.linear(x, w, b)

    def _lin_t(self, s: Tensor, w: Tensor, in_shape: torch.Size) -> Tensor:
        """Transpose of ``_lin`` (without bias) applied to ``s``; output has ``in_shape``."""
        if not self.is_conv:
            return s.matmul(w)
        out_pad = []
        for dim in (0, 1):
            covered = (
                (s.shape[-2 + dim] - 1) * self.stride[dim]
                - 2 * self.padding[dim]
                + self.dilation[dim] * (self.kernel_size[dim] - 1)
                + 1
            )
            out_pad.append(in_shape[-2 + dim] - covered)
        return F.conv_transpose2d(
            s, w, None, self.stride, self.padding, tuple(out_pad), 1, self.dilation
        )

    # -- forward --------------------------------------------------------------------
    def forward(self, a: Tensor) -> tuple[Tensor, Any]:
        z = self._lin(a, self.t["w"], self.t["b"])
        out = z
        if self.bn_scale is not None:
            out = z * self.bn_scale if self.keeps_output else z.mul_(self.bn_scale)
        if self.rule == _FLAT:
            return out, a.shape
        if self.keeps_output:
            return out, (a, z)
        return out, (a,)

    # -- backward -------------------------------------------------------------------
    def backward(self, g: Tensor, saved: Any) -> Tensor:
        return getattr(self, "_bw_" + self.rule)(g, saved)

    def _bw_epsilon(self, g: Tensor, saved: Any) -> Tensor:
        a, z = saved
        s = g.div_(_stabilize(z, self.epsilon))
        return self._lin_t(s, self.t["w"], a.shape).mul_(a)

    def _bw_zplus(self, g: Tensor, saved: Any) -> Tensor:
        (a,) = saved
        t = self.t
        if self.fast:
            # a >= 0, W+ >= 0, b+ >= 0, so z+ >= 0 and zennit's stabiliser is "+ eps".
            d = self._lin(a, t["wp"], t["bp"]).add_(self.stabilizer)
            s = g.div_(d)
            del d
            return self._lin_t(s, t["wp"], a.shape).mul_(a)
        ap, an = a.clamp(min=0.0), a.clamp(max=0.0)
        d = _stabilize_(self._lin(ap, t["wp"], t["bp"]) + self._lin(an, t["wn"], None), self.stabilizer)
        s = g.div_(d)
        return ap * self._lin_t(s, t["wp"], a.shape) + an * self._lin_t(s, t["wn"], a.shape)

    def _bw_gamma(self, g: Tensor, saved: Any) -> Tensor:
        t = self.t
        if self.fast:
            (a,) = saved
            # Relevance is zero wherever z <= 0 (see module docstring), so zennit's mask
            # (z > 0) is implied, and where z > 0 the denominator z1 >= z > 0.  Clamping
            # to 0 first keeps the masked-out entries finite without a sign tensor.
            d = self._lin(a, t["w1"], t["b1"]).clamp_(min=0.0).add_(self.stabilizer)
            s = g.div_(d)
            del d
            return self._lin_t(s, t["w1"], a.shape).mul_(a)
        a, z = saved
        ap, an = a.clamp(min=0.0), a.clamp(max=0.0)
        o1 = self._lin(ap, t["w1"], t["b1"])
        o2 = self._lin(an, t["w2"], None)
        o3 = self._lin(ap, t["w2"], t["b3"])
        o4 = self._lin(an, t["w1"], None)
        s_pos = (z > 0.0) * g / _stabilize_(o1 + o2, self.stabilizer)
        s_neg = (z < 0.0) * g / _stabilize_(o3 + o4, self.stabilizer)
        shape = a.shape
        return (
            ap * self._lin_t(s_pos, t["w1"], shape)
            + an * self._lin_t(s_pos, t["w2"], shape)
            + ap * self._lin_t(s_neg, t["w2"], shape)
            + an * self._lin_t(s_neg, t["w1"], shape)
        )

    def _bw_alpha_beta(self, g: Tensor, saved: Any, alpha: float = 2.0, beta: float = 1.0) -> Tensor:
        (a,) = saved
        t = self.t
        shape = a.shape
        if self.fast:
            d_pos = self._lin(a, t["wp"], t["bp"]).add_(self.stabilizer)
            d_neg = _stabilize_(self._lin(a, t["wn"], t["bn"]), self.stabilizer)
            s_pos = g / d_pos
            s_neg = g.div_(d_neg)
            del d_pos, d_neg
            pos = self._lin_t(s_pos, t["wp"], shape).mul_(a)
            neg = self._lin_t(s_neg, t["wn"], shape).mul_(a)
            return pos.mul_(alpha).sub_(neg, alpha=beta)
        ap, an = a.clamp(min=0.0), a.clamp(max=0.0)
        s_pos = g / _stabilize_(self._lin(ap, t["wp"], t["bp"]) + self._lin(an, t["wn"], None), self.stabilizer)
        s_neg = g / _stabilize_(self._lin(ap, t["wn"], t["bn"]) + self._lin(an, t["wp"], None), self.stabilizer)
        pos = ap * self._lin_t(s_pos, t["wp"], shape) + an * self._lin_t(s_pos, t["wn"], shape)
        neg = ap * self._lin_t(s_neg, t["wn"], shape) + an * self._lin_t(s_neg, t["wp"], shape)
        return alpha * pos - beta * neg

    def _bw_flat(self, g: Tensor, saved: Any) -> Tensor:
        shape: torch.Size = saved
        # Flat uses all-ones weights, no bias and all-ones input: the denominator only
        # depends on the input shape, and every input channel receives the same value.
        key = tuple(shape[1:])
        d = self._cache.get(key)
        if d is None:
            if self.is_conv:
                ones_in = g.new_ones((1, shape[1]) + tuple(shape[2:]))
                ones_w = g.new_ones((1, shape[1]) + self.kernel_size)
                d = _stabilize(self._lin(ones_in, ones_w, None), self.stabilizer)
            else:
                d = _stabilize(g.new_ones(1, shape[-1]).sum(-1, keepdim=True), self.stabilizer)
            self._cache[key] = d
        s = g.div_(d)
        if self.is_conv:
            box = g.new_ones((1, 1) + self.kernel_size)
            r = self._lin_t(s.sum(1, keepdim=True), box, shape)
        else:
            r = s.sum(-1, keepdim=True)
        return r.expand(shape).contiguous()

    def _bounds(self, shape: torch.Size, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Box bounds expanded to ``(1,) + shape[1:]`` and the bound term of the denominator."""
        key = tuple(shape[1:])
        hit = self._cache.get(key)
        if hit is None:
            t = self.t
            target = (1,) + tuple(shape[1:])
            low = torch.as_tensor(self.low).to(like).expand(target)
            high = torch.as_tensor(self.high).to(like).expand(target)
            offset = self._lin(low, t["wp"], t["bp"]) + self._lin(high, t["wn"], t["bn"])
            hit = self._cache[key] = (low, high, offset)
        return hit

    def _bw_zbox(self, g: Tensor, saved: Any) -> Tensor:
        x, z = saved
        low, high, offset = self._bounds(x.shape, x)
        # z is kept only for this step, so the denominator may overwrite it
        s = g.div_(_stabilize_(z.sub_(offset), self.stabilizer))
        grads = self._lin_t(s, self.t["w_stack"], x.shape[:1] + (3 * x.shape[1],) + x.shape[2:])
        g1, g2, g3 = grads.split(x.shape[1], dim=1)
        return x * g1 - (low * g2 + high * g3)


# --------------------------------------------------------------------------------------
# model walking and rule assignment


def _is_torchvision_vgg(model: nn.Module) -> bool:
    # A torchvision model means torchvision is imported already; importing it just to
    # ask would cost every session (and every xdist worker) about 1.5 s.
    models = sys.modules.get("torchvision.models")
    VGG = getattr(models, "VGG", None)
    return VGG is not None and isinstance(model, VGG) and type(model).forward is VGG.forward


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Leaf modules of nested ``nn.Sequential`` containers in forward order."""
    if isinstance(module, nn.Sequential):
        if type(module).forward is not nn.Sequential.forward:
            raise UnsupportedModel(
                f"module '{prefix or '<root>'}' ({type(module).__name__}) overrides Sequential.forward"
            )
        out: list[tuple[str, nn.Module]] = []
        for child_name, child in module.named_children():
            out += _leaves(child, f"{prefix}.{child_name}" if prefix else child_name)
        return out
    if any(True for _ in module.children()):
        raise UnsupportedModel(
            f"module '{prefix or '<root>'}' ({type(module).__name__}) is a container other than nn.Sequential"
        )
    return [(prefix or "<root>", module)]


def _layer_sequence(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaves in the order the model's forward applies them (torchvision VGG's
    ``torch.flatten`` becomes an explicit ``nn.Flatten``)."""
    if _is_torchvision_vgg(model):
        return (
            _leaves(model.features, "features")
            + _leaves(model.avgpool, "avgpool")
            + [("<torch.flatten>", nn.Flatten(1))]
            + _leaves(model.classifier, "classifier")
        )
    if isinstance(model, nn.Sequential):
        return _leaves(model, "")
    raise UnsupportedModel(
        f"model {type(model).__name__} is neither an nn.Sequential nor a torchvision VGG; "
        "its forward cannot be followed layer by layer"
    )


def _check_leaf(name: str, module: nn.Module, previous: nn.Module | None) -> None:
    if type(module) not in _SUPPORTED_TYPES:
        raise UnsupportedModel(f"module '{name}' ({type(module).__name__}) is not supported")
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise UnsupportedModel(f"module '{name}' (Conv2d) has groups={module.groups}; only groups=1 is supported")
        if module.padding_mode != "zeros":
            raise UnsupportedModel(f"module '{name}' (Conv2d) has padding_mode='{module.padding_mode}'")
        try:
            _conv_padding(module)
        except UnsupportedModel as exc:
            raise UnsupportedModel(f"module '{name}' (Conv2d): {exc}") from None
    elif isinstance(module, nn.MaxPool2d) and module.return_indices:
        raise UnsupportedModel(f"module '{name}' (MaxPool2d) returns indices")
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if module.running_mean is None or module.running_var is None:
            raise UnsupportedModel(f"module '{name}' ({type(module).__name__}) has no running statistics")
        if isinstance(previous, (nn.Conv2d, nn.Linear)):
            # zennit's canonizer merges it and needs its affine parameters to do so
            if not module.affine:
                raise UnsupportedModel(f"module '{name}' ({type(module).__name__}) has no affine parameters to merge")
            features = previous.out_channels if isinstance(previous, nn.Conv2d) else previous.out_features
            if module.num_features != features:
                raise UnsupportedModel(f"module '{name}' has {module.num_features} features, its layer {features}")


def _assign_rules(sequence: list[tuple[str, nn.Module]], rule_set: str) -> list[str | None]:
    """Mirror zennit's (SpecialFirst)LayerMapComposite: the first module matching the
    first-layer map gets the first-layer rule; Conv2d/Linear get the composite's rules."""
    conv_rule = {"epsilon_plus_flat": _ZPLUS, "epsilon_gamma_box": _GAMMA, "epsilon_alpha2_beta1_flat": _ALPHA_BETA}[
        rule_set
    ]
    if rule_set == "epsilon_gamma_box":
        first_types: tuple[type, ...] = (nn.Conv2d,)
        first_rule = _ZBOX
    else:
        first_types = (nn.Conv2d, nn.Linear)
        first_rule = _FLAT
    rules: list[str | None] = []
    first_done = False
    for _, module in sequence:
        if not first_done and isinstance(module, first_types):
            rules.append(first_rule)
            first_done = True
        elif isinstance(module, nn.Conv2d):
            rules.append(conv_rule)
        elif isinstance(module, nn.Linear):
            rules.append(_EPSILON)
        else:
            rules.append(None)
    return rules


class FastLRP:
    """Layer-by-layer LRP for sequential CNNs, equal to zennit's composites.

    The relevance equals what ``zennit.attribution.Gradient`` returns for the
    composite named by ``rule_set`` with ``canonizers=[SequentialMergeBatchNorm()]``
    and the output relevance ``logits * one_hot(targets)``, up to float rounding.

    Supported: ``nn.Sequential`` (nested allowed) or torchvision ``VGG`` built from
    Conv2d (groups=1, zero padding), Linear, BatchNorm1d/2d (merged when directly after
    a Conv2d/Linear, else applied with the Pass rule), ReLU, MaxPool2d, AvgPool2d,
    AdaptiveAvgPool2d, Flatten, Dropout variants and Identity.  The model is never modified; the engine always
    computes eval-mode semantics.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.  Parameters are read in ``__init__`` (batch norms folded into
        copies, other weights shared read-only); build a new engine after changing them.
    rule_set : str
        One of :attr:`RULE_SETS`.
    low, high : torch.Tensor or float, optional
        Box bounds of the (already normalised) input for ``epsilon_gamma_box``;
        a scalar or a tensor broadcastable to ``(1, C, H, W)``.
    epsilon : float, optional
        Stabiliser of the Epsilon rule (Linear layers).
    gamma : float, optional
        Gamma of the Gamma rule.
    stabilizer : float, optional
        Stabiliser of all other rules (zennit's ``stabilizer``).
    channels_last : bool, optional
        Run 4-D inputs in channels-last layout.  Convolutions and pooling are about
        20% faster on CPU, but the kernels differ from the NCHW ones zennit runs and
        LRP can amplify their last-bit differences: 6e-7 relative on the trained demo
        model, but up to 3e-3 on a random-weight VGG11.  The default NCHW path runs
        zennit's kernels and reproduces its numbers to float rounding (~1e-7).
    merge_batchnorm : bool, optional
        Merge batch norms that directly follow a Conv2d/Linear, as zennit's
        ``SequentialMergeBatchNorm`` does (default).  ``False`` matches a zennit
        composite without canonizers: the batch norm is applied and passes relevance.

    Raises
    ------
    UnsupportedModel
        If the model has a module or structure the engine does not cover.
    ValueError
        If ``rule_set`` is unknown.
    """

    RULE_SETS = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")

    def __init__(
        self,
        model: nn.Module,
        rule_set: str,
        *,
        low: Tensor | float = -3.0,
        high: Tensor | float = 3.0,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
        channels_last: bool = False,
        merge_batchnorm: bool = True,
    ) -> None:
        if rule_set not in self.RULE_SETS:
            raise ValueError(f"unknown rule set {rule_set!r}; expected one of {self.RULE_SETS}")
        for bound_name, bound in (("low", low), ("high", high)):
            if isinstance(bound, Tensor) and bound.ndim not in (0, 4) or (
                isinstance(bound, Tensor) and bound.ndim == 4 and bound.shape[0] != 1
            ):
                raise UnsupportedModel(f"{bound_name} must be a float or a tensor of shape (1, C, H|1, W|1)")
        self.rule_set = rule_set
        sequence = _layer_sequence(model)
        previous: nn.Module | None = None
        for name, module in sequence:
            _check_leaf(name, module, previous)
            previous = module
        with torch.no_grad():
            self._ops = self._build(sequence, rule_set, low, high, epsilon, gamma, stabilizer, merge_batchnorm)
        self.channels_last = channels_last
        self._key: tuple[torch.device, torch.dtype, bool] | None = None
        param = next(model.parameters(), None)
        if param is not None and param.is_floating_point():
            # prepare for the model's own dtype now, so that the first call is not slower
            self._prepare(param.device, param.dtype, channels_last)

    def _prepare(self, device: torch.device, dtype: torch.dtype, channels_last: bool) -> None:
        key = (device, dtype, channels_last)
        if key != self._key:
            with torch.no_grad():
                for op in self._ops:
                    op.convert(device, dtype, channels_last)
            self._key = key

    @staticmethod
    def check(model: nn.Module, rule_set: str) -> str | None:
        """Return ``None`` if the engine supports ``model``, else a one-line reason.

        Parameters
        ----------
        model : torch.nn.Module
            The classifier.
        rule_set : str
            The rule set that would be used.

        Returns
        -------
        str or None
            The reason, naming the offending module, or ``None``.
        """
        if rule_set not in FastLRP.RULE_SETS:
            return f"rule set {rule_set!r} is not one of {FastLRP.RULE_SETS}"
        try:
            sequence = _layer_sequence(model)
            previous: nn.Module | None = None
            for name, module in sequence:
                _check_leaf(name, module, previous)
                previous = module
        except UnsupportedModel as exc:
            return str(exc)
        return None

    @staticmethod
    def _build(
        sequence: list[tuple[str, nn.Module]],
        rule_set: str,
        low: Tensor | float,
        high: Tensor | float,
        epsilon: float,
        gamma: float,
        stabilizer: float,
        merge_batchnorm: bool,
    ) -> list[_Op]:
        rules = _assign_rules(sequence, rule_set)
        # Dropout/Identity are the identity in eval mode and have no zennit rule.  A
        # batch norm right after a Conv2d/Linear (in leaf order, as zennit's canonizer
        # sees it) is merged into that layer; any other one is applied and gets Pass.
        batch_norms = (nn.BatchNorm1d, nn.BatchNorm2d)
        steps: list[tuple[str, nn.Module, str | None, nn.Module | None]] = []
        for i, ((name, module), rule) in enumerate(zip(sequence, rules)):
            if isinstance(module, (nn.Identity, *_DROPOUTS)):
                continue
            merged_into_previous = i > 0 and isinstance(sequence[i - 1][1], (nn.Conv2d, nn.Linear))
            if isinstance(module, batch_norms) and merge_batchnorm and merged_into_previous:
                continue
            bn = None
            if merge_batchnorm and isinstance(module, (nn.Conv2d, nn.Linear)) and i + 1 < len(sequence):
                nxt = sequence[i + 1][1]
                if isinstance(nxt, batch_norms):
                    bn = nxt
            steps.append((name, module, rule, bn))

        def relevance_vanishes_after(index: int) -> bool:
            """Whether relevance at the output of ReLU step ``index`` is zero wherever that
            output is zero: true if the next consumer multiplies by its input, looking
            through max pooling, flattening and further ReLUs."""
            for _name, module, rule, _ in steps[index + 1 :]:
                if isinstance(module, (nn.MaxPool2d, nn.Flatten, nn.ReLU)):
                    continue
                if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                    return True
                return rule in _MULTIPLICATIVE
            return False

        ops: list[_Op] = []
        nonneg = False
        for i, (name, module, rule, bn) in enumerate(steps):
            op: _Op
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                followed_by_relu = i + 1 < len(steps) and isinstance(steps[i + 1][1], nn.ReLU)
                vanishes = followed_by_relu and relevance_vanishes_after(i + 1)
                op = _Affine(
                    name,
                    module,
                    bn,
                    rule or _EPSILON,
                    nonneg_in=nonneg,
                    vanishes=vanishes,
                    epsilon=epsilon,
                    stabilizer=stabilizer,
                    gamma=gamma,
                    low=low,
                    high=high,
                )
                nonneg = False
            elif isinstance(module, nn.ReLU):
                # In place only on a fresh layer output that no step keeps.
                inplace = bool(ops) and isinstance(ops[-1], (_Affine, _BatchNormPass)) and not ops[-1].keeps_output
                op = _ReLU(name, inplace)
                nonneg = True
            elif isinstance(module, batch_norms):
                op = _BatchNormPass(name, module)
                nonneg = False
            elif isinstance(module, nn.MaxPool2d):
                op = _MaxPool(name, module)
            elif isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                op = _AvgPoolNorm(name, module, stabilizer)
            elif isinstance(module, nn.Flatten):
                op = _Flatten(name, module.start_dim, module.end_dim)
            else:  # pragma: no cover - excluded by _check_leaf
                raise UnsupportedModel(f"module '{name}' ({type(module).__name__}) is not supported")
            ops.append(op)
        return ops

    def __call__(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (N, K), relevance (N, C, H, W))`` for a batch and one target class per row.

        Parameters
        ----------
        x : torch.Tensor
            Input batch (already normalised).
        targets : torch.Tensor
            Integer class index per row, shape ``(N,)``.

        Returns
        -------
        logits : torch.Tensor
            The model's output for ``x``.
        relevance : torch.Tensor
            LRP relevance at the input, same shape as ``x``; its sum over all but the
            batch dimension is approximately the target logit.
        """
        with torch.no_grad():
            channels_last = self.channels_last and x.ndim == 4
            self._prepare(x.device, x.dtype, channels_last)
            h = x.detach()
            if channels_last:
                h = h.contiguous(memory_format=torch.channels_last)
            saved: list[Any] = []
            for op in self._ops:
                h, stash = op.forward(h)
                saved.append(stash)
            logits = h
            if logits.ndim != 2:
                raise ValueError(f"expected logits of shape (N, K), got {tuple(logits.shape)}")
            index = torch.as_tensor(targets, device=logits.device).long().reshape(-1, 1)
            if index.shape[0] != logits.shape[0]:
                raise ValueError(f"{index.shape[0]} targets for a batch of {logits.shape[0]}")
            g = torch.zeros_like(logits).scatter_(1, index, logits.gather(1, index))
            for op, stash in zip(reversed(self._ops), reversed(saved)):
                g = op.backward(g, stash)
                saved.pop()  # free each layer's activations as soon as they are used
            return logits, g.contiguous()


def zennit_relevance(
    model: nn.Module,
    rule_set: str,
    x: Tensor,
    targets: Tensor,
    *,
    low: Tensor | float = -3.0,
    high: Tensor | float = 3.0,
) -> tuple[Tensor, Tensor]:
    """Reference LRP with zennit, as the harness computes it.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (eval mode).
    rule_set : str
        One of :attr:`FastLRP.RULE_SETS`.
    x : torch.Tensor
        Input batch.
    targets : torch.Tensor
        Class index per row.
    low, high : torch.Tensor or float, optional
        Box bounds for ``epsilon_gamma_box``.

    Returns
    -------
    tuple of torch.Tensor
        ``(logits, relevance)``.
    """
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat

    factories: dict[str, Callable[[], Any]] = {
        "epsilon_plus_flat": lambda: EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()]),
        "epsilon_gamma_box": lambda: EpsilonGammaBox(low=low, high=high, canonizers=[SequentialMergeBatchNorm()]),
        "epsilon_alpha2_beta1_flat": lambda: EpsilonAlpha2Beta1Flat(canonizers=[SequentialMergeBatchNorm()]),
    }
    composite = factories[rule_set]()
    targets = torch.as_tensor(targets).long()
    with Gradient(model, composite) as attributor:
        logits, relevance = attributor(
            x, lambda out: out * F.one_hot(targets.to(out.device), out.shape[1]).to(out)
        )
    return logits.detach(), relevance.detach()
