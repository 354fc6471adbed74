"""Camera preprocessing: decode reduction, resize with matching intrinsics, normalisation, the
lift-splat geometry (BEV cell of every frustum point) and the LiDAR depth targets of the lift.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from calibration.sample import SyncedSample
from perception.config import ModelConfig
from sensors.types import CAMERA_CHANNELS

NUM_CAMERAS = len(CAMERA_CHANNELS)
# ImageNet statistics: a sane fixed normalisation for a CNN trained from scratch.
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


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


def camera_arrays(
    sample: SyncedSample, cfg: ModelConfig, pixels: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cameras of ``sample`` at the network input size, as ``SampleArrays`` holds them:
    ``images`` (6, H, W, 3) uint8, ``intrinsics`` (6, 3, 3), ``ego_SE3_cam`` (6, 4, 4) and
    ``camera_mask`` (6,) (zeros / identities where a camera is missing).
    """
    hh, ww = cfg.camera.image_hw
    # A model without a camera branch (``refine`` crops its own) never reads these pixels,
    # unless a fallback expert has one (``refine``'s ``camera_only``); ``pixels=False``: the
    # caller's path reads none (its camera map is reused, or no branch it runs has cameras).
    pixels = cfg.reads_camera_pixels if pixels is None else pixels and cfg.reads_camera_pixels
    if not pixels:
        hh = ww = 0
    images = np.zeros((NUM_CAMERAS, hh, ww, 3), np.uint8)
    intr = np.tile(np.eye(3, dtype=np.float32), (NUM_CAMERAS, 1, 1))
    ego_cam = np.tile(np.eye(4, dtype=np.float32), (NUM_CAMERAS, 1, 1))
    cam_mask = np.zeros(NUM_CAMERAS, bool)
    for i, view in enumerate(sample.cameras):
        if view is None:
            continue
        if pixels:
            images[i], intr[i] = resize_camera(view.image.image, view.image.intrinsics, (hh, ww))
        ego_cam[i] = view.ref_SE3_cam.as_matrix().astype(np.float32)
        cam_mask[i] = True
    return images, intr, ego_cam, cam_mask


def normalized_images(images: list[np.ndarray]) -> torch.Tensor:
    """(B, 6, 3, H, W) float32 network input from B (6, H, W, 3) uint8 image stacks."""
    imgs = np.stack(images).astype(np.float32)
    imgs = (imgs - _MEAN) / _STD
    return torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 1, 4, 2, 3)))


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
