"""Ego-pose interpolation away from the midpoint (where swapping the two weights changes
nothing), on a non-uniform grid, and future trajectories at times off the pose grid."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.ego_pose import EgoPoseTrack
from calibration.se3 import SE3


def _track() -> EgoPoseTrack:
    # Non-uniform spacing (100 ms then 300 ms), translation and yaw both moving.
    ts = [0, 100_000, 400_000]
    poses = [
        SE3.from_yaw(0.0, [0.0, 0.0, 0.0]),
        SE3.from_yaw(0.4, [10.0, 4.0, 2.0]),
        SE3.from_yaw(1.2, [12.0, 16.0, 2.0]),
    ]
    return EgoPoseTrack.from_poses(ts, poses, name="scene-x")


@pytest.mark.parametrize(
    ("t_us", "xyz", "yaw"),
    [
        (25_000, [2.5, 1.0, 0.5], 0.1),  # a = 0.25 in the first segment
        (90_000, [9.0, 3.6, 1.8], 0.36),  # a = 0.9
        (175_000, [10.5, 7.0, 2.0], 0.6),  # a = 0.25 in the second (300 ms) segment
        (399_999, [12.0 - 2 / 300_000, 16.0 - 12 / 300_000, 2.0], 1.2 - 0.8 / 300_000),
    ],
)
def test_asymmetric_weights(t_us, xyz, yaw):
    p = _track().at(t_us)
    np.testing.assert_allclose(p.translation, xyz, atol=1e-9)
    assert p.yaw_rad == pytest.approx(yaw, abs=1e-9)  # slerp about one axis: linear in angle


def test_future_trajectory_on_timestamps_off_the_pose_grid(tmp_path):
    """``_future_xy`` at a reference time 20 ms off the 50 ms LiDAR pose grid equals the
    analytic ego path (an arc) within interpolation error, a few tenths of a millimetre; the
    step past the end of the 3 s scene is NaN."""
    import nuscenes_fixture as fx

    from sensors.datasets.nuscenes import FUTURE_DT_US, FUTURE_STEPS, NuScenesDataset

    root = fx.build(tmp_path / "root", with_ultrasonic=False, with_can_bus=False)
    ds = NuScenesDataset(root, version=fx.VERSION, num_sweeps=1)
    scene = ds.scene_tokens[0]
    ref_us = fx.T0_US + 220_000  # 20 ms after a LiDAR sweep: every future time is off-grid
    pos, q = fx.ego_pose_at(ref_us)
    ego_SE3_global = SE3.from_quaternion(q.elements, pos).inverse()  # noqa: N806
    got = ds._future_xy(scene, ref_us, ego_SE3_global)
    want = np.array([
        ego_SE3_global.transform_points(fx.ego_pose_at(ref_us + (k + 1) * FUTURE_DT_US)[0][None])
        [0, :2] for k in range(FUTURE_STEPS - 1)
    ])
    assert ref_us + FUTURE_STEPS * FUTURE_DT_US > fx.T0_US + fx.DURATION_US
    assert np.isnan(got[-1]).all()
    np.testing.assert_allclose(got[:-1], want, atol=1e-3)
    assert np.abs(want[-1]).max() > 10  # 2.5 s along the arc: not a trivially small target
