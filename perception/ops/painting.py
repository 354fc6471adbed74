"""Point painting (Numba): project LiDAR points into each camera and gather its features.

For every point, cameras are tried in order (``CAMERA_CHANNELS`` order upstream); the first
present camera that sees the point in front (depth > ``min_depth_m``) and inside its feature
map gives the point its feature vector (nearest pixel: column ``floor(u)``, row ``floor(v)``,
pixel ``i`` covering ``[i, i + 1)``). Points no camera sees get zeros.

The projection is evaluated in float64 as ``((P0 * x + P1 * y) + P2 * z) + P3`` per row, then
``u = row0 / row2``, ``v = row1 / row2``; the numpy reference does the same operations, so
both agree bit for bit, including points exactly on a pixel edge or the image border.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from perception.ops._buffers import zeroed_output


@numba.njit(cache=True, parallel=True)
def _paint(xyz, proj, feats, mask, min_depth, out):
    """Write the painted rows of a zeroed ``out``; rows no camera sees are left untouched."""
    n = xyz.shape[0]
    k_cams, h, w, c = feats.shape
    for i in prange(n):
        x = np.float64(xyz[i, 0])
        y = np.float64(xyz[i, 1])
        z = np.float64(xyz[i, 2])
        for k in range(k_cams):
            if not mask[k]:
                continue
            depth = ((proj[k, 2, 0] * x + proj[k, 2, 1] * y) + proj[k, 2, 2] * z) + proj[k, 2, 3]
            if not depth > min_depth:  # also rejects NaN
                continue
            u = (((proj[k, 0, 0] * x + proj[k, 0, 1] * y) + proj[k, 0, 2] * z)
                 + proj[k, 0, 3]) / depth
            v = (((proj[k, 1, 0] * x + proj[k, 1, 1] * y) + proj[k, 1, 2] * z)
                 + proj[k, 1, 3]) / depth
            if u >= 0.0 and u < w and v >= 0.0 and v < h:
                col = int(u)  # u >= 0, so truncation is floor
                row = int(v)
                for q in range(c):
                    out[i, q] = feats[k, row, col, q]
                break


def _validate(points_xyz, img_from_ego, feats, camera_mask, min_depth_m):
    p = np.asarray(points_xyz)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f"points_xyz must be (N, 3), got {p.shape}")
    xyz = np.ascontiguousarray(p[:, :3], dtype=np.float32)
    f = np.ascontiguousarray(feats, dtype=np.float32)
    if f.ndim != 4:
        raise ValueError(f"feats must be (K, h, w, C), got {f.shape}")
    proj = np.ascontiguousarray(img_from_ego, dtype=np.float64)
    if proj.ndim != 3 or proj.shape[0] != f.shape[0] or proj.shape[1] < 3 or proj.shape[2] != 4:
        raise ValueError(f"img_from_ego must be ({f.shape[0]}, 3, 4), got {proj.shape}")
    proj = np.ascontiguousarray(proj[:, :3])
    mask = np.asarray(camera_mask, dtype=bool).reshape(-1)
    if mask.shape != (f.shape[0],):
        raise ValueError(f"camera_mask must be ({f.shape[0]},), got {mask.shape}")
    return xyz, proj, f, np.ascontiguousarray(mask), float(min_depth_m)


def paint_points(
    points_xyz: np.ndarray,
    img_from_ego: np.ndarray,
    feats: np.ndarray,
    camera_mask: np.ndarray,
    min_depth_m: float = 0.1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Gather, for each point, the feature of the first camera that sees it.

    Args:
        points_xyz: (N, 3) float32 points in the ego frame, metres (extra columns ignored).
        img_from_ego: (K, 3, 4) float64 projections to feature-map pixels (intrinsics scaled
            to the feature resolution, times cam_from_ego); row 3 gives the depth in metres.
        feats: (K, h, w, C) float32 per-camera feature maps.
        camera_mask: (K,) bool, False for cameras that are missing this frame.
        min_depth_m: points closer than this in front of a camera are not seen by it.
        out: optional C-contiguous (N, C) float32 array to reuse (zeroed first); a fresh
            output of ~100 MiB (10 sweeps x 80 channels) costs mostly page faults.

    Returns:
        (N, C) float32 painted features (``out`` when given), zeros for points no present
        camera sees.

    """
    xyz, proj, f, mask, min_depth = _validate(points_xyz, img_from_ego, feats, camera_mask,
                                              min_depth_m)
    # Rows no camera sees are never written: they keep the buffer's zeros.
    result = zeroed_output(out, (xyz.shape[0], f.shape[3]), np.float32)
    _paint(xyz, proj, f, mask, min_depth, result)
    return result


def paint_points_reference(
    points_xyz: np.ndarray,
    img_from_ego: np.ndarray,
    feats: np.ndarray,
    camera_mask: np.ndarray,
    min_depth_m: float = 0.1,
) -> np.ndarray:
    """Numpy reference of ``paint_points`` (vectorized per camera)."""
    xyz, proj, f, mask, min_depth = _validate(points_xyz, img_from_ego, feats, camera_mask,
                                              min_depth_m)
    x, y, z = (xyz[:, a].astype(np.float64) for a in range(3))
    k_cams, h, w, c = f.shape
    out = np.zeros((xyz.shape[0], c), dtype=np.float32)
    done = np.zeros(xyz.shape[0], dtype=bool)
    for k in range(k_cams):
        if not mask[k]:
            continue
        m = proj[k]
        depth = ((m[2, 0] * x + m[2, 1] * y) + m[2, 2] * z) + m[2, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            u = (((m[0, 0] * x + m[0, 1] * y) + m[0, 2] * z) + m[0, 3]) / depth
            v = (((m[1, 0] * x + m[1, 1] * y) + m[1, 2] * z) + m[1, 3]) / depth
            seen = ~done & (depth > min_depth) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        out[seen] = f[k, np.floor(v[seen]).astype(np.int64), np.floor(u[seen]).astype(np.int64)]
        done |= seen
    return out
