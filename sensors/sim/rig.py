"""Sensor rig of the synthetic ego car, modelled on the nuScenes rig (Renault Zoe).

Poses are ``ego_SE3_sensor`` in the ego frame (origin at the rear axle centre on the ground,
x forward, y left, z up). Cameras use the OpenCV/nuScenes camera frame (x right, y down,
z forward); the LiDAR frame follows nuScenes' LIDAR_TOP (x right, y forward, z up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.se3 import SE3
from sensors.types import CAMERA_CHANNELS

# Ego body extents in the ego frame, metres (nuScenes ego: 4.1 m x 1.73 m; rear axle ~0.85 m
# ahead of the rear bumper). Used as a LiDAR self-occluder and for ultrasonic geometry.
EGO_LENGTH_M = 4.3
EGO_WIDTH_M = 1.74
EGO_HEIGHT_M = 1.56
EGO_REAR_X_M = -0.85
EGO_FRONT_X_M = EGO_REAR_X_M + EGO_LENGTH_M
EGO_WHEELBASE_M = 2.59

LIDAR_TRANSLATION_M = (0.943, 0.0, 1.84)

# The ego's own body as two boxes (centre, half size) in the ego frame, used as LiDAR
# self-occluder: a lower body up to the bonnet line and a narrow cabin under the roof mount.
# Sized so that, like the nuScenes rig, the lowest ~5 of 32 beams end on the roof and beam
# 5 (-24 deg) reaches the ground ~4 m from the sensor.
EGO_BODY_BOXES: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = (
    ((EGO_REAR_X_M + EGO_LENGTH_M / 2, 0.0, 0.475), (EGO_LENGTH_M / 2, EGO_WIDTH_M / 2, 0.475)),
    ((0.95, 0.0, 1.25), (0.6, 0.6, 0.31)),
)


@dataclass(frozen=True)
class CameraSpec:
    """One camera: mounting and pinhole model at 1600x900 (scaled for smaller images).

    Attributes:
        channel: nuScenes channel name.
        translation_m: position in the ego frame.
        yaw_deg: heading of the optical axis in the ego frame (0 = forward, + = left).
        pitch_deg: downward tilt of the optical axis, degrees (positive looks down).
        focal_px_1600: focal length in pixels at 1600x900.
        time_offset_us: exposure time relative to the LiDAR sweep timestamp (nuScenes cameras
            fire as the LiDAR sweeps past them, before the sweep's end timestamp).

    """

    channel: str
    translation_m: tuple[float, float, float]
    yaw_deg: float
    pitch_deg: float
    focal_px_1600: float
    time_offset_us: int


# nuScenes-like camera rig (positions and focal lengths close to the real calibration;
# CAM_BACK has the wider lens: f = 809 px at 1600 px, ~89 deg horizontal field of view).
CAMERA_SPECS: tuple[CameraSpec, ...] = (
    CameraSpec("CAM_FRONT", (1.70, 0.016, 1.51), 0.0, 0.3, 1266.4, -35_000),
    CameraSpec("CAM_FRONT_RIGHT", (1.55, -0.49, 1.50), -55.0, 0.3, 1260.0, -27_500),
    CameraSpec("CAM_FRONT_LEFT", (1.52, 0.49, 1.51), 55.0, 0.3, 1257.0, -43_000),
    CameraSpec("CAM_BACK", (0.03, 0.0, 1.57), 180.0, 0.3, 809.2, -10_500),
    CameraSpec("CAM_BACK_LEFT", (1.04, 0.48, 1.56), 110.0, 0.3, 1256.7, -500),
    CameraSpec("CAM_BACK_RIGHT", (1.05, -0.48, 1.56), -110.0, 0.3, 1259.5, -20_000),
)
assert tuple(c.channel for c in CAMERA_SPECS) == CAMERA_CHANNELS


def camera_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """``ego_R_cam`` (3, 3): columns are the camera x (right), y (down), z (forward) axes."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd], axis=1)


def camera_intrinsics(spec: CameraSpec, width: int, height: int) -> np.ndarray:
    """(3, 3) pinhole K for a ``width`` x ``height`` image (principal point near centre)."""
    s = width / 1600.0
    return np.array(
        [
            [spec.focal_px_1600 * s, 0.0, (width / 2.0) + 6.0 * s],
            [0.0, spec.focal_px_1600 * s, (height / 2.0) + 8.0 * s],
            [0.0, 0.0, 1.0],
        ]
    )


def ego_SE3_camera(spec: CameraSpec) -> SE3:  # noqa: N802 - frame naming convention
    """Camera pose in the ego frame."""
    return SE3(camera_rotation(spec.yaw_deg, spec.pitch_deg), np.array(spec.translation_m))


def ego_SE3_lidar() -> SE3:  # noqa: N802 - frame naming convention
    """LIDAR_TOP pose in the ego frame; LiDAR x points right, y forward (yaw -90 deg)."""
    return SE3.from_yaw(-np.pi / 2.0, np.array(LIDAR_TRANSLATION_M))


def lidar_beam_elevations_rad(num_beams: int, min_deg: float, max_deg: float) -> np.ndarray:
    """(num_beams,) float64 beam elevations, ring 0 lowest."""
    return np.radians(np.linspace(min_deg, max_deg, num_beams))
