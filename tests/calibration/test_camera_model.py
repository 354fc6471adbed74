import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.camera import PinholeCamera, img_from_ego, project_points
from calibration.se3 import SE3

K = np.array([[1000.0, 0.0, 640.3], [0.0, 990.0, 360.7], [0.0, 0.0, 1.0]])


def _points(rng, n=200):
    return np.c_[rng.uniform(-5, 5, (n, 2)), rng.uniform(0.5, 40, n)]


def test_project_matches_opencv_without_distortion():
    rng = np.random.default_rng(0)
    p = _points(rng)
    cam = PinholeCamera(K, 1280, 720)
    uv, depth, _ = cam.project(p)
    ref, _ = cv2.projectPoints(p.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, np.zeros(5))
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-9)
    np.testing.assert_array_equal(depth, p[:, 2])


def test_behind_camera_is_invalid_and_nan():
    cam = PinholeCamera(K, 1280, 720)
    uv, depth, valid = cam.project(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [100.0, 0, 1.0]]))
    assert valid.tolist() == [False, True, False]
    assert np.isnan(uv[0]).all() and depth[0] == -1.0


def test_image_bounds_are_half_open():
    cam = PinholeCamera(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1]]), 10, 5)
    pts = np.array(
        [[0.0, 0.0, 1.0], [9.999, 4.999, 1.0], [10.0, 0.0, 1.0], [0.0, 5.0, 1.0], [-1e-9, 0.0, 1.0]]
    )
    assert cam.project(pts)[2].tolist() == [True, True, False, False, False]


@settings(max_examples=50, deadline=None)
@given(st.floats(-0.3, 0.3), st.floats(-0.1, 0.1), st.floats(-2e-3, 2e-3), st.floats(-2e-3, 2e-3))
def test_unproject_inverts_project_with_distortion(k1, k2, p1, p2):
    rng = np.random.default_rng(1)
    p = np.c_[rng.uniform(-0.3, 0.3, (50, 2)), rng.uniform(1, 30, 50)]
    p[:, :2] *= p[:, 2:3]
    cam = PinholeCamera(K, 1280, 720, np.array([k1, k2, p1, p2, 0.0]))
    uv, depth, _ = cam.project(p)
    back = cam.unproject(uv, depth)
    np.testing.assert_allclose(back, p, atol=1e-6 * np.abs(p).max())


def test_distortion_path_matches_opencv_and_differs_from_pinhole():
    rng = np.random.default_rng(2)
    p = _points(rng)
    d = np.array([-0.2, 0.05, 1e-3, -1e-3, 0.0])
    uv, _, _ = PinholeCamera(K, 1280, 720, d).project(p)
    ref, _ = cv2.projectPoints(p.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, d)
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-9)
    assert np.abs(uv - PinholeCamera(K, 1280, 720).project(p)[0]).max() > 1.0


def test_unproject_without_distortion_exact():
    rng = np.random.default_rng(3)
    p = _points(rng)
    cam = PinholeCamera(K, 1280, 720)
    uv, depth, _ = cam.project(p)
    np.testing.assert_allclose(cam.unproject(uv, depth), p, atol=1e-9)


def test_img_from_ego_agrees_with_project_points():
    rng = np.random.default_rng(4)
    cam_SE3_ego = SE3.from_yaw(0.3, [0.2, -1.0, 0.5])
    pts = rng.uniform(-20, 20, (100, 3))
    uv, depth, _ = project_points(pts, PinholeCamera(K, 1280, 720), cam_SE3_ego)
    uvw = np.c_[pts, np.ones(100)] @ img_from_ego(K, cam_SE3_ego).T
    front = depth > 0
    np.testing.assert_allclose(uvw[front, :2] / uvw[front, 2:], uv[front], atol=1e-9)


@pytest.mark.parametrize("bad", [np.zeros((3, 3)), np.eye(4), [[1, 0, 0], [0, 1, 0], [0, 1, 1]]])
def test_bad_intrinsics_rejected(bad):
    with pytest.raises(ValueError, match="PinholeCamera"):
        PinholeCamera(np.asarray(bad, float), 10, 10)


def test_scaled_uses_ceil_sizes():
    cam = PinholeCamera(K, 1600, 900).scaled(8)
    assert (cam.width, cam.height) == (200, 113)
    assert cam.intrinsics[0, 0] == K[0, 0] / 8
    assert cam.intrinsics[0, 2] == (K[0, 2] + 0.5) / 8 - 0.5
