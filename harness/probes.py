"""Probe models whose behaviour is known by construction, for testing the harness itself
(and for a user's sanity check of a new set-up): a "classifier" that looks only at one
rectangle of the image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def region_probe(
    size: Sequence[int] = (32, 32),
    region: Sequence[int] = (8, 8, 24, 24),
    threshold: float = 0.5,
    gain: float = 10.0,
    other_region: Sequence[int] | None = None,
    other_threshold: float = 0.5,
) -> nn.Sequential:
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
        # Stacking the input alone and taking it back out (the identity): the gradient
        # routes relevance unchanged, so zennit is exact, but the fast engine has no rule
        # for torch.stack.
        return self.inner(torch.stack([x])[0])


def wrapped_region_probe(**kwargs: object) -> nn.Module:
    """:func:`region_probe` inside a custom container whose forward stacks the input and
    takes it back out, which changes nothing: zennit explains it, the fast LRP engine (no
    rule for ``torch.stack``) does not, so the harness falls back."""
    return _Wrapper(region_probe(**kwargs))  # type: ignore[arg-type]


def nan_bias_probe(**kwargs: Any) -> nn.Sequential:
    """:func:`region_probe` whose class-0 bias is NaN: a broken model whose every output
    (and so every explanation) is NaN, for the harness's reliability tests."""
    probe = region_probe(**kwargs)
    head = probe[3]
    assert isinstance(head, nn.Linear)
    with torch.no_grad():
        head.bias[0] = float("nan")
    return probe
