"""Readers from files on disk to typed sensor frames.

Every reader validates its input and raises an exception naming the file and the fault
(truncated point file, corrupt JPEG, wrong ultrasonic record size): a silent reshape of a
truncated ``.bin`` would shift every column of every later row.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from calibration.camera import REDUCTIONS, decoded_intrinsics, validate_intrinsics
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

# Named point-file layouts (float32 rows). The 6-column one is what mmdetection3d's
# Waymo-to-KITTI converter writes into KITTI-style ``velodyne/*.bin`` files (x, y, z,
# intensity, elongation, then a per-point index/timestamp column).
LIDAR_LAYOUTS: dict[str, tuple[str, ...]] = {
    "nuscenes": NUSCENES_COLUMNS,
    "kitti": KITTI_COLUMNS,
    "waymo_kitti": ("x", "y", "z", "intensity", "elongation", "aux"),
}
# Largest ring (laser) index a nuScenes-layout file may hold: nuScenes has 32 beams, Lyft and
# other nuScenes-format datasets up to 128; anything above (or fractional) is another layout.
MAX_RING_INDEX = 255
# No automotive LiDAR returns points a kilometre away; larger coordinates mean the columns
# are misread (a different layout) or the file holds something else.
MAX_PLAUSIBLE_COORD_M = 1000.0


class SensorFileError(ValueError):
    """A sensor file exists but its content is unusable (truncated, corrupt, wrong size)."""


LidarLayout = str | tuple[str, ...]


def _lidar_columns(path: Path, layout: LidarLayout | None) -> tuple[str, ...] | None:
    """Column names for ``layout`` (a name, the columns themselves, or None = by extension).

    None is returned for a ``.pcd`` file read by extension (open3d reads its own header).
    """
    if layout is None:
        name = path.name.lower()
        if name.endswith(".pcd.bin"):
            return NUSCENES_COLUMNS
        if name.endswith(".bin"):
            return KITTI_COLUMNS
        if name.endswith(".pcd"):
            return None
        raise ValueError(
            f"{path}: unknown LiDAR file type (expected .pcd.bin [nuScenes, 5 columns], "
            f".bin [KITTI, 4 columns] or .pcd), or pass layout= one of {sorted(LIDAR_LAYOUTS)} "
            "or the column names"
        )
    if isinstance(layout, str):
        try:
            return LIDAR_LAYOUTS[layout]
        except KeyError:
            raise ValueError(
                f"{path}: unknown LiDAR layout {layout!r}; known: {sorted(LIDAR_LAYOUTS)} "
                "(or pass the column names, starting with x, y, z)"
            ) from None
    columns = tuple(layout)
    if columns[:3] != ("x", "y", "z") or len(set(columns)) != len(columns):
        raise ValueError(f"{path}: LiDAR layout columns must start x, y, z, unique: {columns}")
    return columns


def _likely_layouts(raw: np.ndarray, exclude: int) -> list[str]:
    """Layout names whose column count divides ``raw`` and whose rows look like points."""
    out = []
    for name, cols in LIDAR_LAYOUTS.items():
        c = len(cols)
        if c == exclude or raw.size % c:
            continue
        pts = raw.reshape(-1, c)
        if _implausible(pts, cols) is None:
            out.append(f"{name} ({c} columns)")
    return out


def _implausible(points: np.ndarray, columns: tuple[str, ...]) -> str | None:
    """Why these finite rows cannot be this layout, or None when they look like points."""
    if points.shape[0] == 0:
        return None
    xyz = points[:, :3]
    # This runs on every sweep read: reductions over the contiguous rows first (strided
    # column reductions cost 10x more); only when some value is that large are x, y, z
    # themselves looked at (another column, e.g. a timestamp, may legitimately be).
    flat = points.reshape(-1)
    if (flat.max() > MAX_PLAUSIBLE_COORD_M or flat.min() < -MAX_PLAUSIBLE_COORD_M) and (
        np.abs(xyz) > MAX_PLAUSIBLE_COORD_M
    ).any():
        with np.errstate(invalid="ignore"):
            big = np.abs(xyz) > MAX_PLAUSIBLE_COORD_M
        n = int(big.any(axis=1).sum())
        peak = float(np.abs(points[:, :3]).max())
        return (
            f"{n} of {points.shape[0]} points have a coordinate beyond "
            f"{MAX_PLAUSIBLE_COORD_M:.0f} m (max |value| {peak:.3g})"
        )
    if "ring" in columns:
        ring = points[:, columns.index("ring")]
        # A uint8 round trip keeps exactly the integers 0..255 (anything else changes value);
        # one cast and one compare instead of four passes.
        with np.errstate(invalid="ignore"):
            if MAX_RING_INDEX == 255 and np.array_equal(ring.astype(np.uint8), ring):
                return None
        with np.errstate(invalid="ignore"):
            bad = ~((ring >= 0) & (ring <= MAX_RING_INDEX) & (ring == np.floor(ring)))
        if bad.any():
            return (
                f"{int(bad.sum())} of {ring.size} ring values are not integers in "
                f"0..{MAX_RING_INDEX} (e.g. {float(ring[bad][0]):.6g})"
            )
    return None


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
    path: str | Path,
    timestamp_us: int = 0,
    channel: str = LIDAR_CHANNEL,
    layout: LidarLayout | None = None,
) -> LidarSweep:
    """Read one LiDAR sweep in the sensor frame with an explicit (or extension-default) layout.

    ``layout`` names the float32 row layout: ``"nuscenes"`` (x, y, z, intensity, ring),
    ``"kitti"`` (x, y, z, intensity), ``"waymo_kitti"`` (6 columns, mmdetection3d's Waymo
    converter), or the column names themselves. Without it the extension decides:
    ``.pcd.bin`` nuScenes, ``.bin`` KITTI, ``.pcd`` any PCD open3d reads (x, y, z, intensity;
    intensity 0 where the file has none). The column count is never guessed from the file
    size: a size that is not a whole number of rows, or rows that cannot be points (a
    coordinate beyond 1 km, a ``ring`` that is not a small non-negative integer), is refused
    naming the file and the layouts its content would fit. Rows with a NaN/inf in any column
    are dropped and counted in ``num_dropped_nonfinite``. An empty file is a valid, empty sweep.

    Args:
        path: the point file.
        timestamp_us: sweep timestamp (the file does not store it), microseconds.
        channel: LiDAR channel name.
        layout: row layout (see above); None = by extension.

    Returns:
        ``LidarSweep`` with ``frame="lidar"`` and the layout's columns.

    Raises:
        FileNotFoundError: the file does not exist (message names it).
        SensorFileError: wrong size for the layout, implausible rows, or an unreadable PCD.
        ValueError: unknown extension (without ``layout``) or unknown layout name.

    """
    path = Path(path)
    columns = _lidar_columns(path, layout)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LiDAR file not found")
    if columns is None:
        points = _read_pcd(path)
        columns = KITTI_COLUMNS
    else:
        row_bytes = 4 * len(columns)
        size = path.stat().st_size
        if size % row_bytes:
            fits = [f"{n} ({len(c)} columns)" for n, c in LIDAR_LAYOUTS.items()
                    if size % (4 * len(c)) == 0]
            raise SensorFileError(
                f"{path}: size {size} bytes is not a whole number of {len(columns)}-column "
                f"float32 rows ({row_bytes} bytes each); truncated or wrong layout"
                + (f" (the size would fit {', '.join(fits)})" if fits else "")
            )
        points = np.fromfile(path, dtype=np.float32).reshape(-1, len(columns))
    num_bad = 0
    # One flat pass first: the per-row reduction costs 4x more and is almost never needed.
    if not np.isfinite(points).all():
        finite = np.isfinite(points).all(axis=1)
        num_bad = int(points.shape[0] - np.count_nonzero(finite))
        points = points[finite]
    why = _implausible(points, columns)
    if why is not None:
        likely = _likely_layouts(points.reshape(-1), exclude=len(columns)) if num_bad == 0 else []
        raise SensorFileError(
            f"{path}: not a {len(columns)}-column {columns} point file: {why}; "
            + (f"it reads plausibly as {', '.join(likely)}; pass layout=" if likely
               else "wrong layout or not a point file; pass the right layout=")
        )
    return LidarSweep(
        points=points,
        columns=columns,
        timestamp_us=timestamp_us,
        channel=channel,
        frame="lidar",
        num_dropped_nonfinite=num_bad,
        source=str(path),
    )


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
    if reduction not in REDUCTIONS:
        raise ValueError(f"{path}: image reduction must be one of 1, 2, 4, 8, got {reduction}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: camera image not found ({channel})")
    # Calibration first: a bad K is refused by channel and field before any decoding, and
    # never reaches a singular K^-1 in the lift geometry.
    intrinsics = validate_intrinsics(intrinsics, f"{channel} ({path.name})")
    # imread returns None for unreadable files; read the bytes ourselves so that a truncated
    # JPEG (which libjpeg "decodes" with a grey bottom and only a warning) is caught too.
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise SensorFileError(f"{path}: camera image is empty (0 bytes) ({channel})")
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:].tobytes():
        raise SensorFileError(
            f"{path}: JPEG is truncated (no end-of-image marker) ({channel}, {data.size} bytes)"
        )
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    # JPEG: libjpeg's DCT-scaled decode gives ceil(W/r) pixels on a grid of exactly 1/r. Any
    # other format is decoded at full size and resized to floor(W/r) (what OpenCV's reduced
    # flags do for PNG, with the same interpolation), whose grid scale is (W/r rounded) / W,
    # not 1/r: the intrinsics follow the size actually produced.
    bgr = cv2.imdecode(data, _REDUCED_FLAGS[reduction] if is_jpeg else cv2.IMREAD_COLOR)
    if bgr is None:
        raise SensorFileError(f"{path}: cannot decode camera image ({channel}, {data.size} bytes)")
    scale_xy = (1.0 / reduction, 1.0 / reduction)
    if not is_jpeg and reduction > 1:
        full_h, full_w = bgr.shape[:2]
        out_w, out_h = max(1, full_w // reduction), max(1, full_h // reduction)
        bgr = cv2.resize(bgr, (out_w, out_h), interpolation=cv2.INTER_LINEAR_EXACT)
        scale_xy = (out_w / full_w, out_h / full_h)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    k_decoded = decoded_intrinsics(intrinsics, scale_xy)
    validate_intrinsics(k_decoded, f"{channel} ({path.name})", (rgb.shape[1], rgb.shape[0]))
    return CameraImage(
        image=rgb,
        intrinsics=k_decoded,
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
