"""Round-robin reorder of accumulated sweeps before a first-come voxel cap (Numba + numpy ref).

Hard voxelization keeps the *first* ``max_points`` points of each voxel. Accumulated sweeps
arrive sweep-major, newest first, and a pillar of a 10-sweep cloud holds ~50 returns (ground
included), so the cap kept almost only the current sweep and dropped where objects were
0.05-0.45 s ago: the motion trail that velocity is read from. Interleaving the sweeps makes a
full pillar keep returns of every sweep.

Definition: sweeps are the runs of equal time lag (one column); the output lists the 0th point
of every run in run order, then the 1st point of every run that has one, and so on. One run, or
a run per point (per-point timestamps), leaves the order unchanged.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _interleave(points, lag_col):
    n, c = points.shape
    out = np.empty_like(points)
    if n == 0:
        return out
    runs = 1
    for i in range(1, n):
        if points[i, lag_col] != points[i - 1, lag_col]:
            runs += 1
    starts = np.empty(runs + 1, dtype=np.int64)
    starts[0] = 0
    k = 1
    longest = 0
    for i in range(1, n):
        if points[i, lag_col] != points[i - 1, lag_col]:
            starts[k] = i
            longest = max(longest, i - starts[k - 1])
            k += 1
    starts[runs] = n
    longest = max(longest, n - starts[runs - 1])
    j = 0
    for r in range(longest):
        for k in range(runs):
            src = starts[k] + r
            if src < starts[k + 1]:
                for ch in range(c):
                    out[j, ch] = points[src, ch]
                j += 1
    return out


def interleave_sweeps(points: np.ndarray, lag_col: int = 4) -> np.ndarray:
    """Points reordered round-robin over their sweeps (same rows; see the module docstring).

    Args:
        points: (N, C) float32 points, time lag in column ``lag_col``.
        lag_col: column holding the time lag (seconds; any unit works: only equality counts).

    Returns:
        (N, C) float32, a new array.

    Raises:
        ValueError: not a 2D array, or ``lag_col`` out of range.

    """
    pts = np.asarray(points)
    if pts.ndim != 2 or not 0 <= lag_col < pts.shape[1]:
        raise ValueError(f"interleave_sweeps: expected (N, C>{lag_col}) points, got {pts.shape}")
    return _interleave(np.ascontiguousarray(pts, dtype=np.float32), lag_col)


def interleave_sweeps_reference(points: np.ndarray, lag_col: int = 4) -> np.ndarray:
    """Plain numpy version of ``interleave_sweeps`` (same output, bit for bit)."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    n = len(pts)
    if n < 2:
        return pts.copy()
    lag = pts[:, lag_col]
    starts = np.flatnonzero(np.r_[True, lag[1:] != lag[:-1]])
    counts = np.diff(np.r_[starts, n])
    runs = len(starts)
    run = np.repeat(np.arange(runs), counts)
    rank = np.arange(n) - np.repeat(starts, counts)
    order = np.lexsort((run, rank))  # by rank, then by run
    return pts[order]
