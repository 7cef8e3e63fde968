"""LRP rule kernels for Conv2d/Linear layers, numerically equal to zennit's rules.

zennit computes a rule by re-running the layer with modified parameters under autograd
and differentiating.  Here each rule is written out directly: the modified weights are
prepared once per device/dtype, the rule's denominators are recomputed from the kept
layer input right before they are needed, and the transposed layer is applied under
``torch.no_grad()`` with in-place divisions.  How the layer and its transpose are
computed (matrix products, flipped or phase-split convolutions, reused buffers) is
:mod:`harness.attribution.products`.

The formulas follow zennit 0.5's rules (``Epsilon``, ``ZPlus``, ``Gamma``,
``AlphaBeta``, ``Flat``, ``ZBox``) term by term, including its stabiliser
``t + eps * ((t == 0) + sign(t))``.  When the layer input is known to be non-negative
(statically: it comes out of a ReLU), zennit's negative-input terms are exact zeros and
are skipped, and z+'s stabiliser rides in the bias.  For a signed input, z+ of a dense
convolution with many inputs per output is ``(z + |W| |a|) / 2`` from the layer's own
output ``z``: one layer call instead of two.  Convolutions may be grouped (depthwise), strided, dilated and padded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness.attribution.products import LayerProducts, conv_padding
from harness.attribution.workspace import Workspace

__all__ = [
    "AffineRule", "FLAT", "ZBOX", "ZPLUS", "GAMMA", "ALPHA_BETA", "EPSILON", "conv_padding", "stabilize",
    "fold_batch_norm",
]  # fmt: skip

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


def _clamp(t: Tensor | None, **kwargs: float) -> Tensor | None:
    return None if t is None else t.clamp(**kwargs)


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
    workspace : Workspace, optional
        Scratch buffers shared with the engine's other layers.
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
        workspace: Workspace | None = None,
    ) -> None:
        self.rule = rule
        self.nonneg = nonneg
        self.ops = LayerProducts(layer, workspace)
        self.is_conv, self.groups = self.ops.is_conv, self.ops.groups
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
        self.ops.reset(t)

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
        return self.ops.times_input(s, a, shape, "w")

    def _zplus(self, g: Tensor, a: Tensor, z: Tensor | None, shape: torch.Size) -> Tensor:
        t = self.t
        if self.nonneg:
            s = g.div_(self.ops.forward(a, t["wp"], t["bp_eps"], role="denominator"))
            return self.ops.times_input(s, a, shape, "wp")
        ws = self.ops.ws
        if self._zplus_from_output:
            # zennit's W+ a+ + W- a- + b+ from the layer's output z = W a + b and one layer
            # call on |a|; it is >= 0 but for rounding, so the stabiliser is "+ eps" after a
            # clamp at 0
            assert z is not None
            abs_a = torch.abs(a, out=ws.take("input", a.shape, a))
            d = self.ops.forward(abs_a, t["w_abs_half"], t["b_half_eps"], role="denominator")
            d = d.add_(z, alpha=0.5).clamp_(min=self.stabilizer)
        else:
            width = a.shape[1]
            if "w_pn" in t:
                # [a+, a-] written straight into one buffer instead of two clamps and a cat
                apn = ws.take("input", (a.shape[0], 2 * width) + tuple(a.shape[2:]), a)
                torch.clamp(a, min=0.0, out=apn[:, :width])
                torch.clamp(a, max=0.0, out=apn[:, width:])
                d = stabilize_(self.ops.forward(apn, t["w_pn"], t["bp"], role="denominator"), self.stabilizer)
            else:
                ap = torch.clamp(a, min=0.0, out=ws.take("input", a.shape, a))
                d = self.ops.forward(ap, t["wp"], t["bp"])
                an = torch.clamp(a, max=0.0, out=ws.take("input", a.shape, a))
                d = stabilize_(d.add_(self.ops.forward(an, t["wn"], None)), self.stabilizer)
        s = g.div_(d)
        del d
        # a+ * (W+^T s) + a- * (W-^T s), choosing the term by the sign of a
        if "w_pn" in t:
            width = shape[1]
            positive = torch.gt(a, 0.0, out=ws.take_as("mask", a.shape, torch.bool, a.device))
            back = self.ops.transpose(
                s, "w_pn", torch.Size((shape[0], 2 * width) + tuple(shape[2:])), role="transposed"
            )
            return torch.where(positive, back[:, :width], back[:, width:]).mul_(a)
        return self.ops.times_input(s, a, shape, "wp", "wn")

    def _gamma(self, g: Tensor, a: Tensor, z: Tensor, shape: torch.Size) -> Tensor:
        t = self.t
        if self.nonneg:
            # the terms of zennit's rule built from a- are exact zeros
            s_pos = (z > 0.0) * g / stabilize_(self.ops.forward(a, t["w1"], t["b1"]), self.stabilizer)
            s_neg = g.mul_(z < 0.0).div_(stabilize_(self.ops.forward(a, t["w2"], t["b3"]), self.stabilizer))
            return self.ops.transpose(s_pos, "w1", shape).add_(self.ops.transpose(s_neg, "w2", shape)).mul_(a)
        ap, an = a.clamp(min=0.0), a.clamp(max=0.0)
        d_pos = stabilize_(
            self.ops.forward(ap, t["w1"], t["b1"]).add_(self.ops.forward(an, t["w2"], None)), self.stabilizer
        )
        d_neg = stabilize_(
            self.ops.forward(ap, t["w2"], t["b3"]).add_(self.ops.forward(an, t["w1"], None)), self.stabilizer
        )
        s_pos = (z > 0.0) * g / d_pos
        s_neg = g.mul_(z < 0.0).div_(d_neg)
        del d_pos, d_neg
        out = self.ops.transpose(s_pos, "w1", shape).mul_(ap)
        out.add_(self.ops.transpose(s_pos, "w2", shape).mul_(an))
        out.add_(self.ops.transpose(s_neg, "w2", shape).mul_(ap))
        return out.add_(self.ops.transpose(s_neg, "w1", shape).mul_(an))

    def _alpha_beta(self, g: Tensor, a: Tensor, z: Tensor | None, shape: torch.Size) -> Tensor:
        alpha, beta = 2.0, 1.0
        t = self.t
        if self.nonneg:
            d_pos = self.ops.forward(a, t["wp"], t["bp"]).add_(self.stabilizer)
            d_neg = stabilize_(self.ops.forward(a, t["wn"], t["bn"]), self.stabilizer)
            s_pos = g / d_pos
            s_neg = g.div_(d_neg)
            del d_pos, d_neg
            pos = self.ops.transpose(s_pos, "wp", shape).mul_(a)
            neg = self.ops.transpose(s_neg, "wn", shape).mul_(a)
            return pos.mul_(alpha).sub_(neg, alpha=beta)
        ap, an = a.clamp(min=0.0), a.clamp(max=0.0)
        s_pos = g / stabilize_(
            self.ops.forward(ap, t["wp"], t["bp"]).add_(self.ops.forward(an, t["wn"], None)), self.stabilizer
        )
        s_neg = g / stabilize_(
            self.ops.forward(ap, t["wn"], t["bn"]).add_(self.ops.forward(an, t["wp"], None)), self.stabilizer
        )
        pos = self.ops.transpose(s_pos, "wp", shape).mul_(ap).add_(self.ops.transpose(s_pos, "wn", shape).mul_(an))
        neg = self.ops.transpose(s_neg, "wn", shape).mul_(ap).add_(self.ops.transpose(s_neg, "wp", shape).mul_(an))
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
                ones_w = g.new_ones((groups, shape[1] // groups) + self.ops.kernel_size)
                d = stabilize(self.ops.forward(ones_in, ones_w, None), self.stabilizer).unsqueeze(2)
            else:
                d = stabilize(g.new_ones(1, shape[-1]).sum(-1, keepdim=True), self.stabilizer)
            self._cache[key] = d
        if not self.is_conv:
            return g.div_(d).sum(-1, keepdim=True).expand(shape).contiguous()
        n = g.shape[0]
        per_group = g.reshape(n, groups, -1, *g.shape[2:]).div_(d).sum(2)
        box = g.new_ones((groups, 1) + self.ops.kernel_size)
        r = self.ops.conv_transpose(per_group, box, torch.Size((n, groups) + tuple(shape[2:])), groups)
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
            offset = self.ops.forward(low, t["wp"], t["bp"]) + self.ops.forward(high, t["wn"], t["bn"])
            hit = self._cache[key] = (low, high, offset)
        low, high, offset = hit
        return low, high, offset

    def _zbox(self, g: Tensor, x: Tensor, z: Tensor, shape: torch.Size) -> Tensor:
        low, high, offset = self._bounds(shape, x)
        s = g.div_(stabilize_(z - offset, self.stabilizer))
        out = self.ops.transpose(s, "w", shape).mul_(x)
        out.sub_(self.ops.transpose(s, "wp", shape).mul_(low))
        return out.sub_(self.ops.transpose(s, "wn", shape).mul_(high))
