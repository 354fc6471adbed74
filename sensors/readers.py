"""Readers from files on disk to typed sensor frames.

Every reader validates its input and raises an exception naming the file and the fault
(truncated point file, corrupt JPEG, wrong ultrasonic record size): a silent reshape of a
truncated ``.bin`` would shift every column of every later row.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sensors.types import (
    KITTI_COLUMNS,
    LIDAR_CHANNEL,
    NUM_ULTRASONIC_SENSORS,
    NUSCENES_COLUMNS,
    ULTRASONIC_CHANNEL,
    CameraImage,
    LidarSweep,
    UltrasonicScan,
)

# OpenCV decodes JPEGs at 1/2, 1/4, 1/8 resolution inside libjpeg (DCT scaling), which skips
# most of the inverse-DCT work: several times faster than decoding at full size and resizing.
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class SensorFileError(ValueError):
    """A sensor file exists but its content is unusable (truncated, corrupt, wrong size)."""


def _lidar_layout(path: Path) -> tuple[str, ...] | None:
    name = path.name.lower()
    if name.endswith(".pcd.bin"):
        return NUSCENES_COLUMNS
    if name.endswith(".bin"):
        return KITTI_COLUMNS
    if name.endswith(".pcd"):
        return None
    raise ValueError(
        f"{path}: unknown LiDAR file type (expected .pcd.bin [nuScenes, 5 columns], "
        f".bin [KITTI, 4 columns] or .pcd)"
    )


def _read_pcd(path: Path) -> np.ndarray:
    """(N, 4) float32 [x, y, z, intensity] from a .pcd file through open3d's tensor API."""
    # Imported lazily: open3d takes ~1 s to import and most runs never read .pcd.
    import open3d as o3d

    if path.stat().st_size == 0:
        return np.zeros((0, 4), np.float32)
    pcd = o3d.t.io.read_point_cloud(str(path))
    if "positions" not in pcd.point:
        raise SensorFileError(f"{path}: not a readable PCD file (open3d found no points)")
    xyz = pcd.point["positions"].numpy().astype(np.float32).reshape(-1, 3)
    intensity = np.zeros((xyz.shape[0], 1), np.float32)
    for key in ("intensity", "intensities"):
        if key in pcd.point:
            intensity = pcd.point[key].numpy().astype(np.float32).reshape(-1, 1)
            break
    return np.concatenate([xyz, intensity], axis=1)


def read_lidar_file(
    path: str | Path, timestamp_us: int = 0, channel: str = LIDAR_CHANNEL
) -> LidarSweep:
    """Read one LiDAR sweep in the sensor frame, choosing the layout by file extension.

    ``.pcd.bin``: nuScenes, float32 rows of (x, y, z, intensity, ring). ``.bin``: KITTI, float32
    rows of (x, y, z, intensity). ``.pcd``: any PCD that open3d reads; columns (x, y, z,
    intensity), intensity 0 where the file has none. Rows with a NaN/inf in any column are
    dropped and counted in ``num_dropped_nonfinite``. An empty file is a valid, empty sweep.

    Args:
        path: the point file.
        timestamp_us: sweep timestamp (the file does not store it), microseconds.
        channel: LiDAR channel name.

    Returns:
        ``LidarSweep`` with ``frame="lidar"``; points (N, 5) or (N, 4) float32.

    Raises:
        FileNotFoundError: the file does not exist (message names it).
        SensorFileError: the size is not a whole number of rows, or the PCD is unreadable.

    """
    path = Path(path)
    columns = _lidar_layout(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LiDAR file not found")
    if columns is None:
        points = _read_pcd(path)
        columns = KITTI_COLUMNS
    else:
        row_bytes = 4 * len(columns)
        size = path.stat().st_size
        if size % row_bytes:
            raise SensorFileError(
                f"{path}: size {size} bytes is not a whole number of {len(columns)}-column "
                f"float32 rows ({row_bytes} bytes each); truncated or wrong format"
            )
        points = np.fromfile(path, dtype=np.float32).reshape(-1, len(columns))
    num_bad = 0
    # One flat pass first: the per-row reduction costs 4x more and is almost never needed.
    if not np.isfinite(points).all():
        finite = np.isfinite(points).all(axis=1)
        num_bad = int(points.shape[0] - np.count_nonzero(finite))
        points = points[finite]
    return LidarSweep(
        points=points,
        columns=columns,
        timestamp_us=timestamp_us,
        channel=channel,
        frame="lidar",
        num_dropped_nonfinite=num_bad,
        source=str(path),
    )


def reduced_intrinsics(intrinsics: np.ndarray, reduction: int) -> np.ndarray:
    """Intrinsics for an image decoded at 1/``reduction`` of its stored size.

    libjpeg's scaled decode averages ``reduction x reduction`` pixel blocks, so reduced pixel
    ``i`` covers full pixels ``r*i .. r*i + r - 1`` and its centre sits at full coordinate
    ``r*i + (r - 1)/2``. With pixel centres at integer coordinates (OpenCV's convention) that
    gives ``u_r = (u + 0.5)/r - 0.5``: focal lengths divide by ``r`` and the principal point
    becomes ``(c + 0.5)/r - 0.5``. The scale is exactly ``1/r`` even when the decoded size is
    ``ceil(W/r)`` (the last block is partial, its pixel grid does not stretch).

    Args:
        intrinsics: (3, 3) pinhole matrix at the stored resolution.
        reduction: 1, 2, 4 or 8.

    Returns:
        (3, 3) float64 matrix at the reduced resolution.

    """
    if reduction not in _REDUCED_FLAGS:
        raise ValueError(f"image reduction must be one of 1, 2, 4, 8, got {reduction}")
    k = np.array(intrinsics, dtype=np.float64)
    if reduction == 1:
        return k
    r = float(reduction)
    k[0, 0] /= r
    k[0, 1] /= r
    k[1, 1] /= r
    k[0, 2] = (k[0, 2] + 0.5) / r - 0.5
    k[1, 2] = (k[1, 2] + 0.5) / r - 0.5
    return k


def read_camera_image(
    path: str | Path,
    intrinsics: np.ndarray,
    channel: str,
    timestamp_us: int,
    reduction: int = 1,
    distortion: np.ndarray | None = None,
) -> CameraImage:
    """Decode a camera image to RGB, optionally at 1/2, 1/4 or 1/8 resolution.

    Args:
        path: image file (JPEG, PNG, anything OpenCV decodes).
        intrinsics: (3, 3) K at the stored resolution.
        channel: camera channel, e.g. ``"CAM_FRONT"``.
        timestamp_us: exposure timestamp, microseconds.
        reduction: 1 (full), 2, 4 or 8 (decoded by libjpeg at reduced size; K scaled to match).
        distortion: OpenCV distortion coefficients, or None. They are resolution independent
            (they act on normalized coordinates), so reduction leaves them unchanged.

    Returns:
        ``CameraImage`` (H, W, 3) uint8 RGB with intrinsics for the decoded size and
        ``scale = 1/reduction``.

    Raises:
        FileNotFoundError: missing file (message names it).
        SensorFileError: empty, truncated or undecodable image (message names it).

    """
    path = Path(path)
    if reduction not in _REDUCED_FLAGS:
        raise ValueError(f"{path}: image reduction must be one of 1, 2, 4, 8, got {reduction}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: camera image not found ({channel})")
    # imread returns None for unreadable files; read the bytes ourselves so that a truncated
    # JPEG (which libjpeg "decodes" with a grey bottom and only a warning) is caught too.
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise SensorFileError(f"{path}: camera image is empty (0 bytes) ({channel})")
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:].tobytes():
        raise SensorFileError(
            f"{path}: JPEG is truncated (no end-of-image marker) ({channel}, {data.size} bytes)"
        )
    bgr = cv2.imdecode(data, _REDUCED_FLAGS[reduction])
    if bgr is None:
        raise SensorFileError(f"{path}: cannot decode camera image ({channel}, {data.size} bytes)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return CameraImage(
        image=rgb,
        intrinsics=reduced_intrinsics(intrinsics, reduction),
        timestamp_us=timestamp_us,
        channel=channel,
        distortion=np.zeros(0) if distortion is None else np.asarray(distortion, np.float64),
        scale=1.0 / reduction,
        source=str(path),
    )


def read_ultrasonic_file(
    path: str | Path, timestamp_us: int, channel: str = ULTRASONIC_CHANNEL
) -> UltrasonicScan:
    """Read one ultrasonic record: 12 little-endian float32 ranges in metres, NaN = no echo.

    The sensor order is ``sensors.ultrasonic_layout.default_layout()`` (front left-to-right,
    then rear right-to-left). This is the format the synthetic generator writes.

    Args:
        path: the ``.bin`` file (48 bytes).
        timestamp_us: microseconds.
        channel: channel name, ``"ULTRASONIC"``.

    Returns:
        ``UltrasonicScan`` with ``derived=False``.

    Raises:
        FileNotFoundError: missing file.
        SensorFileError: size is not 48 bytes, or a range is negative or infinite.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ultrasonic file not found")
    expected = 4 * NUM_ULTRASONIC_SENSORS
    size = path.stat().st_size
    if size != expected:
        raise SensorFileError(
            f"{path}: ultrasonic record is {size} bytes, expected {expected} "
            f"({NUM_ULTRASONIC_SENSORS} float32 ranges)"
        )
    ranges = np.fromfile(path, dtype="<f4")
    bad = np.isinf(ranges) | (ranges < 0)
    if bad.any():
        raise SensorFileError(
            f"{path}: invalid ultrasonic ranges at sensors {np.flatnonzero(bad).tolist()} "
            "(negative or infinite; use NaN for no echo)"
        )
    return UltrasonicScan(
        ranges_m=ranges, timestamp_us=timestamp_us, derived=False, channel=channel, source=str(path)
    )


def write_ultrasonic_file(path: str | Path, ranges_m: np.ndarray) -> None:
    """Write 12 ranges (metres, NaN = no echo) in the format ``read_ultrasonic_file`` reads."""
    r = np.asarray(ranges_m, dtype="<f4").reshape(-1)
    if r.shape != (NUM_ULTRASONIC_SENSORS,):
        raise ValueError(f"{path}: expected {NUM_ULTRASONIC_SENSORS} ranges, got {r.shape[0]}")
    r.tofile(path)
