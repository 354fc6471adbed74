"""Sweep interleaving before voxelization: a capped pillar keeps returns of every sweep; the
Numba kernel equals the numpy reference bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from perception.backbones.lidar_inputs import voxelize_points
from perception.config import preset
from perception.ops.interleave import interleave_sweeps, interleave_sweeps_reference


def _sweeps(counts: list[int], seed: int = 0) -> np.ndarray:
    """Sweep-major points: run k has counts[k] rows with time lag 0.05*k, x = row id."""
    rows = []
    rid = 0
    for k, n in enumerate(counts):
        for _ in range(n):
            rows.append([rid, 0.0, 0.0, 1.0, 0.05 * k])
            rid += 1
    return np.asarray(rows, np.float32)


def test_round_robin_order_known_answer():
    pts = _sweeps([3, 1, 2])  # ids: sweep0 = 0,1,2; sweep1 = 3; sweep2 = 4,5
    out = interleave_sweeps(pts)
    assert out[:, 0].tolist() == [0, 3, 4, 1, 5, 2]
    # Same rows, nothing lost or duplicated, and the rows travel whole.
    assert sorted(out[:, 0].tolist()) == list(range(6))
    np.testing.assert_array_equal(out[:, 4], pts[out[:, 0].astype(int), 4])


@pytest.mark.parametrize("counts", [[5], [1, 1, 1], [7, 0, 3, 12, 1], [4000, 3500, 5000]])
def test_kernel_equals_reference(counts):
    rng = np.random.default_rng(len(counts))
    pts = _sweeps([c for c in counts if c])
    pts[:, 1:4] = rng.normal(size=(len(pts), 3)).astype(np.float32)
    out = interleave_sweeps(pts)
    np.testing.assert_array_equal(out, interleave_sweeps_reference(pts))
    assert out.dtype == np.float32 and out.shape == pts.shape


def test_many_sweeps_order_is_a_permutation():
    rng = np.random.default_rng(3)
    lags = np.repeat(np.arange(10) * 0.05, rng.integers(18000, 22000, 10)).astype(np.float32)
    pts = np.c_[rng.normal(size=(len(lags), 4)), lags].astype(np.float32)
    out = interleave_sweeps(pts)
    np.testing.assert_array_equal(out, interleave_sweeps_reference(pts))
    # The first 10 rows are the first point of each sweep, newest first.
    np.testing.assert_allclose(out[:10, 4], np.arange(10) * 0.05, atol=1e-7)
    assert np.array_equal(np.sort(out[:, 0]), np.sort(pts[:, 0]))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="interleave_sweeps"):
        interleave_sweeps(np.zeros((4, 3), np.float32))


def test_identity_cases():
    one = _sweeps([4])
    np.testing.assert_array_equal(interleave_sweeps(one), one)
    per_point = one.copy()
    per_point[:, 4] = np.arange(4) * 0.01  # continuous timestamps: no runs to interleave
    np.testing.assert_array_equal(interleave_sweeps(per_point), per_point)
    assert interleave_sweeps(one[:0]).shape == (0, 5)


def test_capped_pillar_keeps_older_sweeps():
    # One pillar with 20 current-sweep ground returns, then 10 older sweeps of 3 returns of a
    # car that has since moved on: the cap of 12 used to keep only the current sweep.
    cfg = preset("tiny", "lidar_only")
    cfg = replace(cfg, lidar=replace(cfg.lidar, max_points_per_pillar=12))
    rng = np.random.default_rng(0)
    blocks = []
    for k in range(10):
        n = 20 if k == 0 else 3
        xyz = rng.uniform([10.45, 10.45, -1.8], [10.75, 10.75, 0.0], (n, 3))
        blocks.append(np.c_[xyz, np.ones(n), np.full(n, 0.05 * k)])
    pts = np.concatenate(blocks).astype(np.float32)
    feats, _, num = voxelize_points(pts, cfg)
    assert len(num) == 1 and num[0] == 12
    lags = np.unique(np.round(feats[0, :12, 4], 3))
    assert len(lags) >= 9, lags  # returns from (nearly) every sweep, not just lag 0
