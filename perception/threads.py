"""One switch for the CPU threads of torch and of the Numba kernels.

Numba's parallel kernels run on the OpenMP threading layer here, the same OpenMP runtime torch
uses; launching a parallel region sets that runtime's thread count to Numba's, which silently
changes ``torch.get_num_threads()`` too. Setting only torch's count (``torch.set_num_threads``)
therefore does not hold after the first parallel kernel: set both.
"""

from __future__ import annotations


def set_cpu_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch and in the Numba kernels (n >= 1)."""
    if n < 1:
        raise ValueError(f"need at least one thread, got {n}")
    import numba
    import torch

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)
