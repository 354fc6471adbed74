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
from perception.ops._prefetch import prefetch
from perception.ops.voxelize import _check_caps, assign_voxels, hard_voxelize_reference


@numba.njit(cache=True)
def _decorate(points, start, order, coords, vsize, rmin, out):
    c = points.shape[1]
    p = out.shape[1]
    n_kept = order.shape[0]
    half = np.float32(0.5)
    # One pass per pillar over its own contiguous output rows: gather, mean, offsets, padding.
    for v in range(out.shape[0]):
        cnt = start[v + 1] - start[v]
        for s in range(cnt):
            e = start[v] + s
            if e + 8 < n_kept:
                prefetch(points, order[e + 8])
            i = order[e]
            for k in range(c):
                out[v, s, k] = points[i, k]
        fcnt = np.float32(cnt)
        for a in range(3):
            acc = np.float32(0.0)
            for s in range(cnt):  # float32, input order
                acc += out[v, s, a]
            mean = acc / fcnt
            # coords are (z, y, x): axis a of xyz is column 2 - a.
            centre = (np.float32(coords[v, 2 - a]) + half) * vsize[a] + rmin[a]
            for s in range(cnt):
                out[v, s, c + a] = out[v, s, a] - mean
                out[v, s, c + 3 + a] = out[v, s, a] - centre
        for s in range(cnt, p):
            for k in range(c + 6):
                out[v, s, k] = 0.0


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
    start, order, coords, counts = assign_voxels(pts, grid, p, m)
    out = np.empty((coords.shape[0], p, pts.shape[1] + 6), dtype=np.float32)
    _decorate(pts, start, order, coords, grid.voxel_size, grid.range_min, out)
    return out, coords, counts


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
