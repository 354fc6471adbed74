"""Ring geometry of the 32-beam roof LiDAR (nuScenes LIDAR_TOP, an HDL-32E; the synthetic rig
copies it): which beam fired a point, from its elevation seen from the sensor.

Shared by the evaluation corruptions (``eval.corruptions``: beam missing, cross-sensor) and by
training's partial-fault schedule (``perception.sample_arrays.SampleArrays.without_rings``),
so that both drop the same rings for the same points.
"""

from __future__ import annotations

import numpy as np

# HDL-32E beam elevations, evenly spaced (nuScenes LIDAR_TOP; the synthetic rig uses the same).
NUM_RINGS = 32
RING_ELEVATION_MIN_DEG = -30.67
RING_ELEVATION_MAX_DEG = 10.67
# Where LIDAR_TOP sits on the nuScenes (and synthetic) car, ego frame, metres: the sweep
# origin used when nothing says otherwise.
DEFAULT_LIDAR_ORIGIN_M = (0.943, 0.0, 1.84)


def ring_of_elevation(elevation_deg: np.ndarray) -> np.ndarray:
    """(N,) int64 ring (0 = lowest beam): the beam nearest each elevation (degrees)."""
    step = (RING_ELEVATION_MAX_DEG - RING_ELEVATION_MIN_DEG) / (NUM_RINGS - 1)
    ring = np.rint((np.asarray(elevation_deg, np.float64) - RING_ELEVATION_MIN_DEG) / step)
    return np.clip(ring, 0, NUM_RINGS - 1).astype(np.int64)


def rings_from_origin(
    points_xyz_m: np.ndarray,
    origin_m: tuple[float, float, float] | np.ndarray = DEFAULT_LIDAR_ORIGIN_M,
) -> np.ndarray:
    """(N,) int64 ring of each point (N, >=3; ego frame, metres) seen from one ``origin_m``.

    Points of earlier accumulated sweeps were fired from where the sensor was then; one origin
    puts those a fraction of a ring off near the car, which an augmentation can afford and the
    benchmark corruptions avoid (they pass each sweep's own origin).
    """
    d = np.asarray(points_xyz_m, np.float64)[:, :3] - np.asarray(origin_m, np.float64)
    return ring_of_elevation(np.degrees(np.arctan2(d[:, 2], np.hypot(d[:, 0], d[:, 1]))))
