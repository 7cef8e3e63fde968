"""Scratch buffers that the relevance pass reuses from layer to layer and from batch to batch.

PyTorch's CPU allocator hands every tensor straight to the C library, which serves large
blocks (above a few tens of MB, or whatever it decided to trim) with fresh pages that the
kernel must fault in and zero on first touch.  On the machines measured (virtual, 2 cores)
that costs about 0.3 ms per MB: a 38 MB temporary of a MobileNet's first blocks at batch 8
costs 11 ms before any arithmetic, more than the convolution that fills it.  The relevance
pass makes several such temporaries per layer (|a|, masks, denominators, both halves of a
z+ transpose); a :class:`Workspace` keeps one flat buffer per role and hands out views of
it, so after the first batch they cost nothing to obtain.  (CUDA has its own caching
allocator; there the workspace merely saves allocator calls.)

A view is valid until the next :meth:`Workspace.take` of the same role: roles are chosen
so that no two live temporaries share one, and nothing returned to the caller of a rule
lives in the workspace.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["Workspace"]


class Workspace:
    """Named flat buffers that grow to the largest request and are then reused."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def take(self, role: str, shape: tuple[int, ...] | torch.Size, like: Tensor) -> Tensor:
        """An uninitialised contiguous tensor of ``shape`` with ``like``'s dtype and device,
        backed by the buffer of ``role``."""
        return self.take_as(role, shape, like.dtype, like.device)

    def take_as(
        self, role: str, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """:meth:`take` with an explicit dtype and device (e.g. a boolean mask)."""
        n = math.prod(shape)
        buf = self._buffers.get(role)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = self._buffers[role] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)

    def clear(self) -> None:
        """Release every buffer (they are rebuilt on demand)."""
        self._buffers.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())
