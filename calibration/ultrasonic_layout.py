"""Geometry of the 12 bumper ultrasonic sensors in the ego frame (x forward, y left, z up).

The ego origin is the centre of the rear axle on the ground (nuScenes convention). The layout
is sized for the nuScenes ego car (Renault Zoe: 4.1 m long, 1.73 m wide): six sensors across
the front bumper and six across the rear, the outer ones angled to cover the corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensors.types import NUM_ULTRASONIC_SENSORS

FRONT_BUMPER_X_M = 3.45
REAR_BUMPER_X_M = -0.85
HALF_WIDTH_M = 0.87
MOUNT_HEIGHT_M = 0.5
MIN_RANGE_M = 0.15
MAX_RANGE_M = 5.5


@dataclass(frozen=True, eq=False)
class UltrasonicLayout:
    """Poses and cones of the ultrasonic sensors.

    Attributes:
        names: (12,) sensor names, front left-to-right then rear right-to-left.
        position_ego_m: (12, 3) float64 sensor positions in the ego frame, metres.
        yaw_ego_rad: (12,) float64 boresight headings in the ego frame, radians.
        half_fov_rad: half opening angle of each cone, radians.
        min_range_m / max_range_m: usable range of an echo, metres.

    """

    names: tuple[str, ...]
    position_ego_m: np.ndarray
    yaw_ego_rad: np.ndarray
    half_fov_rad: float = float(np.radians(30.0))
    min_range_m: float = MIN_RANGE_M
    max_range_m: float = MAX_RANGE_M


def default_layout() -> UltrasonicLayout:
    """The 12-sensor layout used by the synthetic generator and virtual ultrasonic."""
    # Lateral offsets across a bumper (left to right) and the matching boresight yaw offsets:
    # outer sensors look sideways-diagonal to cover the corners.
    lateral = np.array([0.87, 0.6, 0.2, -0.2, -0.6, -0.87])
    yaw_off = np.radians([70.0, 35.0, 5.0, -5.0, -35.0, -70.0])
    names, pos, yaw = [], [], []
    for i, (y, dyaw) in enumerate(zip(lateral, yaw_off)):
        # Corner sensors sit slightly behind the bumper tip, on the rounded corner.
        x = FRONT_BUMPER_X_M - (0.25 if abs(y) > 0.8 else 0.0)
        names.append(f"US_FRONT_{i}")
        pos.append((x, y, MOUNT_HEIGHT_M))
        yaw.append(dyaw)
    for i, (y, dyaw) in enumerate(zip(lateral[::-1], yaw_off)):
        x = REAR_BUMPER_X_M + (0.25 if abs(y) > 0.8 else 0.0)
        names.append(f"US_REAR_{i}")
        pos.append((x, y, MOUNT_HEIGHT_M))
        yaw.append(np.pi + dyaw)
    yaw_arr = np.arctan2(np.sin(yaw), np.cos(yaw))
    assert len(names) == NUM_ULTRASONIC_SENSORS
    return UltrasonicLayout(tuple(names), np.array(pos, dtype=np.float64), yaw_arr)
