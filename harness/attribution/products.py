"""The products a layer's LRP rule is built from: the layer applied with modified
weights, and its transpose, computed the fastest way measured on CPU.

* A 1x1 convolution is a matrix product per image; where that measured faster than
  oneDNN's convolution it runs as one and can write scratch results into a reused
  buffer (:mod:`harness.attribution.workspace`).
* A transposed convolution runs as a forward convolution with the flipped kernel
  (stride 1), a 1x1 convolution scattered into every stride-th pixel (strided 1x1), one
  stride-1 convolution per phase for a strided grouped (depthwise) convolution, and
  ``conv_transpose2d`` otherwise: oneDNN's forward convolutions are the faster ones.

The sums are the same as the plain layer's, in another order (float rounding differs).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.attribution.workspace import Workspace

__all__ = ["LayerProducts", "conv_padding"]


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
) -> list[tuple[Tensor, tuple[int, int], tuple[int, int]]]:
    """A strided transposed convolution as ``stride_y * stride_x`` stride-1 convolutions.

    Output row ``i`` of a transposed convolution (stride ``st``, padding ``p``, kernel ``k``)
    only meets the taps ``t = r + st * m`` of its phase ``r = (i + p) mod st``:
    ``out[i] = sum_m s[q - m] w[r + st m]`` with ``q = (i + p - r) / st``, a stride-1
    correlation of ``s`` with the phase's taps reversed.  Each phase fills every
    ``st``-th output row and column.  For grouped (depthwise) convolutions PyTorch's CPU
    transposed convolution runs group by group, 10-20x slower than these forward calls.

    ``swapped``: the weight with in/out channels of each group swapped (not flipped).
    Returns per phase: the reversed taps, the symmetric padding and the phase ``r`` per
    dimension.  The caller asks for it only where the kernel is at least the stride, so
    every phase has taps.
    """
    phases = []
    for ry in range(stride[0]):
        for rx in range(stride[1]):
            taps = swapped[:, :, ry :: stride[0], rx :: stride[1]]
            pad = (taps.shape[2] - 1, taps.shape[3] - 1)
            phases.append((taps.flip(-1, -2).contiguous(), pad, (ry, rx)))
    return phases


class LayerProducts:
    """How one Conv2d or Linear layer's products are computed.

    ``weights`` maps names to the rule's prepared weights (assigned by the rule, see
    :meth:`reset`); :meth:`transpose` takes a name so that the plan of each weight's
    transpose is made once.  ``ws`` is the workspace shared by an engine's layers.
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, workspace: Workspace | None = None) -> None:
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
        self.ws = workspace if workspace is not None else Workspace()
        self.t: dict[str, Tensor | None] = {}
        self._transposed: dict[str, tuple[str, Tensor, Any]] = {}

    def reset(self, weights: dict[str, Tensor | None]) -> None:
        """Use ``weights`` from now on (after a change of device or dtype)."""
        self.t = weights
        self._transposed.clear()

    def forward(
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

    def transpose(self, s: Tensor, key: str, in_shape: torch.Size, role: str | None = None) -> Tensor:
        """Transpose of :meth:`forward` with weight ``self.t[key]`` (without bias) applied to ``s``,
        shaped like the input (``role``: see :meth:`forward`)."""
        w = self.t[key]
        assert w is not None
        if not self.is_conv:
            return s.matmul(w)
        if self.pointwise and _as_matmul(s.shape[1], math.prod(in_shape), s):
            n = s.shape[0]
            return self._matmul(w.reshape(w.shape[0], -1).t(), s.reshape(n, s.shape[1], -1), role).view(in_shape)
        plan = self.plan(key)
        if plan[0] == "conv":
            # oneDNN's forward convolution is faster on CPU than its transposed one
            # (up to 3x for 1x1 kernels); same sums, in another order
            _, wf, padding = plan
            return F.conv2d(s, wf, None, 1, padding, self.dilation, self.groups)
        if plan[0] == "polyphase":
            return self._polyphase_t(s, [plan[2]], in_shape, None)
        if plan[0] == "strided_1x1":
            # a strided 1x1 convolution reads every stride-th pixel: its transpose is a 1x1
            # convolution written into those pixels, the others get nothing
            _, wf, _ = plan
            y = F.conv2d(s, wf, None, 1, 0, 1, self.groups)
            out = y.new_zeros(in_shape)
            sh, sw = self.stride
            out[:, :, : y.shape[2] * sh : sh, : y.shape[3] * sw : sw] = y
            return out
        return self.conv_transpose(s, w, in_shape, self.groups)

    def plan(self, key: str) -> tuple[str, Tensor, Any]:
        plan = self._transposed.get(key)
        if plan is None:
            w = self.t[key]
            assert w is not None
            plan = self._transposed[key] = _transpose_plan(
                w, self.groups, self.stride, self.padding, self.dilation, self.kernel_size
            )
        return plan

    def times_input(self, s: Tensor, a: Tensor, shape: torch.Size, key: str, neg_key: str | None = None) -> Tensor:
        """``a * (W^T s)`` for the weight ``self.t[key]``; with ``neg_key``, ``W^T s`` takes that
        weight where ``a <= 0`` (z+'s ``a+ W+^T s + a- W-^T s``).  Always a fresh tensor."""
        if self.is_conv and not self.pointwise and self.plan(key)[0] == "polyphase":
            keys = [key] if neg_key is None else [key, neg_key]
            return self._polyphase_t(s, [self.plan(k)[2] for k in keys], shape, a)
        out = self.transpose(s, key, shape)
        if neg_key is not None:
            positive = torch.gt(a, 0.0, out=self.ws.take_as("mask", a.shape, torch.bool, a.device))
            out = torch.where(positive, out, self.transpose(s, neg_key, shape), out=out)
        return out.mul_(a)

    def _polyphase_t(self, s: Tensor, plans: list[Any], in_shape: torch.Size, a: Tensor | None) -> Tensor:
        """``a`` times the transposed convolution of ``s`` (see :func:`_polyphase`; without ``a``
        the transpose itself), one plan per weight (two: the first where ``a > 0``, the second
        elsewhere), written phase by phase into one fresh tensor, so that no full-size
        intermediate is made."""
        out = s.new_empty(in_shape)
        for phase_index in range(len(plans[0])):
            parts = []
            for plan in plans:
                taps, pad, _ = plan[phase_index]
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
            if a is None:
                target.copy_(got[0])
                continue
            a_phase = a[tuple(index)]
            if len(got) == 1:
                torch.mul(got[0], a_phase, out=target)
            else:
                torch.where(a_phase > 0.0, got[0], got[1], out=target).mul_(a_phase)
        return out

    def conv_transpose(self, s: Tensor, w: Tensor, in_shape: torch.Size, groups: int) -> Tensor:
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
