import numpy as np
import pytest

from calibration.accumulate import accumulate_sweeps, remove_close
from calibration.se3 import SE3
from sensors.types import ACCUMULATED_COLUMNS, NUSCENES_COLUMNS, LidarSweep


def _sweep(pts, t, dropped=0):
    pts = np.asarray(pts, np.float32)
    return LidarSweep(
        np.c_[pts, np.ones((len(pts), 1), np.float32)],
        NUSCENES_COLUMNS,
        t,
        num_dropped_nonfinite=dropped,
    )


def test_motion_compensated_merge_with_time_lag():
    ref = _sweep([[5.0, 0.0, 0.0, 7.0]], 1_000_000)
    old = _sweep([[5.0, 0.0, 0.0, 9.0], [0.5, 0.5, 0.0, 1.0]], 950_000, dropped=2)
    # The ego moved 0.5 m forward between the sweeps: the old sweep's origin is at -0.5 m.
    poses = [SE3.identity(), SE3(np.eye(3), [-0.5, 0.0, 0.0])]
    acc = accumulate_sweeps([ref, old], poses, 1_000_000, min_distance_m=1.0)
    assert acc.columns == ACCUMULATED_COLUMNS and acc.frame == "ego"
    np.testing.assert_allclose(
        acc.points, [[5.0, 0, 0, 7.0, 0.0], [4.5, 0, 0, 9.0, 0.05]], atol=1e-7
    )
    assert acc.num_dropped_nonfinite == 2


def test_remove_close_is_the_devkit_square():
    pts = np.array([[0.9, 0.9, 0], [0.9, 1.0, 0], [-0.99, 0.2, 5], [1.5, 0, 0]], np.float32)
    assert remove_close(pts, 1.0).tolist() == pts[[1, 3]].tolist()
    assert remove_close(pts, 0.0).shape == (4, 3)


def test_empty_and_mismatch():
    acc = accumulate_sweeps([_sweep(np.zeros((0, 4)), 5)], [SE3.identity()], 5)
    assert acc.points.shape == (0, 5)
    with pytest.raises(ValueError, match="2 sweeps but 1 poses"):
        accumulate_sweeps([_sweep(np.zeros((0, 4)), 5)] * 2, [SE3.identity()], 5)


def test_numba_kernel_bitwise_equals_numpy_reference():
    from calibration.accumulate import accumulate_sweeps_reference

    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-60, 60, (30_000, 3)), rng.uniform(0, 255, (30_000, 2))]
    pts[:2000, :2] = rng.uniform(-1.2, 1.2, (2000, 2))  # around the remove_close square
    t = 1_532_402_927_647_951
    ego_SE3_lidar = SE3.from_quaternion(
        [0.7071, 0.0, 0.0, -0.70711356], [0.943713, 0.0, 1.84023], "LIDAR_TOP"
    )
    sweeps = [
        LidarSweep(pts, NUSCENES_COLUMNS, t),
        LidarSweep(pts[::3], NUSCENES_COLUMNS, t - 50_010),
    ]
    poses = [ego_SE3_lidar, SE3.from_yaw(0.01, [-0.45, 0.02, 0.0]) @ ego_SE3_lidar]
    for min_d in (0.0, 1.0):
        got = accumulate_sweeps(sweeps, poses, t, min_d).points
        ref = accumulate_sweeps_reference(sweeps, poses, t, min_d)
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
    kitti = LidarSweep(pts[:100, :4], ("x", "y", "z", "intensity"), t)
    np.testing.assert_array_equal(
        accumulate_sweeps([kitti], [poses[0]], t).points,
        accumulate_sweeps_reference([kitti], [poses[0]], t),
    )
