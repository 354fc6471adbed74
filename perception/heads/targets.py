"""Training targets of the heads: CenterPoint heatmaps and box regression (detection), future
ego positions (planning).
"""

from __future__ import annotations

import math

import numpy as np

from calibration.sample import Boxes3D, SyncedSample
from perception.box_code import NUM_REG, encode_box
from perception.config import ModelConfig
from sensors.types import DETECTION_CLASSES


def class_group_order(cfg: ModelConfig) -> list[int]:
    """Heatmap channel -> ``DETECTION_CLASSES`` index (groups concatenated in order)."""
    return [DETECTION_CLASSES.index(c) for g in cfg.detection.class_groups for c in g]


def gaussian_radius(length_cells: float, width_cells: float, min_overlap: float) -> float:
    """CornerNet/CenterPoint Gaussian radius: the smallest of the three overlap cases."""
    h, w = length_cells, width_cells
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heat: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Max-splat a 2D Gaussian of ``radius`` cells (sigma = diameter / 6) at (cx, cy)."""
    d = 2 * radius + 1
    sigma = d / 6.0
    ys, xs = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma)).astype(np.float32)
    h, w = heat.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    region = heat[cy - top : cy + bottom, cx - left : cx + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch, out=region)


def detection_targets(
    boxes: Boxes3D, cfg: ModelConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CenterPoint targets on the BEV grid for ground-truth boxes in the ego frame.

    Boxes with no LiDAR point (``num_lidar_pts == 0``) are skipped: the devkit drops them from
    evaluation too. Returns ``(heatmap, reg_index, reg_target, reg_mask, vel_mask)`` as in
    ``SampleArrays``.
    """
    g, det = cfg.grid, cfg.detection
    H, W = g.height, g.width  # noqa: N806 - shape names
    groups = det.class_groups
    order = class_group_order(cfg)
    heat = np.zeros((len(order), H, W), np.float32)
    K = det.max_objects  # noqa: N806
    reg_index = np.zeros((len(groups), K), np.int64)
    reg_target = np.zeros((len(groups), K, NUM_REG), np.float32)
    reg_mask = np.zeros((len(groups), K), np.float32)
    vel_mask = np.zeros((len(groups), K), np.float32)
    counts = [0] * len(groups)
    cls_to_group = {}
    for gi, grp in enumerate(groups):
        for c in grp:
            cls_to_group[DETECTION_CLASSES.index(c)] = gi
    for i in range(len(boxes)):
        label = int(boxes.labels[i])
        if label not in cls_to_group or boxes.num_lidar_pts[i] == 0:
            continue
        x, y, z = boxes.center_m[i]
        fx = (x - g.x_range_m[0]) / g.cell_m
        fy = (y - g.y_range_m[0]) / g.cell_m
        ix, iy = int(math.floor(fx)), int(math.floor(fy))
        if not (0 <= ix < W and 0 <= iy < H):
            continue
        w_m, l_m, h_m = boxes.wlh_m[i]
        radius = gaussian_radius(l_m / g.cell_m, w_m / g.cell_m, det.gaussian_overlap)
        radius = max(det.min_radius_cells, int(radius))
        ch = order.index(label)
        draw_gaussian(heat[ch], ix, iy, radius)
        gi = cls_to_group[label]
        k = counts[gi]
        if k >= K:
            continue
        counts[gi] += 1
        yaw = float(boxes.yaw_rad[i])
        vel = boxes.velocity_mps[i]
        vel_ok = bool(np.all(np.isfinite(vel)))
        reg_index[gi, k] = iy * W + ix
        reg_target[gi, k] = encode_box(
            (fx - ix, fy - iy), z, (w_m, l_m, h_m), yaw, (vel[0], vel[1]) if vel_ok else None
        )
        reg_mask[gi, k] = 1.0
        vel_mask[gi, k] = float(vel_ok)
    return heat, reg_index, reg_target, reg_mask, vel_mask


def empty_detection_targets(cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Detection targets of an unannotated sample (no objects)."""
    ng = len(cfg.detection.class_groups)
    return {
        "heatmap": np.zeros((0,), np.float32),
        "reg_index": np.zeros((ng, 0), np.int64),
        "reg_target": np.zeros((ng, 0, NUM_REG), np.float32),
        "reg_mask": np.zeros((ng, 0), np.float32),
        "vel_mask": np.zeros((ng, 0), np.float32),
    }


def sample_targets(
    sample: SyncedSample, cfg: ModelConfig, targets: bool
) -> dict[str, np.ndarray]:
    """Detection and planning targets of ``sample`` as ``SampleArrays`` fields (empty
    detection targets and zero planning masks when ``targets`` is False or unannotated).
    """
    tg = empty_detection_targets(cfg)
    if targets and sample.boxes is not None:
        hm, ri, rt, rm, vm = detection_targets(sample.boxes, cfg)
        tg = {"heatmap": hm, "reg_index": ri, "reg_target": rt, "reg_mask": rm, "vel_mask": vm}
    n_wp = cfg.planning.num_waypoints
    plan_target = np.zeros((n_wp, 2), np.float32)
    plan_mask = np.zeros(n_wp, np.float32)
    if targets and sample.future_xy_ego_m is not None:
        fut = np.asarray(sample.future_xy_ego_m, np.float64)[:n_wp]
        ok = np.all(np.isfinite(fut), axis=1)
        plan_target[: len(fut)][ok] = fut[ok]
        plan_mask[: len(fut)] = ok
    return {**tg, "plan_target": plan_target, "plan_mask": plan_mask}
