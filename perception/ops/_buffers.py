"""Output buffers for kernels that write only some rows and need zeros elsewhere."""

from __future__ import annotations

import numpy as np


def zeroed_output(out: np.ndarray | None, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zero-filled C-contiguous array of ``shape`` and ``dtype``: ``out`` cleared, or new.

    A new one comes from ``np.zeros`` (calloc: fresh pages arrive zeroed from the OS, so no
    separate zeroing pass); reusing ``out`` across frames avoids those page faults.

    Raises:
        ValueError: when ``out`` has another shape or dtype or is not C-contiguous.

    """
    dtype = np.dtype(dtype)
    if out is None:
        return np.zeros(shape, dtype=dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous {dtype} {shape}, got {out.dtype} {out.shape}")
    out.fill(0)
    return out
