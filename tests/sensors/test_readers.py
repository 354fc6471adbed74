import hashlib

import cv2
import numpy as np
import pytest

from sensors.readers import (
    LIDAR_LAYOUTS,
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


# ---------------------------------------------------------------- explicit layouts


def _scan(n: int, cols: int, seed: int = 0) -> np.ndarray:
    """Plausible points: xyz within 60 m, intensity 0..255, ring 0..31 (then extra columns)."""
    rng = np.random.default_rng(seed)
    pts = np.c_[rng.uniform(-60, 60, (n, 2)), rng.uniform(-2, 4, n), rng.integers(0, 256, n)]
    extra = [rng.integers(0, 32, n)] + [rng.uniform(0, 1, n)] * (cols - 5)
    return np.column_stack([pts, *extra])[:, :cols].astype(np.float32)


def test_six_column_waymo_file_reads_with_its_layout_never_by_size(tmp_path):
    # 10 rows x 6 columns = 240 bytes, a whole number of 4-column rows (15) too: reading it as
    # KITTI by its .bin extension would silently shift every column.
    pts = _scan(10, 6)
    f = tmp_path / "000000.bin"
    pts.tofile(f)
    s = read_lidar_file(f, layout="waymo_kitti")
    assert s.columns == LIDAR_LAYOUTS["waymo_kitti"] and s.points.shape == (10, 6)
    np.testing.assert_array_equal(s.points, pts)
    named = read_lidar_file(f, layout=("x", "y", "z", "intensity", "elongation", "t"))
    assert named.columns[-1] == "t"
    np.testing.assert_array_equal(named.column("elongation"), pts[:, 4])


def test_nuscenes_layout_whatever_the_extension(tmp_path):
    # Lyft and other nuScenes-format datasets store 5-column LIDAR_TOP files as plain .bin.
    pts = _scan(12, 5)
    f = tmp_path / "lyft_lidar.bin"
    pts.tofile(f)
    s = read_lidar_file(f, layout="nuscenes")
    assert s.columns == NUSCENES_COLUMNS
    np.testing.assert_array_equal(s.points, pts)


def test_kitti_file_read_as_nuscenes_is_refused_naming_file_and_likely_layout(tmp_path):
    pts = _scan(20, 4)  # 320 bytes: also 16 rows of 5 columns
    f = tmp_path / "kitti__LIDAR_TOP__1.pcd.bin"
    pts.tofile(f)
    with pytest.raises(SensorFileError) as e:
        read_lidar_file(f)
    msg = str(e.value)
    assert str(f) in msg and "ring" in msg and "kitti (4 columns)" in msg


def test_implausible_coordinates_are_refused(tmp_path):
    pts = _scan(5, 5)
    pts[2, 1] = 3.0e7  # a float that is really a misread integer field
    f = tmp_path / "far.pcd.bin"
    pts.tofile(f)
    with pytest.raises(SensorFileError, match=r"far.pcd.bin.*1 of 5 points.*beyond 1000 m"):
        read_lidar_file(f)


def test_ring_must_be_a_small_non_negative_integer(tmp_path):
    for bad in (-1.0, 2.5, 300.0):
        pts = _scan(6, 5)
        pts[4, 4] = bad
        f = tmp_path / "ring.pcd.bin"
        pts.tofile(f)
        with pytest.raises(SensorFileError, match="ring.pcd.bin.*1 of 6 ring values"):
            read_lidar_file(f)
    pts = _scan(6, 5)
    pts[:, 4] = [0, 31, 64, 127, 200, 255]  # beam counts beyond nuScenes' 32 are fine
    pts.tofile(f)
    assert read_lidar_file(f).num_points == 6


def test_unknown_layout_and_bad_column_names(tmp_path):
    f = tmp_path / "a.bin"
    _scan(2, 4).tofile(f)
    with pytest.raises(ValueError, match="a.bin.*unknown LiDAR layout 'velodyne'"):
        read_lidar_file(f, layout="velodyne")
    with pytest.raises(ValueError, match="must start x, y, z"):
        read_lidar_file(f, layout=("y", "x", "z", "i"))


def test_truncated_file_says_which_layouts_its_size_fits(tmp_path):
    f = tmp_path / "six.pcd.bin"
    _scan(9, 6).tofile(f)  # 216 bytes: 9 rows of 6 columns, not whole 5- or 4-column rows
    with pytest.raises(SensorFileError, match=r"six.pcd.bin: size 216 .*fit waymo_kitti \(6"):
        read_lidar_file(f)


@pytest.mark.parametrize("col", [3, 4])
def test_non_finite_only_in_intensity_or_ring_drops_that_row(tmp_path, col):
    pts = _scan(8, 5)
    pts[2, col] = np.nan
    pts[5, col] = -np.inf
    f = tmp_path / "nf.pcd.bin"
    pts.tofile(f)
    s = read_lidar_file(f)
    assert s.num_dropped_nonfinite == 2
    np.testing.assert_array_equal(s.points, np.delete(pts, [2, 5], axis=0))


# ---------------------------------------------------------------- reduced decode intrinsics


def _blob_image(h: int, w: int, u: float, v: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 4.0**2))
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(img: np.ndarray) -> tuple[float, float]:
    g = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    return float((g * xx).sum() / g.sum()), float((g * yy).sum() / g.sum())


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_reduced_decode_intrinsics_follow_the_size_really_decoded(tmp_path, ext):
    # KITTI's 1242 x 375 is not divisible by 4: libjpeg decodes 311 x 94 on a 1/4 grid, a PNG
    # becomes 310 x 93 through a resize whose grid scale is 310/1242 and 93/375.
    h, w, u, v = 375, 1242, 1180.0, 350.0
    k = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1.0]])
    f = tmp_path / f"kitti{ext}"
    cv2.imwrite(str(f), _blob_image(h, w, u, v)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    img = read_camera_image(f, k, "CAM_FRONT", 0, reduction=4)
    assert img.image.shape[:2] == ((93, 310) if ext == ".png" else (94, 311))
    # The ray through the blob centre must land where the decoded image shows it.
    kr = img.intrinsics
    ray = np.linalg.solve(k, [u, v, 1.0])
    pu, pv, _ = kr @ ray
    cu, cv_ = _centroid(img.image)
    assert abs(pu - cu) < 0.1 and abs(pv - cv_) < 0.1, (pu, pv, cu, cv_)
