"""PointPillars point decorations fused with hard voxelization (Numba), with a numpy reference.

``pillar_features`` returns what PointPillars' feature net (OpenPCDet ``PillarVFE``, mmdet3d
``PillarFeatureNet``) builds from the padded voxel tensor, without materializing that tensor
first: per point its own columns, the offset to its pillar's mean xyz and the offset to its
pillar's centre xyz; padding rows are all zero (the feature net's mask).

Float semantics (the reference uses the same, so results are bit-identical):

* the pillar mean sums the kept points' x, y, z in float32 in input order, then divides by the
  float32 point count;
* the pillar centre is ``(float32(coord) + 0.5) * size + min`` in float32, per axis.
"""

from __future__ import annotations

import numba
import numpy as np

from perception.ops._grid import as_points, make_grid
from perception.ops.voxelize import _check_caps, assign_voxels, hard_voxelize_reference


@numba.njit(cache=True)
def _decorate(points, pvid, pslot, coords, counts, vsize, rmin, max_points):
    n, c = points.shape
    m = counts.shape[0]
    out = np.zeros((m, max_points, c + 6), dtype=np.float32)
    half = np.float32(0.5)
    # Pass 1: copy the point columns into their slots (input order = slot order).
    for i in range(n):
        v = pvid[i]
        if v >= 0:
            s = pslot[i]
            for k in range(c):
                out[v, s, k] = points[i, k]
    # Pass 2: per pillar, its rows are contiguous: mean and offsets while they are in cache.
    for v in range(m):
        cnt = counts[v]
        fcnt = np.float32(cnt)
        for a in range(3):
            acc = np.float32(0.0)
            for s in range(cnt):
                acc += out[v, s, a]
            mean = acc / fcnt
            # coords are (z, y, x): axis a of xyz is column 2 - a.
            centre = (np.float32(coords[v, 2 - a]) + half) * vsize[a] + rmin[a]
            for s in range(cnt):
                out[v, s, c + a] = out[v, s, a] - mean
                out[v, s, c + 3 + a] = out[v, s, a] - centre
    return out


def pillar_features(
    points: np.ndarray,
    voxel_size_m,
    point_range_m,
    max_points_per_voxel: int,
    max_voxels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxelize into pillars and decorate every point in the same pass.

    Args:
        points: (N, C>=3) float32 [x, y, z, ...] in metres.
        voxel_size_m: (3,) [dx, dy, dz] in metres (dz usually the whole z range).
        point_range_m: (6,) [xmin, ymin, zmin, xmax, ymax, zmax] in metres.
        max_points_per_voxel: P, points kept per pillar.
        max_voxels: pillars kept (same cap semantics as ``hard_voxelize``).

    Returns:
        features (M, P, C+6) float32 [point columns, xyz - pillar mean xyz,
        xyz - pillar centre xyz], zero rows for padding; coords_zyx (M, 3) int32;
        num_points (M,) int32. Pillars and points in the order of ``hard_voxelize``.

    """
    pts = as_points(points)
    grid = make_grid(voxel_size_m, point_range_m)
    p, m = _check_caps(max_points_per_voxel, max_voxels)
    pvid, pslot, coords, counts = assign_voxels(pts, grid, p, m)
    feats = _decorate(pts, pvid, pslot, coords, counts, grid.voxel_size, grid.range_min, p)
    return feats, coords, counts


def pillar_features_reference(
    points: np.ndarray,
    voxel_size_m,
    point_range_m,
    max_points_per_voxel: int,
    max_voxels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numpy reference of ``pillar_features``: voxelize, then decorate the padded tensor."""
    grid = make_grid(voxel_size_m, point_range_m)
    voxels, coords, num = hard_voxelize_reference(
        points, voxel_size_m, point_range_m, max_points_per_voxel, max_voxels
    )
    m, p, c = voxels.shape
    sums = np.zeros((m, 3), dtype=np.float32)
    for s in range(p):  # slot by slot = input order inside each pillar
        rows = num > s
        sums[rows] += voxels[rows, s, :3]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / num.astype(np.float32)[:, None]
    centre = (coords[:, ::-1].astype(np.float32) + np.float32(0.5)) * grid.voxel_size
    centre = centre + grid.range_min
    feats = np.zeros((m, p, c + 6), dtype=np.float32)
    feats[:, :, :c] = voxels
    feats[:, :, c : c + 3] = voxels[:, :, :3] - mean[:, None, :]
    feats[:, :, c + 3 :] = voxels[:, :, :3] - centre[:, None, :]
    mask = np.arange(p)[None, :] < num[:, None]
    feats[~mask] = 0.0
    return feats, coords, num
