"""Progress lines on stderr: ``scanned 128/1000 images (54 img/s)``."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts scanned images and prints a line at most every ``every`` seconds (and at the end)."""

    def __init__(self, total: int, done: int = 0, every: float = 2.0, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = done
        self.new = 0
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self._last = 0.0

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.new / elapsed if elapsed > 0 else 0.0

    def update(self, count: int) -> None:
        self.done += count
        self.new += count
        now = time.perf_counter()
        if now - self._last >= self.every or self.done >= self.total:
            self._last = now
            print(f"scanned {self.done}/{self.total} images ({self.rate:.0f} img/s)", file=self.stream, flush=True)
