"""Scatter per-pillar features into a dense BEV canvas (Numba), with a numpy reference.

The PointPillars "map to BEV" step: ``canvas[:, y, x] = features[m]`` for each pillar ``m``
with coordinates ``(z, y, x)``. The z coordinate is ignored (pillars have z = 0); if two rows
share a (y, x) cell, the later row wins, in both the kernel and the reference.
"""

from __future__ import annotations

import numba
import numpy as np

from perception.ops._buffers import zeroed_output


@numba.njit(cache=True)
def _scatter_planes(features, flat_index, out2):
    """Fill a zeroed (C, H*W) canvas one channel plane at a time.

    Row-by-row scatter writes C values 1 MiB apart per pillar (a cache and TLB miss each);
    plane by plane keeps the plane being written in L2, after one blocked transpose of the
    features so that each plane's values are read sequentially.
    """
    m, c = features.shape
    ft = np.empty((c, m), dtype=features.dtype)
    for i0 in range(0, m, 64):
        i1 = min(m, i0 + 64)
        for k in range(c):
            for i in range(i0, i1):
                ft[k, i] = features[i, k]
    for k in range(c):
        plane = out2[k]
        fk = ft[k]
        for i in range(m):  # in row order: the later row wins on a shared cell
            plane[flat_index[i]] = fk[i]


def _validate(features, coords_zyx, grid_hw):
    f = np.asarray(features)
    if f.ndim != 2 or not np.issubdtype(f.dtype, np.floating):
        raise ValueError(f"features must be a float (M, C) array, got {f.dtype} {f.shape}")
    c = np.asarray(coords_zyx)
    if c.shape != (f.shape[0], 3) or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(
            f"coords_zyx must be integer ({f.shape[0]}, 3) to match features, got "
            f"{c.dtype} {c.shape}"
        )
    h, w = (int(v) for v in grid_hw)
    if h < 1 or w < 1:
        raise ValueError(f"grid_hw must be positive, got {(h, w)}")
    if c.shape[0] and (
        c[:, 1].min() < 0 or c[:, 1].max() >= h or c[:, 2].min() < 0 or c[:, 2].max() >= w
    ):
        bad = int(np.sum((c[:, 1] < 0) | (c[:, 1] >= h) | (c[:, 2] < 0) | (c[:, 2] >= w)))
        raise ValueError(f"{bad} coords_zyx rows fall outside the {h}x{w} BEV grid")
    return np.ascontiguousarray(f), np.ascontiguousarray(c, dtype=np.int32), h, w


def scatter_to_bev(
    features: np.ndarray, coords_zyx: np.ndarray, grid_hw, out: np.ndarray | None = None
) -> np.ndarray:
    """Scatter pillar features to a dense (C, H, W) canvas, zeros where no pillar.

    Args:
        features: (M, C) float per-pillar features.
        coords_zyx: (M, 3) int pillar coordinates (z, y, x); y in [0, H), x in [0, W).
        grid_hw: (H, W) canvas size.
        out: optional C-contiguous (C, H, W) canvas of the features' dtype to reuse (zeroed
            first). A fresh canvas of tens of MiB costs more in page faults than the scatter
            itself; reusing one across frames avoids that.

    Returns:
        (C, H, W) canvas in the features' dtype (``out`` when given); row = y, column = x.

    """
    f, c, h, w = _validate(features, coords_zyx, grid_hw)
    shape = (f.shape[1], h, w)
    canvas = zeroed_output(out, shape, f.dtype)
    flat_index = c[:, 1].astype(np.int64) * w + c[:, 2]
    _scatter_planes(f, flat_index, canvas.reshape(shape[0], h * w))
    return canvas


def scatter_to_bev_reference(features: np.ndarray, coords_zyx: np.ndarray, grid_hw) -> np.ndarray:
    """Numpy reference of ``scatter_to_bev`` (last row wins on duplicate cells)."""
    f, c, h, w = _validate(features, coords_zyx, grid_hw)
    flat = c[:, 1].astype(np.int64) * w + c[:, 2]
    # Keep only each cell's last row, so the result does not rely on numpy's (unspecified)
    # order of duplicate fancy-index assignments.
    rev_unique, rev_first = np.unique(flat[::-1], return_index=True)
    last = len(flat) - 1 - rev_first
    out = np.zeros((f.shape[1], h * w), dtype=f.dtype)
    out[:, rev_unique] = f[last].T
    return out.reshape(f.shape[1], h, w)
