"""``crop_points`` (Numba) against its numpy definition and the grid crop of the LiDAR input."""

from __future__ import annotations

import numpy as np
import pytest

from perception.ops.crop import crop_points, crop_points_reference

LO, HI = (-51.2, -51.2, -5.0), (51.2, 51.2, 3.0)


def _cloud(dtype, n=5000, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-60, 60, (n, 5)).astype(dtype)
    pts[:, 2] = rng.uniform(-6, 4, n)
    # Points exactly on each bound, on the float32-rounded bound and one ulp either side.
    edge = []
    for a in range(3):
        for b in (LO[a], HI[a]):
            bb = np.asarray(b, dtype)
            for v in (bb, np.nextafter(bb, np.inf, dtype=dtype),
                      np.nextafter(bb, -np.inf, dtype=dtype)):
                row = np.zeros(5, dtype)
                row[a] = v
                edge.append(row)
    nan = np.zeros((3, 5), dtype)
    nan[[0, 1, 2], [0, 1, 2]] = np.nan
    return np.concatenate([pts, np.array(edge), nan])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("columns", [None, 4])
def test_kernel_equals_reference(dtype, columns):
    pts = _cloud(dtype)
    got = crop_points(pts, LO, HI, columns)
    ref = crop_points_reference(pts, LO, HI, columns)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == ref.shape and np.array_equal(got, ref)


def test_reference_keeps_lower_bounds_drops_upper_bounds_and_nan():
    pts = np.array([
        [-51.2, 0, 0, 1, 0],   # on the lower x bound: kept
        [51.2, 0, 0, 2, 0],    # on the upper x bound: dropped
        [0, 0, 3.0, 3, 0],     # on the upper z bound: dropped
        [0, 0, -5.0, 4, 0],    # on the lower z bound: kept
        [np.nan, 0, 0, 5, 0],  # NaN: dropped
        [10, -20, 1, 6, 0.05],
    ], np.float32)
    out = crop_points(pts, LO, HI)
    assert out[:, 3].tolist() == [1, 4, 6]


def test_grid_points_equal_the_six_comparisons():
    from perception.backbones.lidar_inputs import grid_points
    from perception.config import GridConfig
    from sensors.types import LidarSweep

    g = GridConfig()
    pts = _cloud(np.float32, seed=3)
    keep = ((pts[:, 0] >= g.x_range_m[0]) & (pts[:, 0] < g.x_range_m[1])
            & (pts[:, 1] >= g.y_range_m[0]) & (pts[:, 1] < g.y_range_m[1])
            & (pts[:, 2] >= g.z_range_m[0]) & (pts[:, 2] < g.z_range_m[1]))
    sweep = LidarSweep(points=pts, columns=("x", "y", "z", "intensity", "time_lag_s"),
                       timestamp_us=0)
    assert np.array_equal(grid_points(sweep, g), pts[keep])
