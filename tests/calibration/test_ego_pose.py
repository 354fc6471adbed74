import numpy as np
import pytest
from pyquaternion import Quaternion

from calibration.ego_pose import EgoPoseTrack
from calibration.se3 import SE3


def _track():
    ts = [1_000_000, 1_050_000, 1_100_000]
    poses = [SE3.from_yaw(0.1 * i, [10.0 * i, -2.0 * i, 0.1 * i]) for i in range(3)]
    return EgoPoseTrack.from_poses(ts, poses, name="scene-0001")


def test_exact_at_samples_and_interpolated_between():
    tr = _track()
    np.testing.assert_allclose(tr.at(1_050_000).translation, [10, -2, 0.1], atol=1e-12)
    mid = tr.at(1_025_000)
    np.testing.assert_allclose(mid.translation, [5, -1, 0.05], atol=1e-12)
    assert mid.yaw_rad == pytest.approx(0.05, abs=1e-12)
    q = Quaternion.slerp(
        Quaternion(axis=[0, 0, 1], angle=0.1), Quaternion(axis=[0, 0, 1], angle=0.2), 0.3
    )
    np.testing.assert_allclose(tr.at(1_065_000).rotation, q.rotation_matrix, atol=1e-12)


def test_slerp_takes_short_way_with_sign_flipped_quaternions():
    q0 = Quaternion(axis=[0, 0, 1], angle=3.0)
    q1 = -Quaternion(axis=[0, 0, 1], angle=-3.0)  # same as +3.283 rad, opposite sign
    tr = EgoPoseTrack([0, 100], np.zeros((2, 3)), [q0.elements, q1.elements])
    yaw = tr.at(50).yaw_rad
    assert abs(abs(yaw) - np.pi) < 1e-9  # halfway across +-pi, not through 0


@pytest.mark.parametrize("ts, word", [([0, 10, 10], "duplicate"), ([0, 20, 10], "out-of-order")])
def test_non_increasing_timestamps_rejected(ts, word):
    with pytest.raises(ValueError, match=f"scene-0042.*{word}.*index 2"):
        EgoPoseTrack(ts, np.zeros((3, 3)), np.tile([1.0, 0, 0, 0], (3, 1)), name="scene-0042")


def test_outside_track_rejected_unless_extrapolation_allowed():
    tr = _track()
    with pytest.raises(ValueError, match="scene-0001.*outside"):
        tr.at(1_100_001)
    np.testing.assert_allclose(
        tr.at(1_100_500, max_extrapolation_us=1000).translation, [20, -4, 0.2]
    )


def test_relative_pose():
    tr = _track()
    rel = tr.relative(1_000_000, 1_100_000)
    np.testing.assert_allclose(
        rel.as_matrix(), (tr.at(1_000_000).inverse() @ tr.at(1_100_000)).as_matrix()
    )
    np.testing.assert_allclose(rel.transform_points(np.zeros((1, 3)))[0], [20, -4, 0.2], atol=1e-12)


def test_bad_quaternion_rejected():
    with pytest.raises(ValueError, match="norm"):
        EgoPoseTrack([0], np.zeros((1, 3)), [[1.0, 0.1, 0, 0]])
