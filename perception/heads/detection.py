"""CenterPoint-style detection head: per-group center heatmaps + box regression, and decoding."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from calibration.sample import Boxes3D
from perception.backbones.common import conv_bn_relu
from perception.box_code import COS_YAW, LOG_WLH, NUM_REG, decode_boxes
from perception.config import ModelConfig
from perception.heads.targets import class_group_order
from sensors.types import DETECTION_CLASSES

# Focal-loss prior: initial foreground probability 0.1 keeps early training stable.
HEATMAP_PRIOR_BIAS = -math.log((1 - 0.1) / 0.1)


class DetectionHead(nn.Module):
    """(B, C, H, W) -> heatmap logits (B, num_classes, H, W), regression (B, G, 10, H, W)."""

    def __init__(self, c_in: int, cfg: ModelConfig) -> None:
        super().__init__()
        det = cfg.detection
        ch = det.head_channels
        self.num_groups = len(det.class_groups)
        self.num_classes = sum(len(g) for g in det.class_groups)
        self.shared = conv_bn_relu(c_in, ch)
        pre = (lambda: conv_bn_relu(ch, ch)) if det.branch_convs else nn.Identity
        self.heat = nn.Sequential(pre(), nn.Conv2d(ch, self.num_classes, 1))
        self.reg = nn.Sequential(pre(), nn.Conv2d(ch, self.num_groups * NUM_REG, 1))
        nn.init.constant_(self.heat[-1].bias, HEATMAP_PRIOR_BIAS)
        # Size targets are log(metres) ~ 0.5..2.5; start at a car-sized box, not at 1 m cubes.
        with torch.no_grad():
            self.reg[-1].weight.mul_(0.1)
            bias = self.reg[-1].bias.view(self.num_groups, NUM_REG)
            bias.zero_()
            bias[:, LOG_WLH] = torch.tensor([0.6, 1.3, 0.5])
            bias[:, COS_YAW] = 1.0  # yaw 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits and per-group regression maps."""
        y = self.shared(x)
        reg = self.reg(y)
        b, _, h, w = reg.shape
        return self.heat(y), reg.view(b, self.num_groups, NUM_REG, h, w)


_MOVING_ATTR = {
    "car": ("vehicle.moving", "vehicle.parked"),
    "truck": ("vehicle.moving", "vehicle.parked"),
    "bus": ("vehicle.moving", "vehicle.parked"),
    "trailer": ("vehicle.moving", "vehicle.parked"),
    "construction_vehicle": ("vehicle.moving", "vehicle.parked"),
    "pedestrian": ("pedestrian.moving", "pedestrian.standing"),
    "motorcycle": ("cycle.with_rider", "cycle.without_rider"),
    "bicycle": ("cycle.with_rider", "cycle.without_rider"),
}


def attribute_for(class_name: str, speed_mps: float, moving_speed_mps: float) -> str:
    """NuScenes attribute from class and speed (the devkit's default-attribute logic).

    Cones and barriers have no attribute (``""``); vehicles are moving/parked, pedestrians
    moving/standing and cycles with/without rider by whether they move faster than
    ``moving_speed_mps``.
    """
    pair = _MOVING_ATTR.get(class_name)
    if pair is None:
        return ""
    return pair[0] if speed_mps > moving_speed_mps else pair[1]


@functools.cache
def _attribute_tables() -> tuple[np.ndarray, np.ndarray]:
    """``attribute_for`` as two lookups by label: the moving and the still attribute."""
    moving = np.array([attribute_for(c, math.inf, 0.0) for c in DETECTION_CLASSES], object)
    still = np.array([attribute_for(c, 0.0, 0.0) for c in DETECTION_CLASSES], object)
    return moving, still


def _max_pool3(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 max pool with -inf padding (``F.max_pool2d(x, 3, 1, 1)``, the same values):
    the maximum of nine shifted views, several times faster than the pooling kernel on one CPU
    thread for a decoder's small maps.
    """
    if x.device.type != "cpu" or x.shape[-1] < 2 or x.shape[-2] < 2:
        return F.max_pool2d(x, 3, 1, 1)
    a = x.numpy()
    row = a.copy()  # max over the row neighbours, then over the column neighbours
    np.maximum(row[..., 1:], a[..., :-1], out=row[..., 1:])
    np.maximum(row[..., :-1], a[..., 1:], out=row[..., :-1])
    out = row.copy()
    np.maximum(out[..., 1:, :], row[..., :-1, :], out=out[..., 1:, :])
    np.maximum(out[..., :-1, :], row[..., 1:, :], out=out[..., :-1, :])
    return torch.from_numpy(out)


@torch.no_grad()
def decode_detections(
    heatmap_logits: torch.Tensor,
    reg: torch.Tensor,
    cfg: ModelConfig,
    has_input: torch.Tensor | None = None,
) -> list[Boxes3D]:
    """Top-k peaks per class group -> boxes -> circle NMS per group -> ``Boxes3D`` per sample.

    Args:
        heatmap_logits: (B, num_classes, H, W) in grouped class order.
        reg: (B, G, 10, H, W) box code (``perception.box_code``).
        cfg: model configuration (grid, groups, thresholds).
        has_input: (B,) bool; samples with no used modality present get no boxes.

    Returns:
        One ``Boxes3D`` (ego frame, scores = confidences) per sample.

    """
    from perception.ops.nms import circle_nms

    det, g = cfg.detection, cfg.grid
    b, _, h, w = heatmap_logits.shape
    heat = heatmap_logits.float().sigmoid()
    # A peak is a cell that is the max of its 3x3 neighbourhood (CenterNet's max-pool NMS).
    peaks = heat * (_max_pool3(heat) == heat)
    order = np.asarray(class_group_order(cfg), np.int64)
    attr_moving, attr_still = _attribute_tables()
    results = []
    for bi in range(b):
        if has_input is not None and not bool(has_input[bi]):
            results.append(Boxes3D.empty())
            continue
        parts: list[np.ndarray] = []
        c0 = 0
        for gi, grp in enumerate(det.class_groups):
            n_cls = len(grp)
            scores = peaks[bi, c0 : c0 + n_cls].reshape(-1)
            k = min(det.top_k, scores.numel())
            top_s, top_i = scores.topk(k)
            keep = top_s >= det.score_threshold
            top_s, top_i = top_s[keep], top_i[keep]
            cls_local = top_i // (h * w)
            cell = top_i % (h * w)
            iy, ix = cell // w, cell % w
            r = reg[bi, gi].float().reshape(NUM_REG, -1)[:, cell].T.cpu().numpy()  # (n, 10)
            x, y, z, wlh, yaw, vel = decode_boxes(r, ix.cpu().numpy(), iy.cpu().numpy(), g)
            labels = order[c0 + cls_local.cpu().numpy()]
            s = top_s.cpu().numpy().astype(np.float64)
            arr = np.column_stack([x, y, z, wlh, yaw, vel, s, labels])
            if len(arr) and det.nms_radius_m[gi] > 0:
                keep_i = circle_nms(
                    np.ascontiguousarray(arr[:, :2], np.float32),
                    np.ascontiguousarray(s, np.float32),
                    float(det.nms_radius_m[gi]),
                )
                arr = arr[np.asarray(keep_i, np.int64)]
            parts.append(arr)
            c0 += n_cls
        allb = np.concatenate(parts) if parts else np.zeros((0, 11))
        allb = allb[np.argsort(-allb[:, 9], kind="stable")][: det.max_detections]
        labels = allb[:, 10].astype(np.int64)
        speed = np.hypot(allb[:, 7], allb[:, 8])
        attrs = tuple(np.where(speed > det.moving_speed_mps, attr_moving[labels],
                               attr_still[labels]).tolist())
        results.append(
            Boxes3D(
                center_m=allb[:, 0:3],
                wlh_m=allb[:, 3:6],
                yaw_rad=allb[:, 6],
                velocity_mps=allb[:, 7:9],
                labels=labels,
                scores=allb[:, 9],
                attributes=attrs,
            )
        )
    return results
