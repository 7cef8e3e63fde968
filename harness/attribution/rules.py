"""LRP rule kernels for Conv2d/Linear layers, numerically equal to zennit's rules.

zennit computes a rule by re-running the layer with modified parameters under autograd
and differentiating.  Here each rule is written out directly: the modified weights are
prepared once per device/dtype, the rule's denominators are recomputed from the kept
layer input right before they are needed, and the transposed layer is applied under
``torch.no_grad()`` with in-place divisions: a matrix product, or for a convolution a
forward convolution with the flipped kernel (stride 1), a 1x1 convolution scattered into
every stride-th pixel (strided 1x1), one stride-1 convolution per phase for a strided
grouped (depthwise) convolution, and ``conv_transpose2d`` otherwise, since oneDNN's
forward convolutions are the faster ones on CPU.  A 1x1 convolution runs as a matrix
product, which can write its scratch results (denominators, the two halves of z+'s
transpose) into the engine's reused buffers (:mod:`harness.attribution.workspace`).

The formulas follow zennit 0.5's rules (``Epsilon``, ``ZPlus``, ``Gamma``,
``AlphaBeta``, ``Flat``, ``ZBox``) term by term, including its stabiliser
``t + eps * ((t == 0) + sign(t))``.  When the layer input is known to be non-negative
(statically: it comes out of a ReLU), zennit's negative-input terms are exact zeros and
are skipped, and z+'s stabiliser rides in the bias.  For a signed input, z+ of a dense
convolution with many inputs per output is ``(z + |W| |a|) / 2`` from the layer's own
output ``z``: one layer call instead of two.  Convolutions may be grouped (depthwise), strided, dilated and padded.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.attribution.workspace import Workspace

__all__ = ["AffineRule", "FLAT", "ZBOX", "ZPLUS", "GAMMA", "ALPHA_BETA", "EPSILON", "stabilize", "fold_batch_norm"]

FLAT, ZBOX, ZPLUS, GAMMA, ALPHA_BETA, EPSILON = "flat", "zbox", "zplus", "gamma", "alpha_beta", "epsilon"
# z+ of a signed input from the layer output (one layer call instead of two) from this many
# inputs per output on; below, the copy of the output it keeps costs more than it spares
_FAN_IN = 128


def _eps_like(t: Tensor, eps: float) -> Tensor:
    return torch.where(t < 0.0, t.new_tensor(-eps), t.new_tensor(eps))


def stabilize(t: Tensor, eps: float) -> Tensor:
    """zennit's default stabiliser ``t + eps * ((t == 0) + sign(t))``, out of place.

    Adding ``±eps`` selected by the sign gives bit-identical values with fewer
    full-size temporaries.
    """
    return t + _eps_like(t, eps)


def stabilize_(t: Tensor, eps: float) -> Tensor:
    """In-place :func:`stabilize` for tensors the caller owns.

    Denominators usually have one sign (z+ >= 0, z- <= 0); one min/max reduction
    decides that, and then a plain shift is cheaper than building the sign mask.
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


def fold_batch_norm(
    weight: Tensor, bias: Tensor | None, bn: dict[str, Tensor | None] | None, eps: float
) -> tuple[Tensor, Tensor | None]:
    """``weight`` and ``bias`` with the (eval-mode) batch norm ``bn`` merged in.

    The arithmetic follows zennit's ``MergeBatchNorm.merge_batch_norm`` (a missing bias
    is a one-element zero), so the merged parameters are identical to zennit's.  A batch
    norm without affine parameters merges with weight 1 and bias 0.
    """
    if bn is None:
        return weight, bias
    mean, var = bn["running_mean"], bn["running_var"]
    assert mean is not None and var is not None
    scale = (var + eps) ** -0.5 if bn["weight"] is None else bn["weight"] / (var + eps) ** 0.5
    if bias is None:
        bias = torch.zeros(1, device=weight.device, dtype=weight.dtype)
    index = (slice(None),) + (None,) * (weight.ndim - 1)
    weight = weight * scale[index]
    bias = (bias - mean) * scale
    if bn["bias"] is not None:
        bias = bias + bn["bias"]
    return weight, bias


def conv_padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """Numeric symmetric padding of ``conv``, or None if PyTorch pads it asymmetrically
    (``padding='same'`` with an even effective kernel)."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        pads = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            if total % 2:
                return None
            pads.append(total // 2)
        return (pads[0], pads[1])
    return (int(conv.padding[0]), int(conv.padding[1]))


def _clamp(t: Tensor | None, **kwargs: float) -> Tensor | None:
    return None if t is None else t.clamp(**kwargs)


# 1x1 convolutions become matrix products where oneDNN's convolution measured slower (2
# threads, batch 8, sizes of MobileNet/EfficientNet/ResNet-50): with few input channels
# to sum over, and where the output is so large that allocating it costs more than the
# product (glibc maps blocks over 32 MiB afresh); elsewhere oneDNN is up to 2x faster.
_MATMUL_MAX_CONTRACTION = 32
_MATMUL_MIN_OUTPUT_BYTES = 24 << 20


def _as_matmul(contraction: int, out_numel: int, like: Tensor) -> bool:
    if like.device.type != "cpu":
        return False
    return contraction <= _MATMUL_MAX_CONTRACTION or out_numel * like.element_size() >= _MATMUL_MIN_OUTPUT_BYTES


def _transpose_plan(
    w: Tensor,
    groups: int,
    stride: tuple[int, ...],
    padding: tuple[int, int],
    dilation: tuple[int, ...],
    kernel_size: tuple[int, ...],
) -> tuple[str, Tensor, Any]:
    """How :meth:`AffineRule._lin_t` applies the transpose of a convolution with weight ``w``.

    With stride 1, the transposed convolution is a convolution with the kernel flipped and
    the in/out channels of each group swapped, padded by ``dilation * (k - 1) - padding``
    (when that is not negative); a strided 1x1 convolution without padding transposes to a
    1x1 convolution scattered into every stride-th pixel.  Anything else keeps
    ``conv_transpose2d``.
    """
    c_out, c_in_group = w.shape[:2]
    flipped = (
        w.reshape(groups, c_out // groups, c_in_group, *w.shape[2:])
        .transpose(1, 2)
        .reshape(groups * c_in_group, c_out // groups, *w.shape[2:])
        .flip(-1, -2)
        .contiguous()
    )
    if all(st == 1 for st in stride):
        pad = tuple(d * (k - 1) - p for d, k, p in zip(dilation, kernel_size, padding))
        if all(p >= 0 for p in pad):
            return ("conv", flipped, pad)
    if tuple(kernel_size) == (1, 1) and tuple(padding) == (0, 0):
        return ("strided_1x1", flipped, None)
    if groups > 1 and all(d == 1 and k >= st for d, k, st in zip(dilation, kernel_size, stride)):
        return ("polyphase", w, _polyphase(flipped.flip(-1, -2), stride, padding))
    return ("conv_transpose", w, None)


def _polyphase(
    swapped: Tensor, stride: tuple[int, ...], padding: tuple[int, int]
) -> list[tuple[Tensor, tuple[int, int], tuple[int, int], tuple[int, int]]]:
    """A strided transposed convolution as ``stride_y * stride_x`` stride-1 convolutions.

    Output row ``i`` of a transposed convolution (stride ``st``, padding ``p``, kernel ``k``)
    only meets the taps ``t = r + st * m`` of its phase ``r = (i + p) mod st``:
    ``out[i] = sum_m s[q - m] w[r + st m]`` with ``q = (i + p - r) / st``, a stride-1
    correlation of ``s`` with the phase's taps reversed.  Each phase fills every
    ``st``-th output row and column.  For grouped (depthwise) convolutions PyTorch's CPU
    transposed convolution runs group by group, 10-20x slower than these forward calls.

    ``swapped``: the weight with in/out channels of each group swapped (not flipped).
    Returns per phase: the reversed taps, the symmetric padding, the phase ``r`` and the
    number of taps, per dimension.
    """
    phases = []
    for ry in range(stride[0]):
        for rx in range(stride[1]):
            taps = swapped[:, :, ry :: stride[0], rx :: stride[1]]
            if not taps.numel():
                continue
            kr = (taps.shape[2], taps.shape[3])
            phases.append((taps.flip(-1, -2).contiguous(), (kr[0] - 1, kr[1] - 1), (ry, rx), kr))
    return phases


class AffineRule:
    """One Conv2d or Linear layer (with a merged batch norm) and its LRP rule.

    Parameters
    ----------
    layer : nn.Conv2d or nn.Linear
        The layer; its parameters are read (not copied unless a batch norm is merged).
    bn : nn.BatchNorm1d or nn.BatchNorm2d or None
        A batch norm merged into the layer for the relevance pass.
    rule : str
        One of the rule names of this module.
    nonneg : bool
        Whether the layer input is known to be non-negative.
    epsilon, stabilizer, gamma : float
        zennit's rule parameters.
    low, high : Tensor or float
        Box bounds for the ZBox rule.
    """

    def __init__(
        self,
        layer: nn.Conv2d | nn.Linear,
        bn: nn.modules.batchnorm._BatchNorm | None,
        rule: str,
        *,
        nonneg: bool,
        epsilon: float,
        stabilizer: float,
        gamma: float,
        low: Tensor | float,
        high: Tensor | float,
    ) -> None:
        self.rule = rule
        self.nonneg = nonneg
        self.is_conv = isinstance(layer, nn.Conv2d)
        self.groups = 1
        if isinstance(layer, nn.Conv2d):
            padding = conv_padding(layer)
            assert padding is not None, "asymmetric padding is refused by the tracer"
            self.stride, self.padding, self.dilation = tuple(layer.stride), padding, tuple(layer.dilation)
            self.kernel_size = tuple(layer.kernel_size)
            self.groups = layer.groups
        # a 1x1 convolution is a matrix product per image: run as one, it can write into a
        # reused buffer (oneDNN's convolution always allocates its output)
        self.pointwise = (
            self.is_conv
            and self.kernel_size == (1, 1)
            and self.stride == (1, 1)
            and self.padding == (0, 0)
            and self.groups == 1
        )
        self.ws = Workspace()  # the engine shares one among its rules
        self.epsilon, self.stabilizer, self.gamma = epsilon, stabilizer, gamma
        self.low, self.high = low, high
        self.src_weight = layer.weight.detach()
        self.src_bias = None if layer.bias is None else layer.bias.detach()
        self.src_bn: dict[str, Tensor | None] | None = None
        self.bn_eps = 0.0
        if bn is not None:
            self.src_bn = {
                k: (None if getattr(bn, k) is None else getattr(bn, k).detach())
                for k in ("weight", "bias", "running_mean", "running_var")
            }
            self.bn_eps = bn.eps
        # zennit's z+ for a signed input from the layer's output and one layer call, not two.
        # Only for dense convolutions: with the few terms of a depthwise kernel, z+ is often
        # much smaller than |W| |a|, and the difference that gives it loses digits (2e-5
        # instead of 1e-6 relative on EfficientNet-B0).  Keeping the output costs a copy of
        # it (the activation after it can no longer run in place), which pays only where the
        # layer call it spares is large: many inputs per output.
        self._zplus_from_output = (
            rule == ZPLUS
            and not nonneg
            and self.groups == 1
            and isinstance(layer, nn.Conv2d)
            and layer.weight[0].numel() >= _FAN_IN
        )
        self.t: dict[str, Tensor | None] = {}
        self._cache: dict[tuple[int, ...], Any] = {}
        self._transposed: dict[str, tuple[str, Tensor, Any]] = {}

    @property
    def needs_output(self) -> bool:
        """Whether :meth:`relevance` reads the layer's (merged) output ``z``."""
        return self.rule in (EPSILON, ZBOX, GAMMA) or self._zplus_from_output

    @property
    def needs_input(self) -> bool:
        """Whether :meth:`relevance` reads the layer input's values (Flat needs its shape only)."""
        return self.rule != FLAT

    def convert(self, device: torch.device, dtype: torch.dtype) -> None:
        """Derive the rule's tensors for ``device``/``dtype``, as zennit derives them from the model."""

        def moved(v: Tensor | None) -> Tensor | None:
            return None if v is None else v.to(device=device, dtype=dtype)

        bn = None if self.src_bn is None else {k: moved(v) for k, v in self.src_bn.items()}
        w, b = fold_batch_norm(self.src_weight.to(device=device, dtype=dtype), moved(self.src_bias), bn, self.bn_eps)
        t: dict[str, Tensor | None] = {"w": w, "b": b}
        if self.rule in (ZPLUS, ALPHA_BETA, ZBOX):
            wp, wn = w.clamp(min=0.0), w.clamp(max=0.0)
            t["wp"], t["bp"] = wp, _clamp(b, min=0.0)
            t["wn"], t["bn"] = wn, _clamp(b, max=0.0)
            if self.rule == ZPLUS:
                bias_p = t["bp"] if t["bp"] is not None else w.new_zeros(w.shape[0])
                if self.nonneg:
                    # z+ >= 0: zennit's stabiliser adds eps, which the bias can carry
                    t["bp_eps"] = bias_p + self.stabilizer
                elif self.groups == 1:
                    # one layer call on [a+, a-] with [W+, W-] gives W+ a+ + W- a-, and one
                    # transposed call both W+^T s and W-^T s
                    t["w_pn"] = torch.cat([wp, wn], dim=1)
                if self._zplus_from_output:
                    # W+ a+ + W- a- = (W a + |W| |a|) / 2, and W a + b is the layer's output
                    t["w_abs_half"] = 0.5 * w.abs()
                    t["b_half_eps"] = bias_p - (0.0 if b is None else 0.5 * b) + self.stabilizer
        elif self.rule == GAMMA:
            # zennit's GammaMod: param + gamma * param.clamp(...)
            t["w1"] = w + self.gamma * w.clamp(min=0.0)
            t["b1"] = None if b is None else b + self.gamma * b.clamp(min=0.0)
            t["w2"] = w + self.gamma * w.clamp(max=0.0)
            t["b3"] = None if b is None else b + self.gamma * b.clamp(max=0.0)
        self.t = t
        self._cache.clear()
        self._transposed.clear()

    # -- geometry ---------------------------------------------------------------------
    def _lin(
        self, x: Tensor, w: Tensor | None, b: Tensor | None, groups: int | None = None, role: str | None = None
    ) -> Tensor:
        """The layer with weight ``w`` and bias ``b`` applied to ``x``; with ``role``, a 1x1
        convolution writes into that workspace buffer (so the result is scratch)."""
        assert w is not None
        if self.pointwise and _as_matmul(x.shape[1], x.shape[0] * w.shape[0] * x.shape[2] * x.shape[3], x):
            n, c, h, wd = x.shape
            y = self._matmul(w.reshape(w.shape[0], c), x.reshape(n, c, h * wd), role)
            if b is not None:
                y.add_(b.reshape(-1, 1))
            return y.view(n, -1, h, wd)
        if self.is_conv:
            g = self.groups if groups is None else groups
            return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, g)
        return F.linear(x, w, b)

    def _matmul(self, w: Tensor, x: Tensor, role: str | None) -> Tensor:
        if role is None:
            return torch.matmul(w, x)
        return torch.matmul(w, x, out=self.ws.take(role, (x.shape[0], w.shape[0], x.shape[2]), x))

    def _lin_t(self, s: Tensor, key: str, in_shape: torch.Size, role: str | None = None) -> Tensor:
        """Transpose of :meth:`_lin` with weight ``self.t[key]`` (without bias) applied to ``s``,
        shaped like the input (``role``: see :meth:`_lin`)."""
        w = self.t[key]
        assert w is not None
        if not self.is_conv:
            return s.matmul(w)
        if self.pointwise and _as_matmul(s.shape[1], math.prod(in_shape), s):
            n = s.shape[0]
            return self._matmul(w.reshape(w.shape[0], -1).t(), s.reshape(n, s.shape[1], -1), role).view(in_shape)
        plan = self._plan(key)
        if plan[0] == "conv":
            # oneDNN's forward convolution is faster on CPU than its transposed one
            # (up to 3x for 1x1 kernels); same sums, in another order
            _, wf, padding = plan
            return F.conv2d(s, wf, None, 1, padding, self.dilation, self.groups)
        if plan[0] == "polyphase":
            return self._polyphase_t(s, [plan[2]], in_shape, s.new_ones(()).expand(in_shape))
        if plan[0] == "strided_1x1":
            # a strided 1x1 convolution reads every stride-th pixel: its transpose is a 1x1
            # convolution written into those pixels, the others get nothing
            _, wf, _ = plan
            y = F.conv2d(s, wf, None, 1, 0, 1, self.groups)
            out = y.new_zeros(in_shape)
            sh, sw = self.stride
            out[:, :, : y.shape[2] * sh : sh, : y.shape[3] * sw : sw] = y
            return out
        return self._conv_t(s, w, in_shape, self.groups)

    def _plan(self, key: str) -> tuple[str, Tensor, Any]:
        plan = self._transposed.get(key)
        if plan is None:
            w = self.t[key]
            assert w is not None
            plan = self._transposed[key] = _transpose_plan(
                w, self.groups, self.stride, self.padding, self.dilation, self.kernel_size
            )
        return plan

    def _times_input(self, s: Tensor, a: Tensor, shape: torch.Size, key: str, neg_key: str | None = None) -> Tensor:
        """``a * (W^T s)`` for the weight ``self.t[key]``; with ``neg_key``, ``W^T s`` takes that
        weight where ``a <= 0`` (z+'s ``a+ W+^T s + a- W-^T s``).  Always a fresh tensor."""
        if self.is_conv and not self.pointwise and self._plan(key)[0] == "polyphase":
            keys = [key] if neg_key is None else [key, neg_key]
            return self._polyphase_t(s, [self._plan(k)[2] for k in keys], shape, a)
        out = self._lin_t(s, key, shape)
        if neg_key is not None:
            positive = torch.gt(a, 0.0, out=self.ws.take_as("mask", a.shape, torch.bool, a.device))
            out = torch.where(positive, out, self._lin_t(s, neg_key, shape), out=out)
        return out.mul_(a)

    def _polyphase_t(self, s: Tensor, plans: list[Any], in_shape: torch.Size, a: Tensor) -> Tensor:
        """``a`` times the transposed convolution of ``s`` (see :func:`_polyphase`), one plan per
        weight (two: the first where ``a > 0``, the second elsewhere), written phase by phase
        into one fresh tensor, so that no full-size intermediate is made."""
        out = s.new_empty(in_shape)
        for phase_index in range(len(plans[0])):
            parts = []
            for plan in plans:
                taps, pad, _, _ = plan[phase_index]
                parts.append(F.conv2d(s, taps, None, 1, pad, 1, self.groups))
            index: list[slice] = [slice(None), slice(None)]
            crop: list[slice] = [slice(None), slice(None)]
            for dim, r in enumerate(plans[0][phase_index][2]):
                st, p, size = self.stride[dim], self.padding[dim], in_shape[2 + dim]
                q_first = -((r - p) // st)  # smallest q with q * st - p + r >= 0
                i_first = q_first * st - p + r
                count = max(0, (size - 1 - i_first) // st + 1)
                index.append(slice(i_first, i_first + (count - 1) * st + 1, st))
                crop.append(slice(q_first, q_first + count))
            target = out[tuple(index)]
            if not target.numel():
                continue
            got = [part[tuple(crop)] for part in parts]
            if got[0].shape != target.shape:
                # rows past the end of the phase's output meet no entry of s (output padding)
                pad = (0, target.shape[3] - got[0].shape[3], 0, target.shape[2] - got[0].shape[2])
                got = [F.pad(g, pad) for g in got]
            a_phase = a[tuple(index)]
            if len(got) == 1:
                torch.mul(got[0], a_phase, out=target)
            else:
                torch.where(a_phase > 0.0, got[0], got[1], out=target).mul_(a_phase)
        return out

    def _conv_t(self, s: Tensor, w: Tensor, in_shape: torch.Size, groups: int) -> Tensor:
        """``conv_transpose2d`` with the output padding that gives ``in_shape``."""
        out_pad = []
        for dim in (0, 1):
            covered = (
                (s.shape[-2 + dim] - 1) * self.stride[dim]
                - 2 * self.padding[dim]
                + self.dilation[dim] * (self.kernel_size[dim] - 1)
                + 1
            )
            out_pad.append(in_shape[-2 + dim] - covered)
        return F.conv_transpose2d(s, w, None, self.stride, self.padding, tuple(out_pad), groups, self.dilation)

    # -- rules --------------------------------------------------------------------------
    def relevance(self, g: Tensor, a: Tensor | None, z: Tensor | None, in_shape: torch.Size) -> Tensor:
        """Relevance at the layer input from relevance ``g`` at its output (``g`` may be overwritten).

        ``a`` is the layer input (None for Flat), ``z`` the (merged) layer output where
        :attr:`needs_output`, ``in_shape`` the input's shape.
        """
        kernel: Any = getattr(self, "_" + self.rule)
        return kernel(g, a, z, in_shape)

    def _epsilon(self, g: Tensor, a: Tensor, z: Tensor, shape: torch.Size) -> Tensor:
        s = g.div_(stabilize(z, self.epsilon))
        return self._times_input(s, a, shape, "w")

    def _zplus(self, g: Tensor, a: Tensor, z: Tensor | None, shape: torch.Size) -> Tensor:
        t = self.t
        if self.nonneg:
            s = g.div_(self._lin(a, t["wp"], t["bp_eps"], role="denominator"))
            return self._times_input(s, a, shape, "wp")
        ws = self.ws
        if self._zplus_from_output:
            # zennit's W+ a+ + W- a- + b+ from the layer's output z = W a + b and one layer
            # call on |a|; it is >= 0 but for rounding, so the stabiliser is "+ eps" after a
            # clamp at 0
            assert z is not None
            abs_a = torch.abs(a, out=ws.take("input", a.shape, a))
            d = self._lin(abs_a, t["w_abs_half"], t["b_half_eps"], role="denominator")
            d = d.add_(z, alpha=0.5).clamp_(min=self.stabilizer)
        else:
            width = a.shape[1]
            if "w_pn" in t:
                # [a+, a-] written straight into one buffer instead of two clamps and a cat
                apn = ws.take("input", (a.shape[0], 2 * width) + tuple(a.shape[2:]), a)
                torch.clamp(a, min=0.0, out=apn[:, :width])
                torch.clamp(a, max=0.0, out=apn[:, width:])
                d = stabilize_(self._lin(apn, t["w_pn"], t["bp"], role="denominator"), self.stabilizer)
            else:
                ap = torch.clamp(a, min=0.0, out=ws.take("input", a.shape, a))
                d = self._lin(ap, t["wp"], t["bp"])
                an = torch.clamp(a, max=0.0, out=ws.take("input", a.shape, a))
                d = stabilize_(d.add_(self._lin(an, t["wn"], None)), self.stabilizer)
        s = g.div_(d)
        del d
        # a+ * (W+^T s) + a- * (W-^T s), choosing the term by the sign of a
        if "w_pn" in t:
            width = shape[1]
            positive = torch.gt(a, 0.0, out=ws.take_as("mask", a.shape, torch.bool, a.device))
            back = self._lin_t(s, "w_pn", torch.Size((shape[0], 2 * width) + tuple(shape[2:])), role="transposed")
            return torch.where(positive, back[:, :width], back[:, width:]).mul_(a)
        return self._times_input(s, a, shape, "wp", "wn")

    def _gamma(self, g: Tensor, a: Tensor, z: Tensor, shape: torch.Size) -> Tensor:
        t = self.t
        if self.nonneg:
            # the terms of zennit's rule built from a- are exact zeros
            s_pos = (z > 0.0) * g / stabilize_(self._lin(a, t["w1"], t["b1"]), self.stabilizer)
            s_neg = g.mul_(z < 0.0).div_(stabilize_(self._lin(a, t["w2"], t["b3"]), self.stabilizer))
            return self._lin_t(s_pos, "w1", shape).add_(self._lin_t(s_neg, "w2", shape)).mul_(a)
        ap, an = a.clamp(min=0.0), a.clamp(max=0.0)
        d_pos = stabilize_(self._lin(ap, t["w1"], t["b1"]).add_(self._lin(an, t["w2"], None)), self.stabilizer)
        d_neg = stabilize_(self._lin(ap, t["w2"], t["b3"]).add_(self._lin(an, t["w1"], None)), self.stabilizer)
        s_pos = (z > 0.0) * g / d_pos
        s_neg = g.mul_(z < 0.0).div_(d_neg)
        del d_pos, d_neg
        out = self._lin_t(s_pos, "w1", shape).mul_(ap)
        out.add_(self._lin_t(s_pos, "w2", shape).mul_(an))
        out.add_(self._lin_t(s_neg, "w2", shape).mul_(ap))
        return out.add_(self._lin_t(s_neg, "w1", shape).mul_(an))

    def _alpha_beta(self, g: Tensor, a: Tensor, z: Tensor | None, shape: torch.Size) -> Tensor:
        alpha, beta = 2.0, 1.0
        t = self.t
        if self.nonneg:
            d_pos = self._lin(a, t["wp"], t["bp"]).add_(self.stabilizer)
            d_neg = stabilize_(self._lin(a, t["wn"], t["bn"]), self.stabilizer)
            s_pos = g / d_pos
            s_neg = g.div_(d_neg)
            del d_pos, d_neg
            pos = self._lin_t(s_pos, "wp", shape).mul_(a)
            neg = self._lin_t(s_neg, "wn", shape).mul_(a)
            return pos.mul_(alpha).sub_(neg, alpha=beta)
        ap, an = a.clamp(min=0.0), a.clamp(max=0.0)
        s_pos = g / stabilize_(self._lin(ap, t["wp"], t["bp"]).add_(self._lin(an, t["wn"], None)), self.stabilizer)
        s_neg = g / stabilize_(self._lin(ap, t["wn"], t["bn"]).add_(self._lin(an, t["wp"], None)), self.stabilizer)
        pos = self._lin_t(s_pos, "wp", shape).mul_(ap).add_(self._lin_t(s_pos, "wn", shape).mul_(an))
        neg = self._lin_t(s_neg, "wn", shape).mul_(ap).add_(self._lin_t(s_neg, "wp", shape).mul_(an))
        return pos.mul_(alpha).sub_(neg, alpha=beta)

    def _flat(self, g: Tensor, a: Tensor | None, z: Tensor | None, shape: torch.Size) -> Tensor:
        # Flat: all-ones weights, no bias, all-ones input; the denominator depends on the
        # input shape only, and every input channel of a group receives the same value.
        key = tuple(shape[1:])
        d = self._cache.get(key)
        groups = self.groups
        if d is None:
            if self.is_conv:
                # one output channel per group: every output channel of a group has the same count
                ones_in = g.new_ones((1, shape[1]) + tuple(shape[2:]))
                ones_w = g.new_ones((groups, shape[1] // groups) + self.kernel_size)
                d = stabilize(self._lin(ones_in, ones_w, None), self.stabilizer).unsqueeze(2)
            else:
                d = stabilize(g.new_ones(1, shape[-1]).sum(-1, keepdim=True), self.stabilizer)
            self._cache[key] = d
        if not self.is_conv:
            return g.div_(d).sum(-1, keepdim=True).expand(shape).contiguous()
        n = g.shape[0]
        per_group = g.reshape(n, groups, -1, *g.shape[2:]).div_(d).sum(2)
        box = g.new_ones((groups, 1) + self.kernel_size)
        r = self._conv_t(per_group, box, torch.Size((n, groups) + tuple(shape[2:])), groups)
        width = shape[1] // groups
        return r.unsqueeze(2).expand(n, groups, width, *r.shape[2:]).reshape(shape)

    def _bounds(self, shape: torch.Size, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        key = tuple(shape[1:])
        hit = self._cache.get(key)
        if hit is None:
            t = self.t
            target = (1,) + tuple(shape[1:])
            low = torch.as_tensor(self.low).to(like).expand(target)
            high = torch.as_tensor(self.high).to(like).expand(target)
            offset = self._lin(low, t["wp"], t["bp"]) + self._lin(high, t["wn"], t["bn"])
            hit = self._cache[key] = (low, high, offset)
        low, high, offset = hit
        return low, high, offset

    def _zbox(self, g: Tensor, x: Tensor, z: Tensor, shape: torch.Size) -> Tensor:
        low, high, offset = self._bounds(shape, x)
        s = g.div_(stabilize_(z - offset, self.stabilizer))
        out = self._lin_t(s, "w", shape).mul_(x)
        out.sub_(self._lin_t(s, "wp", shape).mul_(low))
        return out.sub_(self._lin_t(s, "wn", shape).mul_(high))
