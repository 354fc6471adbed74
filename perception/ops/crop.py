"""Points inside an axis-aligned box, in input order (Numba, with a numpy reference).

The LiDAR preprocessing of every frame keeps the points inside the BEV grid's x/y/z ranges;
on a 10-sweep cloud (~250k points) numpy's six comparisons, five ANDs and a boolean gather
took ~8.5 ms on one core, more than the voxelization after it. The kernel makes one pass to
count and one to copy.

Semantics (the reference is the definition, the kernel is bit-identical to it): a point is
kept when ``lo[a] <= p[a] < hi[a]`` for a = x, y, z, compared in the points' own float type
(the bounds are cast to it, as numpy compares a float32 array with a Python float), so a
point exactly on a lower bound is kept and one on an upper bound is not; NaN is never kept.
Kept rows keep their order and their first ``columns`` columns, written as float32.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _crop(points, lo, hi, columns):
    n = points.shape[0]
    keep = np.empty(n, np.bool_)
    count = 0
    for i in range(n):
        k = (lo[0] <= points[i, 0] < hi[0] and lo[1] <= points[i, 1] < hi[1]
             and lo[2] <= points[i, 2] < hi[2])
        keep[i] = k
        count += k
    out = np.empty((count, columns), np.float32)
    j = 0
    for i in range(n):
        if keep[i]:
            for c in range(columns):
                out[j, c] = points[i, c]
            j += 1
    return out


def _bounds(points: np.ndarray, lo_m, hi_m) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    return np.asarray(lo_m, points.dtype), np.asarray(hi_m, points.dtype)


def crop_points(
    points: np.ndarray,
    lo_m: tuple[float, float, float],
    hi_m: tuple[float, float, float],
    columns: int | None = None,
) -> np.ndarray:
    """(K, columns) float32 rows of ``points`` with ``lo <= xyz < hi`` (module docstring).

    Args:
        points: (N, C) float32 or float64 points, x y z in the first three columns (metres).
        lo_m: lower x, y, z bounds in metres (inclusive).
        hi_m: upper x, y, z bounds in metres (exclusive).
        columns: how many leading columns to keep (default all).

    Returns:
        A new C-contiguous float32 array.

    """
    cols = points.shape[1] if columns is None else int(columns)
    if points.ndim != 2 or points.shape[1] < max(3, cols):
        raise ValueError(f"crop_points: need (N, >= {max(3, cols)}) points, got {points.shape}")
    lo, hi = _bounds(points, lo_m, hi_m)
    return _crop(np.ascontiguousarray(points), lo, hi, cols)


def crop_points_reference(
    points: np.ndarray,
    lo_m: tuple[float, float, float],
    hi_m: tuple[float, float, float],
    columns: int | None = None,
) -> np.ndarray:
    """The numpy definition ``crop_points`` is tested against."""
    cols = points.shape[1] if columns is None else int(columns)
    lo, hi = _bounds(points, lo_m, hi_m)
    xyz = points[:, :3]
    keep = ((xyz >= lo) & (xyz < hi)).all(axis=1)
    return np.ascontiguousarray(points[keep, :cols], dtype=np.float32)
