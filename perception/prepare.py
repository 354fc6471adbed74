"""From ``SyncedSample`` to ``SampleArrays``: each modality's preprocessing and the targets.

Two steps lead from a sample to network tensors, so that training can cache the expensive,
deterministic part on disk:

1. ``prepare_sample(sample, cfg)`` -> ``SampleArrays`` (numpy): resized images and their
   scaled intrinsics (``backbones.camera_inputs``), LiDAR points cropped to the grid
   (``backbones.lidar_inputs``), ultrasonic ranges (``backbones.ultrasonic_inputs``),
   presence, command, ego status and (when the sample is annotated) detection and planning
   targets (``heads.targets``).
2. ``perception.batch.collate(arrays, cfg)`` -> ``Batch`` (torch).
"""

from __future__ import annotations

import numpy as np

from calibration.sample import SyncedSample
from perception.backbones.camera_inputs import camera_arrays
from perception.backbones.lidar_inputs import grid_points
from perception.backbones.ultrasonic_inputs import ultrasonic_arrays
from perception.config import ModelConfig
from perception.heads.targets import sample_targets
from perception.sample_arrays import SampleArrays


def prepare_key(cfg: ModelConfig) -> str:
    """What ``prepare_sample(sample, cfg, targets=False)`` reads of ``cfg``: configurations
    with equal keys get equal arrays from one sample, so a caller may share them.

    The camera pixels are only resized for a model with a camera branch (``camera_arrays``):
    a LiDAR-only model's arrays carry empty images, which a camera model must not be handed.
    """
    pixels = cfg.camera.image_hw if cfg.reads_camera_pixels else None
    return repr((pixels, cfg.grid))


def sample_presence(sample: SyncedSample) -> np.ndarray:
    """(3,) bool in ``MODALITY_ORDER``: some camera, the LiDAR, the ultrasonic present (what
    ``SampleArrays.presence`` holds, read without preparing anything).
    """
    return np.array([any(v is not None for v in sample.cameras), sample.lidar is not None,
                     sample.ultrasonic is not None], bool)


def prepare_sample(
    sample: SyncedSample, cfg: ModelConfig, targets: bool = True,
    camera_pixels: bool | None = None,
) -> SampleArrays:
    """Reduce a ``SyncedSample`` to ``SampleArrays`` for ``cfg`` (see module docstring).

    Args:
        sample: one synced tick; any modality may be missing.
        cfg: model configuration (image size, grid).
        targets: compute detection/planning targets when the sample has boxes.
        camera_pixels: False skips resizing the images (empty ``images``; presence and
            calibration kept) for a caller whose branches read no camera pixels; default:
            whenever ``cfg`` has a branch that reads them.

    Returns:
        The per-sample arrays.

    """
    images, intr, ego_cam, cam_mask = camera_arrays(sample, cfg, camera_pixels)
    points = grid_points(sample.lidar, cfg.grid)
    us, layout = ultrasonic_arrays(sample)
    presence = sample_presence(sample)
    if sample.can_bus is not None:
        ego_status = np.array([sample.can_bus.speed_mps, sample.can_bus.yaw_rate_radps], np.float32)
    else:
        ego_status = np.zeros(2, np.float32)
    return SampleArrays(
        token=sample.token,
        images=images,
        intrinsics=intr,
        ego_SE3_cam=ego_cam,
        camera_mask=cam_mask,
        points=points,
        ultrasonic_m=us,
        us_position_m=np.asarray(layout.position_ego_m, np.float32),
        us_yaw_rad=np.asarray(layout.yaw_ego_rad, np.float32),
        us_half_fov_rad=float(layout.half_fov_rad),
        us_max_range_m=float(layout.max_range_m),
        presence=presence,
        command=int(sample.command),
        ego_status=ego_status,
        global_SE3_ego=sample.global_SE3_ego.as_matrix(),
        **sample_targets(sample, cfg, targets),
    )
