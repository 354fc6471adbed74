import hashlib

import cv2
import numpy as np
import pytest

from sensors.readers import (
    SensorFileError,
    read_camera_image,
    read_lidar_file,
    read_ultrasonic_file,
    write_ultrasonic_file,
)
from sensors.types import CAMERA_CHANNELS, KITTI_COLUMNS, NUSCENES_COLUMNS


def test_real_lidar_shape_and_checksum(frame_dir, frame, frame_lidar):
    raw = (frame_dir / frame["lidar"]["file"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == frame["lidar"]["sha256"]
    assert frame_lidar.points.shape == (34688, 5)
    assert frame_lidar.columns == NUSCENES_COLUMNS
    assert frame_lidar.num_dropped_nonfinite == 0
    assert frame_lidar.frame == "lidar"
    assert frame_lidar.timestamp_us == frame["lidar"]["timestamp_us"]
    np.testing.assert_array_equal(frame_lidar.points.reshape(-1), np.frombuffer(raw, np.float32))
    assert not frame_lidar.points.flags.writeable


@pytest.mark.parametrize("channel", CAMERA_CHANNELS)
def test_real_cameras_decode_rgb(frame_dir, frame, channel):
    c = frame["cameras"][channel]
    img = read_camera_image(
        frame_dir / c["file"], np.array(c["intrinsics"]), channel, c["timestamp_us"]
    )
    assert img.image.shape == (900, 1600, 3) and img.image.dtype == np.uint8
    bgr = cv2.imread(str(frame_dir / c["file"]))
    np.testing.assert_array_equal(img.image, bgr[..., ::-1])
    np.testing.assert_array_equal(img.intrinsics, c["intrinsics"])
    assert img.channel == channel and img.scale == 1.0


@pytest.mark.parametrize("r, shape", [(2, (450, 800)), (4, (225, 400)), (8, (113, 200))])
def test_reduced_decode_sizes(frame_dir, frame, r, shape):
    c = frame["cameras"]["CAM_BACK"]
    img = read_camera_image(frame_dir / c["file"], np.array(c["intrinsics"]), "CAM_BACK", 0, r)
    assert img.image.shape[:2] == shape
    k = np.array(c["intrinsics"])
    assert img.intrinsics[0, 0] == pytest.approx(k[0, 0] / r)
    assert img.intrinsics[1, 2] == pytest.approx((k[1, 2] + 0.5) / r - 0.5)


def test_bad_reduction(frame_dir, frame):
    c = frame["cameras"]["CAM_BACK"]
    with pytest.raises(ValueError, match="reduction"):
        read_camera_image(frame_dir / c["file"], np.eye(3), "CAM_BACK", 0, 3)


# ---------------------------------------------------------------- bad input


def test_truncated_point_file_names_file_and_size(tmp_path, frame_dir, frame):
    raw = (frame_dir / frame["lidar"]["file"]).read_bytes()
    bad = tmp_path / "cut__LIDAR_TOP__1.pcd.bin"
    bad.write_bytes(raw[:-7])
    with pytest.raises(SensorFileError) as e:
        read_lidar_file(bad)
    msg = str(e.value)
    assert str(bad) in msg and str(len(raw) - 7) in msg


def test_nan_rows_dropped_and_counted(tmp_path):
    pts = np.arange(50, dtype=np.float32).reshape(10, 5)
    pts[3, 1] = np.nan
    pts[7, 4] = np.inf
    f = tmp_path / "x.pcd.bin"
    pts.tofile(f)
    s = read_lidar_file(f, timestamp_us=12)
    assert s.num_dropped_nonfinite == 2
    np.testing.assert_array_equal(s.points, np.delete(pts, [3, 7], axis=0))
    assert s.timestamp_us == 12 and s.source == str(f)


def test_empty_file_is_an_empty_sweep(tmp_path):
    f = tmp_path / "empty.pcd.bin"
    f.write_bytes(b"")
    s = read_lidar_file(f)
    assert s.points.shape == (0, 5) and s.num_points == 0


def test_kitti_bin_has_four_columns(tmp_path):
    pts = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    f = tmp_path / "000001.bin"
    pts.tofile(f)
    s = read_lidar_file(f)
    assert s.columns == KITTI_COLUMNS
    np.testing.assert_array_equal(s.points, pts)
    (tmp_path / "bad.bin").write_bytes(pts.tobytes()[:-4])
    with pytest.raises(SensorFileError, match="bad.bin.*108 bytes"):
        read_lidar_file(tmp_path / "bad.bin")


def test_pcd_through_open3d(tmp_path):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(20, 3)).astype(np.float32)
    inten = rng.uniform(0, 1, (20, 1)).astype(np.float32)
    pcd = o3d.t.geometry.PointCloud()
    pcd.point["positions"] = o3d.core.Tensor(xyz)
    pcd.point["intensity"] = o3d.core.Tensor(inten)
    f = tmp_path / "cloud.pcd"
    o3d.t.io.write_point_cloud(str(f), pcd)
    s = read_lidar_file(f)
    np.testing.assert_allclose(s.points, np.c_[xyz, inten], atol=1e-6)


def test_unknown_extension_and_missing(tmp_path):
    with pytest.raises(ValueError, match="scan.xyz.*unknown LiDAR file type"):
        read_lidar_file(tmp_path / "scan.xyz")
    with pytest.raises(FileNotFoundError, match="nothere.pcd.bin"):
        read_lidar_file(tmp_path / "nothere.pcd.bin")


def test_corrupt_jpeg_names_file(tmp_path, frame_dir, frame):
    good = (frame_dir / frame["cameras"]["CAM_FRONT"]["file"]).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(SensorFileError, match="cut.jpg.*CAM_FRONT"):
        read_camera_image(cut, np.eye(3), "CAM_FRONT", 0)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00not a jpeg" * 20)
    with pytest.raises(SensorFileError, match="garbage.jpg.*cannot decode"):
        read_camera_image(garbage, np.eye(3), "CAM_FRONT", 0, reduction=4)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(SensorFileError, match="empty.jpg.*empty"):
        read_camera_image(empty, np.eye(3), "CAM_FRONT", 0)
    with pytest.raises(FileNotFoundError, match="missing.jpg.*CAM_BACK"):
        read_camera_image(tmp_path / "missing.jpg", np.eye(3), "CAM_BACK", 0)


def test_ultrasonic_roundtrip_and_bad_size(tmp_path):
    r = np.array([0.3, np.nan, 5.5] + [1.0] * 9, np.float32)
    f = tmp_path / "us.bin"
    write_ultrasonic_file(f, r)
    scan = read_ultrasonic_file(f, 77)
    np.testing.assert_array_equal(scan.ranges_m, r)
    assert scan.derived is False and scan.timestamp_us == 77 and scan.source == str(f)
    (tmp_path / "short.bin").write_bytes(r.tobytes()[:-4])
    with pytest.raises(SensorFileError, match="short.bin.*44 bytes, expected 48"):
        read_ultrasonic_file(tmp_path / "short.bin", 0)
    neg = r.copy()
    neg[4] = -1
    neg.tofile(tmp_path / "neg.bin")
    with pytest.raises(SensorFileError, match=r"neg.bin.*\[4\]"):
        read_ultrasonic_file(tmp_path / "neg.bin", 0)
    with pytest.raises(FileNotFoundError, match="gone.bin"):
        read_ultrasonic_file(tmp_path / "gone.bin", 0)
