"""``SyncedSample``: all modalities of one tick in the reference ego frame.

Everything downstream of ``calibration/`` reads this type. The reference frame is the ego
frame at the reference LiDAR timestamp (x forward, y left, z up, metres).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calibration.se3 import SE3
from calibration.ultrasonic_layout import UltrasonicLayout, default_layout
from sensors.types import (
    CAMERA_CHANNELS,
    DETECTION_CLASSES,
    CameraImage,
    DrivingCommand,
    LidarSweep,
    Modality,
    UltrasonicScan,
)


def _ro(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(a, dtype=dtype))
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Boxes3D:
    """N 3D boxes in one frame (the reference ego frame unless stated).

    Attributes:
        center_m: (N, 3) float64 geometric box centre, metres.
        wlh_m: (N, 3) float64 width, length, height (nuScenes order), metres.
        yaw_rad: (N,) float64 heading about +z; the box length runs along its local x.
        velocity_mps: (N, 2) float64 (vx, vy) in the same frame; NaN when unknown.
        labels: (N,) int64 index into ``DETECTION_CLASSES``.
        scores: (N,) float64 confidence in [0, 1] (1 for ground truth).
        attributes: N attribute names (nuScenes, e.g. ``"vehicle.moving"``) or ``""``.
        num_lidar_pts: (N,) int64 LiDAR points inside each box (-1 when unknown).
        instance_tokens: N instance tokens (ground truth) or ``""``.

    """

    center_m: np.ndarray
    wlh_m: np.ndarray
    yaw_rad: np.ndarray
    velocity_mps: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    attributes: tuple[str, ...] = ()
    num_lidar_pts: np.ndarray | None = None
    instance_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = np.asarray(self.center_m).reshape(-1, 3).shape[0]
        object.__setattr__(self, "center_m", _ro(np.reshape(self.center_m, (n, 3)), np.float64))
        object.__setattr__(self, "wlh_m", _ro(np.reshape(self.wlh_m, (n, 3)), np.float64))
        object.__setattr__(self, "yaw_rad", _ro(np.reshape(self.yaw_rad, (n,)), np.float64))
        object.__setattr__(
            self, "velocity_mps", _ro(np.reshape(self.velocity_mps, (n, 2)), np.float64)
        )
        object.__setattr__(self, "labels", _ro(np.reshape(self.labels, (n,)), np.int64))
        object.__setattr__(self, "scores", _ro(np.reshape(self.scores, (n,)), np.float64))
        pts = self.num_lidar_pts
        object.__setattr__(
            self,
            "num_lidar_pts",
            _ro(np.full(n, -1) if pts is None else np.reshape(pts, (n,)), np.int64),
        )
        object.__setattr__(self, "attributes", tuple(self.attributes) or ("",) * n)
        object.__setattr__(self, "instance_tokens", tuple(self.instance_tokens) or ("",) * n)
        if len(self.attributes) != n or len(self.instance_tokens) != n:
            raise ValueError("Boxes3D: attributes/instance_tokens length does not match N")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(DETECTION_CLASSES)):
            raise ValueError(f"Boxes3D: label out of range 0..{len(DETECTION_CLASSES) - 1}")

    @staticmethod
    def empty() -> Boxes3D:
        """No boxes."""
        z = np.zeros((0,))
        return Boxes3D(z, z, z, z, z.astype(np.int64), z)

    def __len__(self) -> int:
        return int(self.center_m.shape[0])

    @property
    def class_names(self) -> list[str]:
        """Detection class name of each box."""
        return [DETECTION_CLASSES[i] for i in self.labels]

    def subset(self, mask_or_index: np.ndarray) -> Boxes3D:
        """Boxes selected by a boolean mask or an index array."""
        idx = np.arange(len(self))[mask_or_index]
        return Boxes3D(
            self.center_m[idx],
            self.wlh_m[idx],
            self.yaw_rad[idx],
            self.velocity_mps[idx],
            self.labels[idx],
            self.scores[idx],
            tuple(self.attributes[i] for i in idx),
            None if self.num_lidar_pts is None else self.num_lidar_pts[idx],
            tuple(self.instance_tokens[i] for i in idx),
        )

    def transformed(self, dst_SE3_src: SE3) -> Boxes3D:  # noqa: N803 - frame naming convention
        """The same boxes expressed in another frame (centre, yaw and velocity rotated)."""
        center = dst_SE3_src.transform_points(self.center_m)
        vel3 = np.concatenate([self.velocity_mps, np.zeros((len(self), 1))], axis=1)
        vel = dst_SE3_src.transform_vectors(vel3)[:, :2]
        return Boxes3D(
            center,
            self.wlh_m,
            self.yaw_rad + dst_SE3_src.yaw_rad,
            vel,
            self.labels,
            self.scores,
            self.attributes,
            self.num_lidar_pts,
            self.instance_tokens,
        )

    def corners(self) -> np.ndarray:
        """(N, 8, 3) float64 box corners; first four on the bottom face, counter-clockwise."""
        w, length, h = self.wlh_m[:, 0], self.wlh_m[:, 1], self.wlh_m[:, 2]
        sx = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * 0.5
        sy = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * 0.5
        sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * 0.5
        local = np.stack([length[:, None] * sx, w[:, None] * sy, h[:, None] * sz], axis=-1)
        c, s = np.cos(self.yaw_rad)[:, None], np.sin(self.yaw_rad)[:, None]
        x = local[..., 0] * c - local[..., 1] * s
        y = local[..., 0] * s + local[..., 1] * c
        return np.stack([x, y, local[..., 2]], axis=-1) + self.center_m[:, None, :]

    def points_in_boxes(self, points_xyz: np.ndarray) -> np.ndarray:
        """(N_boxes, N_points) bool: point inside box, bounds inclusive (the devkit's rule)."""
        p = np.asarray(points_xyz, dtype=np.float64)[None, :, :] - self.center_m[:, None, :]
        c, s = np.cos(self.yaw_rad)[:, None], np.sin(self.yaw_rad)[:, None]
        lx = p[..., 0] * c + p[..., 1] * s
        ly = -p[..., 0] * s + p[..., 1] * c
        half = self.wlh_m / 2.0
        return (
            (np.abs(lx) <= half[:, 1:2])
            & (np.abs(ly) <= half[:, 0:1])
            & (np.abs(p[..., 2]) <= half[:, 2:3])
        )


@dataclass(frozen=True)
class CanBusState:
    """Vehicle state from the CAN bus (nuScenes CAN bus expansion) at the sample time.

    Attributes:
        speed_mps: forward speed, m/s.
        yaw_rate_radps: yaw rate about +z, rad/s.
        accel_mps2: longitudinal acceleration, m/s^2.
        steering_rad: steering-wheel angle, radians (positive = left).

    """

    speed_mps: float
    yaw_rate_radps: float
    accel_mps2: float
    steering_rad: float


@dataclass(frozen=True, eq=False)
class CameraView:
    """A camera image plus where it looked from, in the reference ego frame.

    Attributes:
        image: the decoded image with matching intrinsics.
        ref_SE3_cam: camera frame (at the camera's own timestamp) -> reference ego frame
            (at the reference LiDAR timestamp), ego motion between the two folded in.
        time_offset_us: camera timestamp minus reference timestamp.

    """

    image: CameraImage
    ref_SE3_cam: SE3  # noqa: N815 - frame naming convention
    time_offset_us: int = 0


@dataclass(frozen=True, eq=False)
class SyncedSample:
    """All modalities of one tick, in the reference ego frame.

    Attributes:
        token: sample (keyframe) token, or the LiDAR sample_data token for a non-key sweep.
        scene_token: the scene it belongs to.
        timestamp_us: reference LiDAR timestamp.
        global_SE3_ego: ego pose at ``timestamp_us``.
        lidar: accumulated sweep in the reference ego frame, columns
            ``(x, y, z, intensity, time_lag_s)``; None when the LiDAR is missing.
        cameras: one entry per ``CAMERA_CHANNELS`` position; None where that camera is missing.
        ultrasonic: the 12 ranges (measured, or derived from LiDAR and marked so), or None.
        ultrasonic_layout: sensor geometry in the ego frame.
        boxes: ground-truth boxes in the reference ego frame, or None (no annotation).
        can_bus: vehicle state, or None when the CAN bus expansion is absent.
        future_xy_ego_m: (6, 2) ground-truth future ego positions at +0.5 .. +3.0 s in the
            reference ego frame (planning target), NaN where the scene ends; or None.
        command: driving command from the route: 0 = right, 1 = left, 2 = straight.
        is_keyframe: True for an annotated 2 Hz keyframe.

    """

    token: str
    scene_token: str
    timestamp_us: int
    global_SE3_ego: SE3  # noqa: N815 - frame naming convention
    lidar: LidarSweep | None
    cameras: tuple[CameraView | None, ...] = field(default=(None,) * len(CAMERA_CHANNELS))
    ultrasonic: UltrasonicScan | None = None
    ultrasonic_layout: UltrasonicLayout = field(default_factory=default_layout)
    boxes: Boxes3D | None = None
    can_bus: CanBusState | None = None
    future_xy_ego_m: np.ndarray | None = None
    command: DrivingCommand = DrivingCommand.STRAIGHT
    is_keyframe: bool = True

    def __post_init__(self) -> None:
        if len(self.cameras) != len(CAMERA_CHANNELS):
            raise ValueError(
                f"SyncedSample {self.token}: cameras must have {len(CAMERA_CHANNELS)} entries "
                f"(None for a missing camera), got {len(self.cameras)}"
            )
        if self.lidar is not None and self.lidar.frame != "ego":
            raise ValueError(f"SyncedSample {self.token}: lidar must be in the ego frame")
        if self.future_xy_ego_m is not None:
            object.__setattr__(
                self, "future_xy_ego_m", _ro(np.reshape(self.future_xy_ego_m, (-1, 2)), np.float64)
            )

    @property
    def camera_mask(self) -> np.ndarray:
        """(6,) bool: camera present, in ``CAMERA_CHANNELS`` order."""
        return np.array([c is not None for c in self.cameras], dtype=bool)

    @property
    def presence(self) -> dict[Modality, bool]:
        """Which modalities are present (camera counts as present if any camera is)."""
        return {
            Modality.CAMERA: bool(self.camera_mask.any()),
            Modality.LIDAR: self.lidar is not None,
            Modality.ULTRASONIC: self.ultrasonic is not None,
        }
