"""LiDAR preprocessing: points cropped to the grid, pillars by the voxelization kernel, and the
painting index of serial fusion (which camera feature pixel paints each pillar point).
"""

from __future__ import annotations

import numpy as np

from perception.config import GridConfig, ModelConfig
from perception.ops.crop import crop_points
from sensors.types import LidarSweep


def grid_points(lidar: LidarSweep | None, grid: GridConfig) -> np.ndarray:
    """(N, 5) float32 [x, y, z, intensity, time_lag_s] of the points inside ``grid`` (ego
    frame); none when the LiDAR is missing.
    """
    g = grid
    if lidar is None:
        return np.zeros((0, 5), np.float32)
    pts = lidar.points
    cols = pts.shape[1]
    if cols < 5:
        # Single-sweep KITTI-style input: no time-lag column; a zero lag is exact.
        pts = np.concatenate([pts, np.zeros((len(pts), 5 - cols), np.float32)], axis=1)
    lo = (g.x_range_m[0], g.y_range_m[0], g.z_range_m[0])
    hi = (g.x_range_m[1], g.y_range_m[1], g.z_range_m[1])
    return crop_points(pts, lo, hi, columns=5)


def paint_index(
    pillars: np.ndarray,
    num_points: np.ndarray,
    batch_index: np.ndarray,
    img_from_ego: np.ndarray,
    camera_mask: np.ndarray,
    feature_hw: tuple[int, int],
    min_depth_m: float = 0.1,
) -> np.ndarray:
    """Which image-feature pixel paints each pillar point (serial fusion).

    The painting kernel (``perception.ops.painting.paint_points``: first camera in
    ``CAMERA_CHANNELS`` order that sees the point) is run on a one-channel "image" holding
    each pixel's flat index, so the kernel's rule decides and the model can then gather real
    features by index, with gradients reaching the camera CNN.

    Args:
        pillars: (M, P, >=3) pillar points (x, y, z first).
        num_points: (M,) real points per pillar.
        batch_index: (M,) sample of each pillar.
        img_from_ego: (B, K, 3, 4) ego -> feature-pixel projections.
        camera_mask: (B, K) bool.
        feature_hw: (h, w) of the feature maps.
        min_depth_m: near limit, metres.

    Returns:
        (M, P) int64 flat index into (B, K, h, w), -1 where no camera sees the point.

    """
    from perception.ops.painting import paint_points

    m, p = pillars.shape[:2]
    out = np.full((m, p), -1, np.int64)
    if m == 0:
        return out
    h, w = feature_hw
    k_cams = img_from_ego.shape[1]
    # float32 holds integers exactly up to 2**24: far above K * h * w for any preset.
    ids = (np.arange(k_cams * h * w, dtype=np.float32) + 1).reshape(k_cams, h, w, 1)
    valid = np.arange(p)[None, :] < num_points[:, None]
    for b in np.unique(batch_index):
        rows = batch_index == b
        sel = valid & rows[:, None]
        mi, pi = np.nonzero(sel)
        if len(mi) == 0 or not camera_mask[b].any():
            continue
        xyz = np.ascontiguousarray(pillars[mi, pi, :3], np.float32)
        got = paint_points(
            xyz, img_from_ego[b].astype(np.float64), ids, camera_mask[b], min_depth_m
        )[:, 0]
        seen = got > 0
        out[mi[seen], pi[seen]] = got[seen].astype(np.int64) - 1 + int(b) * k_cams * h * w
    return out


def pillar_grid_hw(cfg: ModelConfig) -> tuple[int, int]:
    """(Hp, Wp) of the LiDAR pillar grid (finer than the BEV grid by an integer stride)."""
    r = round(cfg.grid.cell_m / cfg.lidar.pillar_m)
    return cfg.grid.height * r, cfg.grid.width * r


def voxelize_points(
    points: np.ndarray, cfg: ModelConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillars by the voxelization kernel: ``(features (M,P,11), coords_zyx (M,3), num (M,))``.

    Points are interleaved over sweeps first (``perception.ops.interleave``), so a capped
    pillar keeps returns of every sweep.
    """
    from perception.ops.interleave import interleave_sweeps
    from perception.ops.pillars import pillar_features

    g, li = cfg.grid, cfg.lidar
    voxel = np.array([li.pillar_m, li.pillar_m, g.z_range_m[1] - g.z_range_m[0]], np.float32)
    prange = np.array(
        [g.x_range_m[0], g.y_range_m[0], g.z_range_m[0], g.x_range_m[1], g.y_range_m[1],
         g.z_range_m[1]],
        np.float32,
    )
    if len(points) == 0:
        c = points.shape[1] + 6
        return (
            np.zeros((0, li.max_points_per_pillar, c), np.float32),
            np.zeros((0, 3), np.int32),
            np.zeros((0,), np.int32),
        )
    return pillar_features(
        interleave_sweeps(points), voxel, prange, li.max_points_per_pillar,
        li.max_pillars,
    )
