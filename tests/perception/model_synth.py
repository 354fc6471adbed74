"""Tiny SyncedSamples built in code for the model tests (random images, points on boxes)."""

from __future__ import annotations

from dataclasses import replace

from perception.config import CameraConfig, GridConfig, LidarConfig, ModelConfig, preset
from sensors.synthetic_sample import camera_pose, make_sample

__all__ = ["camera_pose", "make_sample", "micro_config"]


def micro_config(variant: str) -> ModelConfig:
    """The tiny preset shrunk further so that a training step takes tens of milliseconds."""
    cfg = preset("tiny", variant)
    return replace(
        cfg,
        grid=GridConfig(cell_m=3.2),
        camera=replace(
            CameraConfig(), image_hw=(48, 88), stem_channels=8, stage_channels=(12, 16),
            feature_channels=8, depth_bins_m=(2.0, 50.0, 8),
        ),
        lidar=LidarConfig(pillar_m=1.6, pfn_channels=8, bev_channels=16, num_blocks=1,
                          max_pillars=4000),
        fusion=replace(cfg.fusion, channels=16, paint_channels=4),
        detection=replace(cfg.detection, head_channels=16),
    )
