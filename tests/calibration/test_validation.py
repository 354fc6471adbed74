"""Calibration validation: every loader refuses a bad rotation, translation or intrinsics matrix
naming the channel and the field; nothing reaches a LinAlgError."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.camera import PinholeCamera, validate_intrinsics
from calibration.rig import SensorRig, sensor_pose
from calibration.se3 import SE3, CalibrationError
from sensors.readers import read_camera_image

K = np.array([[800.0, 0.0, 320.0], [0.0, 800.0, 240.0], [0.0, 0.0, 1.0]])


def _with(i: int, j: int, v: float) -> np.ndarray:
    k = K.copy()
    k[i, j] = v
    return k


@pytest.mark.parametrize(
    ("k", "message"),
    [
        (_with(0, 0, 0.0), r"fx \(K\[0,0\]\) must be > 0, got 0"),
        (_with(1, 1, -5.0), r"fy \(K\[1,1\]\) must be > 0, got -5"),
        (_with(1, 2, np.nan), r"non-finite entries \['K\[1,2\]'\]"),
        (_with(2, 2, 0.0), "not a pinhole matrix"),
        (_with(1, 0, 3.0), "not a pinhole matrix"),
        (_with(0, 2, 1280.0), r"cx \(K\[0,2\]\) = 1280 lies outside the 640x480 image"),
        (_with(1, 2, -40.0), r"cy \(K\[1,2\]\) = -40 lies outside"),
        (K[:2], r"must be 3x3, got shape \(2, 3\)"),
        ([["a", 0, 0], [0, 1, 0], [0, 0, 1]], "must be a 3x3 matrix of numbers"),
    ],
)
def test_camera_loader_refuses_bad_intrinsics_naming_channel_and_field(tmp_path, k, message):
    f = tmp_path / "img.png"
    cv2.imwrite(str(f), np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(CalibrationError, match=rf"CAM_BACK_LEFT \(img.png\): .*{message}"):
        read_camera_image(f, k, "CAM_BACK_LEFT", 0)


def test_stored_k_on_a_reduced_decode_is_checked_at_the_decoded_size(tmp_path):
    f = tmp_path / "img.png"
    cv2.imwrite(str(f), np.zeros((480, 640, 3), np.uint8))
    img = read_camera_image(f, K, "CAM_FRONT", 0, reduction=2)
    assert img.intrinsics[0, 2] == pytest.approx((320 + 0.5) / 2 - 0.5)


def test_pinhole_camera_checks_principal_point_and_size():
    with pytest.raises(CalibrationError, match=r"cx \(K\[0,2\]\) = 320 lies outside the 100x80"):
        PinholeCamera(K, 100, 80)
    with pytest.raises(CalibrationError, match="image size must be positive"):
        PinholeCamera(K, 0, 480)
    assert validate_intrinsics(K, "x", (640, 480)).tolist() == K.tolist()


def test_translation_and_rotation_faults_name_the_source():
    q = [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(CalibrationError, match=r"LIDAR_TOP cs 12: translation must be 3 finite"):
        SE3.from_quaternion(q, [0.0, np.inf, 1.0], name="LIDAR_TOP cs 12")
    with pytest.raises(CalibrationError, match=r"ego_pose 7: translation must be 3 finite"):
        SE3.from_quaternion(q, [0.0, 1.0], name="ego_pose 7")
    with pytest.raises(CalibrationError, match=r"CAM_FRONT rotation: quaternion norm is 0.5"):
        sensor_pose("CAM_FRONT", quaternion_wxyz=[0.5, 0.0, 0.0, 0.0])
    with pytest.raises(CalibrationError, match=r"ego_pose 7: expected 4 finite values"):
        SE3.from_quaternion([1.0, None, 0.0, 0.0], [0, 0, 0], name="ego_pose 7")


def test_rig_from_matrices_refuses_singular_reflected_and_sheared_rotations():
    for m, message in (
        (np.diag([1.0, 1.0, 0.0, 1.0]), "not orthonormal"),  # singular: never a LinAlgError
        (np.diag([1.0, -1.0, 1.0, 1.0]), r"det -1.000000000, expected \+1"),
        (np.array([[1, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "orthonormal"),
        (np.zeros((3, 4)), r"expected a 4x4 matrix, got shape \(3, 4\)"),
    ):
        with pytest.raises(CalibrationError, match=f"RADAR_FRONT: .*{message}"):
            SensorRig.from_matrices({"LIDAR_TOP": np.eye(4), "RADAR_FRONT": m})
    m = np.eye(4)
    m[1, 3] = np.nan
    with pytest.raises(CalibrationError, match="CAM_FRONT: translation must be 3 finite"):
        SensorRig.from_matrices({"CAM_FRONT": m})


def _frame_bundle(folder, lidar2ego=None, k=None):
    """A minimal frame.json bundle: one LiDAR file and one camera."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    pts = np.array([[5.0, 0.0, 0.0, 10.0, 1.0], [0.0, 6.0, 1.0, 20.0, 2.0]], np.float32)
    pts.tofile(folder / "lidar.pcd.bin")
    cv2.imwrite(str(folder / "front.jpg"), np.zeros((480, 640, 3), np.uint8))
    meta = {
        "lidar": {"file": "lidar.pcd.bin", "timestamp_us": 10,
                  "lidar2ego": (np.eye(4) if lidar2ego is None else lidar2ego).tolist()},
        "ego2global": np.eye(4).tolist(),
        "cameras": {"CAM_FRONT": {"file": "front.jpg", "timestamp_us": 10,
                                  "intrinsics": (K if k is None else k).tolist(),
                                  "lidar2cam": np.eye(4).tolist()}},
    }
    (folder / "frame.json").write_text(json.dumps(meta))
    return folder


def test_frame_json_loader_names_file_channel_and_field(tmp_path):
    from sensors.datasets.frame_json import load_frame_json

    s = load_frame_json(_frame_bundle(tmp_path / "ok"))
    assert s.camera_mask.tolist() == [True, False, False, False, False, False]
    reflect = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(CalibrationError, match=r"bad/frame.json lidar2ego: .*det -1"):
        load_frame_json(_frame_bundle(tmp_path / "bad", lidar2ego=reflect))
    with pytest.raises(CalibrationError, match=r"CAM_FRONT \(front.jpg\): intrinsics fy"):
        load_frame_json(_frame_bundle(tmp_path / "k", k=_with(1, 1, 0.0)))
