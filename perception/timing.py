"""Per-stage wall-clock timing that the pipeline and the benchmark share."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class Stopwatch:
    """Accumulates wall time per named stage, in milliseconds.

    On CUDA the device is synchronized at both ends of a stage, because kernel launches are
    asynchronous and would otherwise be charged to whichever stage synchronizes next.
    """

    def __init__(self, cuda_sync: bool = False) -> None:
        self.cuda_sync = cuda_sync and torch.cuda.is_available()
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body of a ``with`` block under ``name`` (repeated stages add up)."""
        if self.cuda_sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda_sync:
                torch.cuda.synchronize()
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3


@contextmanager
def maybe_stage(watch: Stopwatch | None, name: str) -> Iterator[None]:
    """``watch.stage(name)`` when a stopwatch is given, else nothing."""
    if watch is None:
        yield
    else:
        with watch.stage(name):
            yield
