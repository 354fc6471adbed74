"""``SampleArrays``: one sample reduced to what the network reads, and its ``.npz`` cache file.

``perception.prepare.prepare_sample`` makes them from a ``SyncedSample`` (the expensive,
deterministic step that training caches on disk); ``perception.batch.collate`` stacks them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from perception.backbones.camera_inputs import NUM_CAMERAS
from perception.config import MODALITY_ORDER
from sensors.lidar_rings import rings_from_origin


@dataclass(frozen=True, eq=False)
class SampleArrays:
    """One sample reduced to what the network reads (numpy, cacheable with ``save``).

    Attributes:
        token: sample token.
        images: (6, H, W, 3) uint8 at ``cfg.camera.image_hw``; zeros where a camera is missing.
        intrinsics: (6, 3, 3) float32 K matching ``images`` (identity where missing).
        ego_SE3_cam: (6, 4, 4) float32 camera -> reference ego (identity where missing).
        camera_mask: (6,) bool.
        points: (N, 5) float32 [x, y, z, intensity, time_lag_s] inside the grid, ego frame.
        ultrasonic_m: (12,) float32 ranges, NaN = no echo.
        us_position_m: (12, 3) float32 sensor positions (ego frame).
        us_yaw_rad: (12,) float32 sensor boresights.
        us_half_fov_rad / us_max_range_m: cone geometry.
        presence: (3,) bool in ``MODALITY_ORDER``.
        command: ``sensors.types.DrivingCommand`` value (0 right, 1 left, 2 straight).
        ego_status: (2,) float32 [speed m/s, yaw rate rad/s] (zeros when the CAN bus is absent).
        heatmap: (num_classes, H, W) float32 Gaussian targets (grouped class order) or empty.
        reg_index: (G, K) int64 flat cell index per object slot.
        reg_target: (G, K, 10) float32 ``REG_CHANNELS``.
        reg_mask: (G, K) float32 1 for a real object.
        vel_mask: (G, K) float32 1 where the velocity is known.
        plan_target: (6, 2) float32 future ego xy (0 where unknown).
        plan_mask: (6,) float32 1 where the future position is known.
        global_SE3_ego: (4, 4) float64 ego pose (to write nuScenes results in global frame).

    """

    token: str
    images: np.ndarray
    intrinsics: np.ndarray
    ego_SE3_cam: np.ndarray  # noqa: N815 - frame naming convention
    camera_mask: np.ndarray
    points: np.ndarray
    ultrasonic_m: np.ndarray
    us_position_m: np.ndarray
    us_yaw_rad: np.ndarray
    us_half_fov_rad: float
    us_max_range_m: float
    presence: np.ndarray
    command: int
    ego_status: np.ndarray
    heatmap: np.ndarray
    reg_index: np.ndarray
    reg_target: np.ndarray
    reg_mask: np.ndarray
    vel_mask: np.ndarray
    plan_target: np.ndarray
    plan_mask: np.ndarray
    global_SE3_ego: np.ndarray  # noqa: N815 - frame naming convention

    @property
    def has_targets(self) -> bool:
        """True when detection targets were computed (annotated sample)."""
        return self.heatmap.size > 0

    def save(self, path: Path) -> None:
        """Write to an uncompressed ``.npz`` (a cache entry; images stay uint8)."""
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        np.savez(path, **arrays)

    @staticmethod
    def load(path: Path) -> SampleArrays:
        """Read a ``save``d entry; a missing key raises naming the file."""
        with np.load(path, allow_pickle=False) as z:
            kw = {}
            for f in fields(SampleArrays):
                if f.name not in z:
                    raise ValueError(f"{path}: cache entry lacks {f.name!r} (stale cache?)")
                kw[f.name] = z[f.name]
        kw["token"] = str(kw["token"])
        kw["command"] = int(kw["command"])
        kw["us_half_fov_rad"] = float(kw["us_half_fov_rad"])
        kw["us_max_range_m"] = float(kw["us_max_range_m"])
        return SampleArrays(**kw)

    def without(self, modalities: tuple[str, ...]) -> SampleArrays:
        """The same sample with the named modalities removed (modality dropout, fault tests)."""
        presence = self.presence.copy()
        kw = {}
        for m in modalities:
            presence[MODALITY_ORDER.index(m)] = False
            match m:
                case "camera":
                    kw["camera_mask"] = np.zeros(NUM_CAMERAS, bool)
                    kw["images"] = np.zeros_like(self.images)
                case "lidar":
                    kw["points"] = np.zeros((0, self.points.shape[1]), np.float32)
                case "ultrasonic":
                    kw["ultrasonic_m"] = np.full(12, np.nan, np.float32)
        return replace(self, presence=presence, **kw)

    def without_cameras(self, drop: np.ndarray) -> SampleArrays:
        """The same sample with the cameras where ``drop`` (6,) is True removed."""
        mask = self.camera_mask & ~drop
        images = self.images.copy()
        images[~mask] = 0
        presence = self.presence.copy()
        presence[0] = presence[0] and bool(mask.any())
        return replace(self, camera_mask=mask, images=images, presence=presence)

    def without_rings(self, dropped: np.ndarray) -> SampleArrays:
        """The same sample without the LiDAR points of the rings in ``dropped`` (beams lost).

        Rings are read from each point's elevation seen from the roof LiDAR's mount
        (``sensors.lidar_rings``). The LiDAR stays present even when no point is left: a
        sensor that returns nothing is not a sensor that is missing.
        """
        keep = ~np.isin(rings_from_origin(self.points), np.asarray(dropped, np.int64))
        return replace(self, points=np.ascontiguousarray(self.points[keep]))
