"""Batching: ``collate(arrays, cfg)`` stacks ``SampleArrays`` into a torch ``Batch``: pillars
by the voxelization kernel, the lift-splat cell index of every frustum point, the painting
index, the ultrasonic raster, normalised images and stacked targets.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from perception.backbones.camera_inputs import (
    NUM_CAMERAS,
    frustum_cell_index_cached,
    lidar_depth_target,
    normalized_images,
)
from perception.backbones.lidar_inputs import paint_index, pillar_grid_hw, voxelize_points
from perception.backbones.ultrasonic_inputs import ultrasonic_bev
from perception.config import MODALITY_ORDER, FusionKind, ModelConfig
from perception.sample_arrays import SampleArrays
from perception.timing import Stopwatch, maybe_stage
from sensors.types import Modality


@dataclass(frozen=True, eq=False)
class Batch:
    """Network inputs (and optional targets) for B samples, as torch tensors.

    Attributes:
        images: (B, 6, 3, H, W) float32 normalised.
        camera_mask: (B, 6) bool.
        cell_index: (B, 6, D, h, w) int64 BEV cell of each frustum point, -1 outside the grid.
        img_from_ego: (B, 6, 3, 4) float32 projection to feature-map pixels, pixel j covering
            [j, j + 1) (serial painting).
        paint_index: (M, P) int64 flat index into (B, 6, h, w) image features of the camera
            pixel that paints each pillar point (first camera in order that sees it), -1 none.
        pillars: (M, P, 11) float32 pillar point features of all samples.
        pillar_coords: (M, 4) int64 [batch, z, y, x] on the pillar grid.
        pillar_num_points: (M,) int64.
        ultrasonic_raster: (B, 2, Hp, Wp) float32 free / occupied evidence on the pillar grid.
        presence: (B, 3) bool in ``MODALITY_ORDER``.
        command: (B,) int64.
        ego_status: (B, 2) float32.
        heatmap .. plan_mask: targets as in ``SampleArrays`` stacked over B, or None.
        camera_bev / lidar_bev: precomputed BEV maps of frozen branches (training from a
            feature cache), or None to run the branch.
        depth_target: (B, 6, h, w) int64 lift depth bin of the nearest LiDAR return seen by
            each feature pixel, -1 where none (depth supervision of the camera branch), or None.

    """

    images: torch.Tensor
    camera_mask: torch.Tensor
    cell_index: torch.Tensor
    img_from_ego: torch.Tensor
    paint_index: torch.Tensor
    pillars: torch.Tensor
    pillar_coords: torch.Tensor
    pillar_num_points: torch.Tensor
    ultrasonic_raster: torch.Tensor
    presence: torch.Tensor
    command: torch.Tensor
    ego_status: torch.Tensor
    heatmap: torch.Tensor | None = None
    reg_index: torch.Tensor | None = None
    reg_target: torch.Tensor | None = None
    reg_mask: torch.Tensor | None = None
    vel_mask: torch.Tensor | None = None
    plan_target: torch.Tensor | None = None
    plan_mask: torch.Tensor | None = None
    camera_bev: torch.Tensor | None = None
    lidar_bev: torch.Tensor | None = None
    depth_target: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        """B."""
        return int(self.presence.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """All tensors moved to ``device``."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        return Batch(**kw)


def collate(
    samples: list[SampleArrays],
    cfg: ModelConfig,
    watch: Stopwatch | None = None,
    skip: tuple[str, ...] = (),
    depth_targets: bool = False,
) -> Batch:
    """Stack per-sample arrays into a ``Batch``: voxelize, lift geometry, raster, normalise.

    Targets are included only when every sample has them. Modalities the model does not use
    are skipped (no voxelization for ``camera_only``), but still count in ``presence``; so are
    those named in ``skip`` (their BEV maps come from a feature cache). ``depth_targets``
    adds the LiDAR depth targets of the camera lift (training only: inference never needs
    them).
    """
    b = len(samples)
    uses_cam, uses_lidar, uses_us = (
        (cfg.reads_camera_pixels if m == Modality.CAMERA else cfg.has_branch(m))
        and m not in skip for m in MODALITY_ORDER
    )
    with maybe_stage(watch, "voxelize"):
        feats, coords, nums = [], [], []
        if uses_lidar:
            for i, s in enumerate(samples):
                f, c, n = voxelize_points(s.points if s.presence[1] else s.points[:0], cfg)
                feats.append(f)
                coords.append(np.concatenate([np.full((len(c), 1), i, np.int32), c], axis=1))
                nums.append(n)
        p = cfg.lidar.max_points_per_pillar
        ch = cfg.lidar.point_channels + 6
        empty = np.zeros((0, p, ch), np.float32)
        pillars = torch.from_numpy(np.concatenate(feats) if feats else empty)
        pillar_coords = torch.from_numpy(
            np.concatenate(coords).astype(np.int64) if coords else np.zeros((0, 4), np.int64)
        )
        pillar_num = torch.from_numpy(
            np.concatenate(nums).astype(np.int64) if nums else np.zeros((0,), np.int64)
        )
    with maybe_stage(watch, "camera_prep"):
        d = int(cfg.camera.depth_bins_m[2])
        h, w = cfg.camera.feature_hw
        cell = np.full((b, NUM_CAMERAS, d, h, w), -1, np.int32)
        proj = np.zeros((b, NUM_CAMERAS, 3, 4), np.float32)
        if uses_cam:
            for i, s in enumerate(samples):
                if s.presence[0]:
                    cell[i], proj[i] = frustum_cell_index_cached(
                        s.intrinsics, s.ego_SE3_cam, s.camera_mask, cfg
                    )
            images = normalized_images([s.images for s in samples])
        else:
            hh, ww = cfg.camera.image_hw
            images = torch.zeros((b, NUM_CAMERAS, 3, 0, 0)) if hh else torch.zeros(0)
    with maybe_stage(watch, "paint_index"):
        if cfg.fusion.kind == FusionKind.SERIAL and uses_cam and uses_lidar:
            p_index = paint_index(
                pillars.numpy(), pillar_num.numpy(), pillar_coords[:, 0].numpy(), proj,
                np.stack([s.camera_mask for s in samples]), cfg.camera.feature_hw,
            )
        else:
            p_index = np.zeros((len(pillars), 0), np.int64)
    with maybe_stage(watch, "ultrasonic_raster"):
        hp, wp = pillar_grid_hw(cfg)
        if uses_us:
            raster = np.stack([
                ultrasonic_bev(s.ultrasonic_m, s.us_position_m, s.us_yaw_rad, s.us_half_fov_rad,
                               s.us_max_range_m, bool(s.presence[2]), cfg)
                for s in samples
            ])
        else:
            raster = np.zeros((b, 2, 0, 0), np.float32)
    tg: dict[str, torch.Tensor] = {}
    if all(s.has_targets for s in samples):
        for name in ("heatmap", "reg_index", "reg_target", "reg_mask", "vel_mask"):
            tg[name] = torch.from_numpy(np.stack([getattr(s, name) for s in samples]))
        serial = cfg.fusion.kind == FusionKind.SERIAL
        if depth_targets and uses_cam and cfg.loss.depth_weight > 0 and not serial:
            with maybe_stage(watch, "depth_target"):
                dt = np.full((b, NUM_CAMERAS, *cfg.camera.feature_hw), -1, np.int64)
                for i, s in enumerate(samples):
                    if s.presence[0] and s.presence[1]:
                        dt[i] = lidar_depth_target(
                            s.points, proj[i], s.camera_mask, cfg.camera.feature_hw,
                            cfg.camera.depth_bins_m,
                        )
                tg["depth_target"] = torch.from_numpy(dt)
    for name in ("plan_target", "plan_mask"):
        tg[name] = torch.from_numpy(np.stack([getattr(s, name) for s in samples]))
    return Batch(
        images=images,
        camera_mask=torch.from_numpy(np.stack([s.camera_mask for s in samples])),
        cell_index=torch.from_numpy(cell.astype(np.int64)),
        img_from_ego=torch.from_numpy(proj),
        paint_index=torch.from_numpy(p_index),
        pillars=pillars,
        pillar_coords=pillar_coords,
        pillar_num_points=pillar_num,
        ultrasonic_raster=torch.from_numpy(raster),
        presence=torch.from_numpy(np.stack([s.presence for s in samples])),
        command=torch.tensor([s.command for s in samples], dtype=torch.int64),
        ego_status=torch.from_numpy(np.stack([s.ego_status for s in samples])),
        **tg,
    )
