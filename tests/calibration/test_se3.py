import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyquaternion import Quaternion

from calibration.se3 import SE3, quaternion_to_rotation, rotation_to_quaternion, validate_rotation

angles = st.floats(-np.pi, np.pi, allow_nan=False)
coords = st.floats(-1e3, 1e3, allow_nan=False)


def _random_se3(rng: np.random.Generator) -> SE3:
    q = rng.normal(size=4)
    return SE3.from_quaternion(q / np.linalg.norm(q), rng.normal(size=3) * 10)


def test_compose_and_inverse_match_homogeneous_matrices():
    rng = np.random.default_rng(0)
    a, b = _random_se3(rng), _random_se3(rng)
    np.testing.assert_allclose((a @ b).as_matrix(), a.as_matrix() @ b.as_matrix(), atol=1e-12)
    np.testing.assert_allclose((a @ a.inverse()).as_matrix(), np.eye(4), atol=1e-12)
    pts = rng.normal(size=(50, 3))
    hom = np.c_[pts, np.ones(50)] @ a.as_matrix().T
    np.testing.assert_allclose(a.transform_points(pts), hom[:, :3], atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(angles, coords, coords, coords)
def test_from_yaw_round_trips_points(yaw, x, y, z):
    t = SE3.from_yaw(yaw, [x, y, z])
    p = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(t.inverse().transform_points(t.transform_points(p)), p, atol=1e-9)
    assert np.isclose(np.cos(t.yaw_rad - yaw), 1.0)


def test_quaternion_matches_pyquaternion_and_round_trips():
    q = np.array([0.7, 0.1, -0.3, 0.2])
    q /= np.linalg.norm(q)
    np.testing.assert_allclose(quaternion_to_rotation(q), Quaternion(q).rotation_matrix)
    np.testing.assert_allclose(rotation_to_quaternion(quaternion_to_rotation(q)), q, atol=1e-12)


def test_non_unit_quaternion_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="CAM_FRONT.*norm"):
        quaternion_to_rotation([1.0, 0.1, 0.0, 0.0], name="CAM_FRONT")


def test_reflection_and_shear_are_rejected():
    with pytest.raises(ValueError, match="det"):
        validate_rotation(np.diag([1.0, 1.0, -1.0]), "LIDAR_TOP")
    shear = np.eye(3)
    shear[0, 1] = 1e-3
    with pytest.raises(ValueError, match="LIDAR_TOP.*orthonormal"):
        validate_rotation(shear, "LIDAR_TOP")
    with pytest.raises(ValueError, match="last row"):
        SE3.from_matrix(np.ones((4, 4)))


def test_constructor_does_not_freeze_the_callers_array():
    r = np.eye(3)
    t = SE3(r, np.zeros(3))
    r[0, 0] = 1.0  # still writable
    assert not t.rotation.flags.writeable


def test_transform_points_keeps_float32_and_precision_far_from_origin():
    t = SE3.from_yaw(0.5, [411_000.0, 1_180_000.0, 0.0])
    p = np.array([[1.0, 2.0, 0.5]], dtype=np.float32)
    out = t.transform_points(p)
    assert out.dtype == np.float32
    back = t.inverse().transform_points(t.transform_points(p.astype(np.float64)))
    np.testing.assert_allclose(back, p, atol=1e-9)
