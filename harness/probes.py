"""Probe models whose behaviour is known by construction, for testing the harness itself
(and for a user's sanity check of a new set-up): a "classifier" that looks only at one
rectangle of the image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def region_probe(size: Sequence[int] = (32, 32), region: Sequence[int] = (8, 8, 24, 24),
                 threshold: float = 0.5, gain: float = 10.0, other_region: Sequence[int] | None = None,
                 other_threshold: float = 0.5) -> nn.Sequential:
    """Two-class network that predicts class 0 when the mean brightness in ``region``
    exceeds ``threshold``: class 0's logit is ``gain * mean brightness in region`` and
    class 1 ("other") has the constant logit ``gain * threshold``, or, with
    ``other_region``, ``gain * (mean in other_region - other_threshold + threshold)``.
    (Only logit differences matter to the probabilities: these equal
    ``gain * (mean - threshold)`` against 0.)

    Built from layers LRP understands (1×1 conv → ReLU → Flatten → Linear) so that all
    positive relevance of class 0 lands inside ``region`` and nowhere else. Class 0 has
    no bias, so its LRP relevance sums exactly to its logit (conservation 1), as a
    healthy explanation should.

    Parameters
    ----------
    size
        Input (height, width); inputs are expected in [0, 1] (mean 0, std 1).
    region
        ``[x0, y0, x1, y1]`` in input pixels (x1, y1 exclusive).
    threshold
        Mean brightness (0..1) at which the two logits tie.
    gain
        Slope of the logits; larger makes the probabilities more decisive.
    other_region, other_threshold
        Optional rectangle and threshold of class 1 (default: constant logit 0).
    """
    height, width = int(size[0]), int(size[1])

    def averaging(rect: Sequence[int]) -> torch.Tensor:
        x0, y0, x1, y1 = (int(v) for v in rect)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"region {list(rect)} does not fit a {width}x{height} input")
        weights = torch.zeros(height, width)
        weights[y0:y1, x0:x1] = gain / float((y1 - y0) * (x1 - x0))
        return weights.flatten()

    grey = nn.Conv2d(3, 1, kernel_size=1, bias=False)
    head = nn.Linear(height * width, 2)
    with torch.no_grad():
        grey.weight.fill_(1.0 / 3.0)
        head.weight.zero_()
        head.weight[0] = averaging(region)
        head.bias.copy_(torch.tensor([0.0, gain * threshold]))
        if other_region is not None:
            head.weight[1] = averaging(other_region)
            head.bias[1] = gain * (threshold - other_threshold)
    return nn.Sequential(grey, nn.ReLU(), nn.Flatten(), head)


class _Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def wrapped_region_probe(**kwargs: object) -> nn.Module:
    """:func:`region_probe` inside a custom container: zennit explains it, the fast LRP
    engine (plain ``nn.Sequential`` chains only) does not, so the harness falls back."""
    return _Wrapper(region_probe(**kwargs))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- faults
# Probes that misbehave on purpose, for the harness's reliability tests: each fault
# strikes only images that carry a pure red pixel (the "trigger"), so one batch holds
# faulty and healthy images and the test can check that only the former error.

FAULTS = ("nan_logits", "inf_logits", "zero_logits", "tie", "raise", "nan_relevance", "inf_relevance",
          "zero_relevance", "blown_relevance", "nan_bias")

_RELEVANCE_FACTORS = {"nan_relevance": float("nan"), "inf_relevance": float("inf"), "zero_relevance": 0.0,
                      "blown_relevance": 100.0}


def triggered(x: torch.Tensor) -> torch.Tensor:
    """Rows of a (N, 3, H, W) batch in [0, 1] that contain a pure red pixel."""
    red = (x[:, 0] > 0.99) & (x[:, 1] < 0.01) & (x[:, 2] < 0.01)
    return red.flatten(1).any(dim=1)


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the triggered rows' gradient (which
    LRP backends use to carry relevance) by a factor."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.rows = triggered(x)
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        scale = torch.where(ctx.rows, torch.tensor(ctx.factor, dtype=grad.dtype), torch.tensor(1.0, dtype=grad.dtype))
        return grad * scale.view(-1, 1, 1, 1), None


class FaultyProbe(nn.Module):
    """:func:`region_probe` with one fault (see :data:`FAULTS`) on triggered images."""

    def __init__(self, fault: str, **kwargs: Any) -> None:
        super().__init__()
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.fault = fault
        self.inner = region_probe(**kwargs)
        head = self.inner[3]
        if fault == "nan_bias" and isinstance(head, nn.Linear):
            with torch.no_grad():
                head.bias[0] = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = triggered(x)
        # A data-dependent branch on purpose: graph tracers cannot follow it, so LRP runs
        # through autograd (zennit), where the gradient fault takes effect.
        if not bool(rows.any()):
            return self.inner(x)
        if self.fault == "raise":
            raise RuntimeError("the probe refuses images with a red pixel")
        if self.fault in _RELEVANCE_FACTORS:
            x = _ScaleGradient.apply(x, _RELEVANCE_FACTORS[self.fault])
        out = self.inner(x)
        hit = rows.view(-1, 1)
        if self.fault == "nan_logits":
            out = torch.where(hit & (torch.arange(out.shape[1]) == 0), torch.full_like(out, float("nan")), out)
        elif self.fault == "inf_logits":
            out = torch.where(hit, torch.full_like(out, float("inf")), out)
        elif self.fault == "zero_logits":
            out = torch.where(hit, torch.zeros_like(out), out)
        elif self.fault == "tie":
            out = torch.where(hit, out[:, :1].expand_as(out), out)
        return out


def faulty_probe(fault: str, **kwargs: Any) -> nn.Module:
    """Registry factory of :class:`FaultyProbe` (``args: {fault: nan_logits, ...}``)."""
    return FaultyProbe(fault, **kwargs)
