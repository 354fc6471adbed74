"""Thread control survives the Numba kernels' parallel regions."""

import numpy as np
import pytest
import torch

from perception.ops.voxelize import hard_voxelize
from perception.threads import set_cpu_threads


def test_torch_thread_count_holds_after_a_parallel_kernel():
    before = torch.get_num_threads()
    try:
        set_cpu_threads(1)
        pts = np.random.default_rng(0).uniform(-10, 10, (5000, 4)).astype(np.float32)
        hard_voxelize(pts, (0.5, 0.5, 0.5), (-10, -10, -10, 10, 10, 10), 5, 1000, parallel=True)
        assert torch.get_num_threads() == 1
    finally:
        set_cpu_threads(before)


def test_zero_threads_is_refused():
    with pytest.raises(ValueError, match="at least one thread"):
        set_cpu_threads(0)
