"""A random but self-consistent ``SyncedSample`` built in code (no files): boxes, LiDAR points
on them, six camera images and ultrasonic ranges.

For benchmarks and tests that need a full sample without a dataroot
(``drivefuse bench-model`` without ``--dataroot``, the model tests).
"""

from __future__ import annotations

import numpy as np

from calibration.sample import Boxes3D, CameraView, CanBusState, SyncedSample
from calibration.se3 import SE3
from sensors.types import (
    ACCUMULATED_COLUMNS,
    CAMERA_CHANNELS,
    CameraImage,
    LidarSweep,
    UltrasonicScan,
)

# Camera yaw (about ego z) of each channel, nuScenes-like ring.
_CAM_YAW_DEG = (0.0, -55.0, 55.0, 180.0, 110.0, -110.0)


def camera_pose(yaw_deg: float) -> SE3:
    """Camera (x right, y down, z forward) -> ego, mounted 1.5 m up, looking along yaw."""
    # Optical frame axes in ego coordinates for yaw 0: z_cam = +x_ego, x_cam = -y_ego, y_cam = -z.
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    yaw = np.radians(yaw_deg)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    return SE3(rz @ base, np.array([1.5, 0.0, 1.5]))


def make_sample(
    seed: int = 0,
    num_boxes: int = 6,
    image_hw: tuple[int, int] = (90, 160),
    points_per_box: int = 150,
    background_points: int = 2000,
    with_ultrasonic: bool = True,
) -> SyncedSample:
    """A random but self-consistent sample: boxes, LiDAR points on them, images, ultrasonic."""
    rng = np.random.default_rng(seed)
    n = num_boxes
    center = np.column_stack(
        [rng.uniform(-30, 30, n), rng.uniform(-30, 30, n), rng.uniform(-1.0, 0.0, n)]
    )
    center[0, :2] = (6.0, 0.5)  # one object right in front of the ego car
    labels = rng.choice([0, 1, 5, 8, 9], size=n)
    wlh = np.where(
        np.isin(labels, [0, 1])[:, None], [1.9, 4.5, 1.6], [0.6, 0.7, 1.7]
    ) * rng.uniform(0.9, 1.1, (n, 3))
    yaw = rng.uniform(-np.pi, np.pi, n)
    vel = rng.normal(0, 2, (n, 2))
    boxes = Boxes3D(center, wlh, yaw, vel, labels, np.ones(n), num_lidar_pts=np.full(n, 50))
    # Points sampled inside each box, plus a ground plane.
    pts = []
    for i in range(n):
        local = rng.uniform(-0.5, 0.5, (points_per_box, 3)) * wlh[i][[1, 0, 2]]
        c, s = np.cos(yaw[i]), np.sin(yaw[i])
        xy = local[:, :2] @ np.array([[c, s], [-s, c]])
        pts.append(np.column_stack([xy + center[i, :2], local[:, 2] + center[i, 2]]))
    ground = np.column_stack(
        [rng.uniform(-50, 50, (background_points, 2)), np.full(background_points, -1.8)]
    )
    xyz = np.concatenate(pts + [ground])
    cols = np.column_stack(
        [xyz, rng.uniform(0, 100, len(xyz)), rng.choice([0.0, 0.05, 0.1], len(xyz))]
    ).astype(np.float32)
    lidar = LidarSweep(cols, ACCUMULATED_COLUMNS, 1_000_000, frame="ego")
    h, w = image_hw
    k = np.array([[w * 0.6, 0, w / 2 - 0.5], [0, w * 0.6, h / 2 - 0.5], [0, 0, 1.0]])
    cams = tuple(
        CameraView(
            CameraImage(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), k, 1_000_000, ch),
            camera_pose(_CAM_YAW_DEG[i]),
        )
        for i, ch in enumerate(CAMERA_CHANNELS)
    )
    ranges = rng.uniform(0.5, 5.0, 12).astype(np.float32)
    ranges[rng.random(12) < 0.5] = np.nan
    us = UltrasonicScan(ranges, 1_000_000) if with_ultrasonic else None
    fut = np.column_stack([np.arange(1, 7) * 2.5, 0.05 * np.arange(1, 7) ** 2])
    return SyncedSample(
        token=f"tok{seed}",
        scene_token="scene",
        timestamp_us=1_000_000,
        global_SE3_ego=SE3.identity(),
        lidar=lidar,
        cameras=cams,
        ultrasonic=us,
        boxes=boxes,
        can_bus=CanBusState(5.0, 0.02, 0.0, 0.0),
        future_xy_ego_m=fut,
        command=2,
    )


def accumulated_sweeps(sweep: np.ndarray, num_sweeps: int = 10) -> np.ndarray:
    """Multi-sweep accumulation look-alike, (N * num_sweeps, 5).

    The sweep seen from an ego moving 8 m/s and turning 0.3 deg per 50 ms sweep, 2 cm jitter,
    time lag in column 4.
    """
    rng = np.random.default_rng(7)
    parts = []
    for k in range(num_sweeps):
        p = sweep.copy()
        yaw = np.deg2rad(0.3 * k)
        c, s = np.cos(yaw), np.sin(yaw)
        x, y = p[:, 0].copy(), p[:, 1].copy()
        p[:, 0] = c * x - s * y + 0.4 * k
        p[:, 1] = s * x + c * y
        p[:, :3] += rng.normal(0.0, 0.02, size=(len(p), 3)).astype(np.float32)
        p[:, 4] = np.float32(0.05 * k)
        parts.append(p)
    return np.concatenate(parts).astype(np.float32)
