"""Multi-sweep LiDAR accumulation with motion compensation (CenterPoint/BEVFusion style)."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from calibration.se3 import SE3
from sensors.types import ACCUMULATED_COLUMNS, LidarSweep


def remove_close(points: np.ndarray, radius_m: float) -> np.ndarray:
    """Drop rows with ``|x| < r and |y| < r`` (sensor frame): the nuScenes devkit's square rule.

    These are returns from the ego vehicle's own roof and body.
    """
    if radius_m <= 0 or points.shape[0] == 0:
        return points
    close = (np.abs(points[:, 0]) < radius_m) & (np.abs(points[:, 1]) < radius_m)
    return points[~close]


def accumulate_sweeps(
    sweeps: Sequence[LidarSweep],
    ref_SE3_sweeps: Sequence[SE3],  # noqa: N803 - frame naming convention
    ref_timestamp_us: int,
    min_distance_m: float = 1.0,
    frame: str = "ego",
) -> LidarSweep:
    """Merge sweeps into one reference frame with a ``time_lag_s`` column.

    Args:
        sweeps: LiDAR sweeps, each in its own sensor frame (the reference sweep first,
            then older ones, as the devkit's ``from_file_multisweep`` walks them).
        ref_SE3_sweeps: per sweep, its sensor frame at its own time -> the reference frame
            (``inv(global_SE3_ego@t_ref) @ global_SE3_ego@t_sweep @ ego_SE3_lidar``).
        ref_timestamp_us: reference timestamp; ``time_lag_s = (ref - sweep) / 1e6`` (>= 0 for
            past sweeps).
        min_distance_m: points with ``|x|, |y| < min_distance_m`` in the sensor frame are
            dropped first (ego-body returns), as the devkit does; 0 keeps everything.
        frame: name of the reference frame written to the result (``"ego"``).

    Returns:
        ``LidarSweep`` (N, 5) float32 ``[x, y, z, intensity, time_lag_s]`` in ``frame``;
        ``num_dropped_nonfinite`` sums the inputs'.

    """
    if len(sweeps) != len(ref_SE3_sweeps):
        raise ValueError(f"accumulate_sweeps: {len(sweeps)} sweeps but {len(ref_SE3_sweeps)} poses")
    total = sum(s.num_points for s in sweeps)
    points = np.empty((total, len(ACCUMULATED_COLUMNS)), np.float32)
    n = 0
    for sweep, pose in zip(sweeps, ref_SE3_sweeps):
        lag_s = (int(ref_timestamp_us) - sweep.timestamp_us) * 1e-6
        n += _transform_sweep(
            sweep.points, pose.rotation, pose.translation, float(min_distance_m), lag_s, points, n
        )
    return LidarSweep(
        points=points[:n],
        columns=ACCUMULATED_COLUMNS,
        timestamp_us=int(ref_timestamp_us),
        channel=sweeps[0].channel if sweeps else "LIDAR_TOP",
        frame=frame,
        num_dropped_nonfinite=sum(s.num_dropped_nonfinite for s in sweeps),
        source=sweeps[0].source if sweeps else "",
    )


def accumulate_sweeps_reference(
    sweeps: Sequence[LidarSweep],
    ref_SE3_sweeps: Sequence[SE3],  # noqa: N803 - frame naming convention
    ref_timestamp_us: int,
    min_distance_m: float = 1.0,
) -> np.ndarray:
    """Plain-numpy reference of ``accumulate_sweeps``: the (N, 5) float32 points only."""
    chunks = [np.zeros((0, len(ACCUMULATED_COLUMNS)), np.float32)]
    for sweep, pose in zip(sweeps, ref_SE3_sweeps):
        pts = remove_close(sweep.points, min_distance_m)
        out = np.empty((pts.shape[0], len(ACCUMULATED_COLUMNS)), np.float32)
        out[:, :3] = pose.transform_points(pts[:, :3].astype(np.float64))
        out[:, 3] = pts[:, 3] if pts.shape[1] > 3 else 0.0
        out[:, 4] = (int(ref_timestamp_us) - sweep.timestamp_us) * 1e-6
        chunks.append(out)
    return np.concatenate(chunks, axis=0)


@numba.njit(cache=True, nogil=True)
def _transform_sweep(points, rot, trans, min_dist, lag_s, out, start):  # pragma: no cover
    """Fused remove_close + rigid transform (float64 arithmetic) + time lag, in one pass.

    Writes rows from ``out[start]`` on and returns how many were kept. Numba, because the
    numpy version makes five passes over the points and spends 3 ms per nuScenes sweep in
    float64 casts; this is ~20x faster and bitwise identical (tested).
    """
    n = start
    has_intensity = points.shape[1] > 3
    lag = np.float32(lag_s)
    for i in range(points.shape[0]):
        x = np.float64(points[i, 0])
        y = np.float64(points[i, 1])
        z = np.float64(points[i, 2])
        if min_dist > 0 and abs(x) < min_dist and abs(y) < min_dist:
            continue
        for r in range(3):
            out[n, r] = rot[r, 0] * x + rot[r, 1] * y + rot[r, 2] * z + trans[r]
        out[n, 3] = points[i, 3] if has_intensity else np.float32(0.0)
        out[n, 4] = lag
        n += 1
    return n - start
