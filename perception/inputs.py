"""From ``SyncedSample`` to network tensors: per-sample arrays, training targets, batching.

Two steps, so that training can cache the expensive, deterministic part on disk:

1. ``prepare_sample(sample, cfg)`` -> ``SampleArrays`` (numpy): resized images and their
   scaled intrinsics, LiDAR points cropped to the grid, ultrasonic ranges, presence, command,
   ego status and (when the sample is annotated) detection and planning targets.
2. ``collate(arrays, cfg)`` -> ``Batch`` (torch): pillars by the voxelization kernel, the
   lift-splat cell index of every frustum point, the ultrasonic raster, stacked tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from calibration.sample import Boxes3D, SyncedSample
from perception.config import MODALITY_ORDER, ModelConfig
from perception.timing import Stopwatch, maybe_stage
from sensors.types import CAMERA_CHANNELS, DETECTION_CLASSES
from sensors.ultrasonic_layout import UltrasonicLayout, default_layout

NUM_CAMERAS = len(CAMERA_CHANNELS)
# Per-object regression channels, in this order (see ``box_regression_targets``).
REG_CHANNELS = ("dx", "dy", "z", "log_w", "log_l", "log_h", "sin_yaw", "cos_yaw", "vx", "vy")
NUM_REG = len(REG_CHANNELS)
# The head outputs velocity in units of 10 m/s, so that every regression output is O(1): with
# Adam each step moves an output by a bounded amount, and a raw m/s output needed ~10x more
# steps to reach highway speeds (~25 m/s) than a short run has (they stayed near 0).
VELOCITY_UNIT_MPS = 10.0
# ImageNet statistics: a sane fixed normalisation for a CNN trained from scratch.
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


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
        command: 0 right, 1 left, 2 straight.
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
        reg_target[gi, k] = (
            fx - ix,
            fy - iy,
            z,
            math.log(max(w_m, 1e-3)),
            math.log(max(l_m, 1e-3)),
            math.log(max(h_m, 1e-3)),
            math.sin(yaw),
            math.cos(yaw),
            vel[0] if vel_ok else 0.0,
            vel[1] if vel_ok else 0.0,
        )
        reg_mask[gi, k] = 1.0
        vel_mask[gi, k] = float(vel_ok)
    return heat, reg_index, reg_target, reg_mask, vel_mask


def image_reduction_for(source_hw: tuple[int, int] | None, network_hw: tuple[int, int]) -> int:
    """Largest JPEG decode reduction (8, 4, 2 or 1) that still gives at least the network's
    input size, so images are never decoded larger than needed nor upsampled afterwards.

    Training caches and inference must use the same value: the same pixels then reach the
    resize to ``network_hw``. A reduced decode is ``ceil(size / r)`` pixels (OpenCV).
    """
    if source_hw is None:
        return 1
    (sh, sw), (nh, nw) = source_hw, network_hw
    for r in (8, 4, 2):
        if -(-sh // r) >= nh and -(-sw // r) >= nw:
            return r
    return 1


def resize_camera(
    image: np.ndarray, intrinsics: np.ndarray, out_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an (H, W, 3) image to ``out_hw`` and scale K to match (pixel centres kept)."""
    h0, w0 = image.shape[:2]
    h1, w1 = out_hw
    sx, sy = w1 / w0, h1 / h0
    if (h0, w0) != (h1, w1):
        image = cv2.resize(image, (w1, h1), interpolation=cv2.INTER_AREA)
    k = np.asarray(intrinsics, np.float64).copy()
    k[0, 0] *= sx
    k[0, 1] *= sx
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 1] *= sy
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return np.ascontiguousarray(image), k.astype(np.float32)


def _empty_targets(cfg: ModelConfig) -> dict[str, np.ndarray]:
    ng = len(cfg.detection.class_groups)
    return {
        "heatmap": np.zeros((0,), np.float32),
        "reg_index": np.zeros((ng, 0), np.int64),
        "reg_target": np.zeros((ng, 0, NUM_REG), np.float32),
        "reg_mask": np.zeros((ng, 0), np.float32),
        "vel_mask": np.zeros((ng, 0), np.float32),
    }


def prepare_sample(sample: SyncedSample, cfg: ModelConfig, targets: bool = True) -> SampleArrays:
    """Reduce a ``SyncedSample`` to ``SampleArrays`` for ``cfg`` (see module docstring).

    Args:
        sample: one synced tick; any modality may be missing.
        cfg: model configuration (image size, grid).
        targets: compute detection/planning targets when the sample has boxes.

    Returns:
        The per-sample arrays.

    """
    hh, ww = cfg.camera.image_hw
    images = np.zeros((NUM_CAMERAS, hh, ww, 3), np.uint8)
    intr = np.tile(np.eye(3, dtype=np.float32), (NUM_CAMERAS, 1, 1))
    ego_cam = np.tile(np.eye(4, dtype=np.float32), (NUM_CAMERAS, 1, 1))
    cam_mask = np.zeros(NUM_CAMERAS, bool)
    for i, view in enumerate(sample.cameras):
        if view is None:
            continue
        images[i], intr[i] = resize_camera(view.image.image, view.image.intrinsics, (hh, ww))
        ego_cam[i] = view.ref_SE3_cam.as_matrix().astype(np.float32)
        cam_mask[i] = True

    g = cfg.grid
    if sample.lidar is not None:
        pts = sample.lidar.points
        cols = pts.shape[1]
        if cols < 5:
            # Single-sweep KITTI-style input: no time-lag column; a zero lag is exact.
            pts = np.concatenate([pts, np.zeros((len(pts), 5 - cols), np.float32)], axis=1)
        pts = pts[:, :5]
        keep = (
            (pts[:, 0] >= g.x_range_m[0])
            & (pts[:, 0] < g.x_range_m[1])
            & (pts[:, 1] >= g.y_range_m[0])
            & (pts[:, 1] < g.y_range_m[1])
            & (pts[:, 2] >= g.z_range_m[0])
            & (pts[:, 2] < g.z_range_m[1])
        )
        points = np.ascontiguousarray(pts[keep], dtype=np.float32)
    else:
        points = np.zeros((0, 5), np.float32)

    layout: UltrasonicLayout = sample.ultrasonic_layout or default_layout()
    if sample.ultrasonic is not None:
        us = np.asarray(sample.ultrasonic.ranges_m, np.float32)
    else:
        us = np.full(12, np.nan, np.float32)

    presence = np.array(
        [cam_mask.any(), sample.lidar is not None, sample.ultrasonic is not None], bool
    )
    if sample.can_bus is not None:
        ego_status = np.array([sample.can_bus.speed_mps, sample.can_bus.yaw_rate_radps], np.float32)
    else:
        ego_status = np.zeros(2, np.float32)

    tg = _empty_targets(cfg)
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
        plan_target=plan_target,
        plan_mask=plan_mask,
        global_SE3_ego=sample.global_SE3_ego.as_matrix(),
        **tg,
    )


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


def depth_bin_centers(cfg: ModelConfig) -> np.ndarray:
    """(D,) float32 depth of each lift bin along the optical axis, metres."""
    d0, d1, n = cfg.camera.depth_bins_m
    return np.linspace(d0, d1, int(n), dtype=np.float32)


_FRUSTUM_CACHE: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
_FRUSTUM_CACHE_SIZE = 64


def frustum_cell_index_cached(
    intrinsics: np.ndarray, ego_SE3_cam: np.ndarray, camera_mask: np.ndarray, cfg: ModelConfig  # noqa: N803
) -> tuple[np.ndarray, np.ndarray]:
    """``frustum_cell_index`` memoised on the exact calibration (a rig rarely changes)."""
    key = b"".join(
        [np.ascontiguousarray(a).tobytes() for a in (intrinsics, ego_SE3_cam, camera_mask)]
        + [repr((cfg.grid, cfg.camera)).encode()]
    )
    hit = _FRUSTUM_CACHE.get(key)
    if hit is None:
        if len(_FRUSTUM_CACHE) >= _FRUSTUM_CACHE_SIZE:
            _FRUSTUM_CACHE.pop(next(iter(_FRUSTUM_CACHE)))
        hit = frustum_cell_index(intrinsics, ego_SE3_cam, camera_mask, cfg)
        _FRUSTUM_CACHE[key] = hit
    return hit


def frustum_cell_index(
    intrinsics: np.ndarray, ego_SE3_cam: np.ndarray, camera_mask: np.ndarray, cfg: ModelConfig  # noqa: N803
) -> tuple[np.ndarray, np.ndarray]:
    """BEV cell of every lifted frustum point, and the feature-level projection matrices.

    Args:
        intrinsics: (K, 3, 3) K at the network image size.
        ego_SE3_cam: (K, 4, 4) camera -> ego.
        camera_mask: (K,) bool; missing cameras get -1 everywhere.
        cfg: model configuration.

    Returns:
        ``cell_index`` (K, D, h, w) int32 in [0, H*W) or -1, and ``img_from_ego`` (K, 3, 4)
        float32 mapping ego points to feature-map pixels.

    """
    g, cam = cfg.grid, cfg.camera
    h, w = cam.feature_hw
    s = cam.feature_stride
    depths = depth_bin_centers(cfg)
    # Pixel centre of feature cell j in image pixels (pixel centres at integers).
    us = (np.arange(w, dtype=np.float32) + 0.5) * s - 0.5
    vs = (np.arange(h, dtype=np.float32) + 0.5) * s - 0.5
    uu, vv = np.meshgrid(us, vs)  # (h, w)
    pix = np.stack([uu, vv, np.ones_like(uu)], axis=-1).reshape(-1, 3)  # (h*w, 3)
    k_cams = len(intrinsics)
    out = np.full((k_cams, len(depths), h, w), -1, np.int32)
    proj = np.zeros((k_cams, 3, 4), np.float32)
    scale = np.diag([1.0 / s, 1.0 / s, 1.0])
    for k in range(k_cams):
        if not camera_mask[k]:
            continue
        kinv = np.linalg.inv(intrinsics[k].astype(np.float64))
        rays = pix @ kinv.T  # (h*w, 3), z = 1
        pts_cam = depths[:, None, None] * rays[None]  # (D, h*w, 3)
        rot = ego_SE3_cam[k, :3, :3].astype(np.float64)
        t = ego_SE3_cam[k, :3, 3].astype(np.float64)
        pts = pts_cam @ rot.T + t
        ix = np.floor((pts[..., 0] - g.x_range_m[0]) / g.cell_m).astype(np.int64)
        iy = np.floor((pts[..., 1] - g.y_range_m[0]) / g.cell_m).astype(np.int64)
        ok = (
            (ix >= 0)
            & (ix < g.width)
            & (iy >= 0)
            & (iy < g.height)
            & (pts[..., 2] >= g.z_range_m[0])
            & (pts[..., 2] < g.z_range_m[1])
        )
        out[k] = np.where(ok, iy * g.width + ix, -1).reshape(len(depths), h, w)
        cam_from_ego = np.linalg.inv(ego_SE3_cam[k].astype(np.float64))[:3]
        # Feature pixel j covers [j, j + 1) in feature coordinates f = (u + 0.5) / s, where
        # image pixel centres sit at integer u: fold that offset into the projection.
        shift = np.array([[1, 0, 0.5 / s], [0, 1, 0.5 / s], [0, 0, 1]])
        proj[k] = (shift @ scale @ intrinsics[k].astype(np.float64) @ cam_from_ego).astype(
            np.float32
        )
    return out, proj


def lidar_depth_target(
    points_ego: np.ndarray,
    img_from_ego: np.ndarray,
    camera_mask: np.ndarray,
    feature_hw: tuple[int, int],
    depth_bins_m: tuple[float, float, int],
) -> np.ndarray:
    """Depth-bin target per camera feature pixel from the LiDAR (BEVDepth-style supervision).

    Only the current sweep is used (time lag 0): older sweeps of moving objects sit where the
    object no longer is. Each feature pixel takes its nearest return (the visible surface);
    returns nearer or farther than half a bin beyond the lift range are left out.

    Args:
        points_ego: (N, 5) [x, y, z, intensity, time_lag_s], ego frame, metres.
        img_from_ego: (K, 3, 4) ego -> feature-pixel projections (``frustum_cell_index``).
        camera_mask: (K,) bool.
        feature_hw: (h, w) feature-map size.
        depth_bins_m: (first centre, last centre, count) of the lift depth bins, metres.

    Returns:
        (K, h, w) int64 bin index, -1 where no return is seen.

    """
    h, w = feature_hw
    k_cams = img_from_ego.shape[0]
    out = np.full((k_cams, h, w), -1, np.int64)
    d0, d1, n_bins = float(depth_bins_m[0]), float(depth_bins_m[1]), int(depth_bins_m[2])
    step = (d1 - d0) / max(n_bins - 1, 1)
    cur = points_ego[points_ego[:, 4] <= 1e-3] if points_ego.shape[1] > 4 else points_ego
    if len(cur) == 0:
        return out
    hom = np.concatenate([cur[:, :3], np.ones((len(cur), 1), np.float32)], axis=1)
    for k in range(k_cams):
        if not camera_mask[k]:
            continue
        uvz = hom @ img_from_ego[k].T  # third coordinate = depth along the optical axis
        z = uvz[:, 2]
        front = z > 1e-3
        z = z[front]
        col = np.floor(uvz[front, 0] / z).astype(np.int64)
        row = np.floor(uvz[front, 1] / z).astype(np.int64)
        bins = np.rint((z - d0) / step).astype(np.int64)
        ok = (col >= 0) & (col < w) & (row >= 0) & (row < h) & (bins >= 0) & (bins < n_bins)
        if not ok.any():
            continue
        pix, z, bins = (row * w + col)[ok], z[ok], bins[ok]
        order = np.lexsort((z, pix))  # by pixel, nearest first
        first = np.ones(len(order), bool)
        first[1:] = pix[order][1:] != pix[order][:-1]
        sel = order[first]
        out[k].reshape(-1)[pix[sel]] = bins[sel]
    return out


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


def ultrasonic_bev(a: SampleArrays, cfg: ModelConfig) -> np.ndarray:
    """(2, Hp, Wp) float32 ultrasonic evidence on the pillar grid (zeros when absent)."""
    hw = pillar_grid_hw(cfg)
    if not a.presence[2]:
        return np.zeros((2, *hw), np.float32)
    from perception.ops.ultrasonic_raster import ultrasonic_raster

    return ultrasonic_raster(
        a.ultrasonic_m.astype(np.float32),
        a.us_position_m.astype(np.float32),
        a.us_yaw_rad.astype(np.float32),
        a.us_half_fov_rad,
        a.us_max_range_m,
        np.asarray(cfg.grid.bev_range_m, np.float32),
        hw,
    )


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
    uses_cam, uses_lidar, uses_us = (cfg.uses(m) and m not in skip for m in MODALITY_ORDER)
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
            imgs = np.stack([s.images for s in samples]).astype(np.float32)
            imgs = (imgs - _MEAN) / _STD
            images = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 1, 4, 2, 3)))
        else:
            hh, ww = cfg.camera.image_hw
            images = torch.zeros((b, NUM_CAMERAS, 3, 0, 0)) if hh else torch.zeros(0)
    with maybe_stage(watch, "paint_index"):
        if cfg.fusion.kind == "serial" and uses_cam and uses_lidar:
            p_index = paint_index(
                pillars.numpy(), pillar_num.numpy(), pillar_coords[:, 0].numpy(), proj,
                np.stack([s.camera_mask for s in samples]), cfg.camera.feature_hw,
            )
        else:
            p_index = np.zeros((len(pillars), 0), np.int64)
    with maybe_stage(watch, "ultrasonic_raster"):
        hp, wp = pillar_grid_hw(cfg)
        if uses_us:
            raster = np.stack([ultrasonic_bev(s, cfg) for s in samples])
        else:
            raster = np.zeros((b, 2, 0, 0), np.float32)
    tg: dict[str, torch.Tensor] = {}
    if all(s.has_targets for s in samples):
        for name in ("heatmap", "reg_index", "reg_target", "reg_mask", "vel_mask"):
            tg[name] = torch.from_numpy(np.stack([getattr(s, name) for s in samples]))
        if depth_targets and uses_cam and cfg.loss.depth_weight > 0 and cfg.fusion.kind != "serial":
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
