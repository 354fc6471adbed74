"""Circle NMS in bird's-eye view for center-based detection decoding (Numba + numpy reference).

CenterPoint's ``circle_nms``: walk detections by descending score, keep one, suppress every
later one whose centre lies within the radius. Differences from CenterPoint's code, on purpose:

* ``radius_m`` is a distance in metres, compared as ``dx*dx + dy*dy <= radius_m**2`` (float64).
  CenterPoint compares the squared distance against its ``min_radius`` unsquared; pass
  ``sqrt(min_radius)`` to reproduce its numbers.
* ties in score keep the lower input index first (stable sort), where CenterPoint's
  ``argsort()[::-1]`` is unspecified.
* rows with a NaN score or a non-finite centre are never kept and suppress nothing.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _circle_nms(x, y, order, r2, cell_m):
    """Greedy NMS where each kept box only visits boxes in its own and the 8 neighbouring
    grid cells (cells are >= the radius, so no pair within the radius is missed): O(N) for
    spread-out detections instead of O(N^2), with exactly the greedy result.
    """
    n = order.shape[0]
    keep = np.empty(n, dtype=np.int64)
    if n == 0:
        return keep
    x0 = x[order[0]]
    y0 = y[order[0]]
    for a in range(n):
        x0 = min(x0, x[order[a]])
        y0 = min(y0, y[order[a]])
    gx = np.empty(n, dtype=np.int64)
    gy = np.empty(n, dtype=np.int64)
    nx = 1
    ny = 1
    for a in range(n):
        gx[a] = int((x[order[a]] - x0) / cell_m)
        gy[a] = int((y[order[a]] - y0) / cell_m)
        nx = max(nx, gx[a] + 1)
        ny = max(ny, gy[a] + 1)
    # Boxes bucketed by cell (counting sort), each bucket in rank order.
    start = np.zeros(nx * ny + 1, dtype=np.int64)
    for a in range(n):
        start[gy[a] * nx + gx[a] + 1] += 1
    for c in range(nx * ny):
        start[c + 1] += start[c]
    pos = start[:-1].copy()
    bucket = np.empty(n, dtype=np.int64)
    for a in range(n):
        c = gy[a] * nx + gx[a]
        bucket[pos[c]] = a
        pos[c] += 1
    suppressed = np.zeros(n, dtype=np.bool_)
    nkeep = 0
    for a in range(n):
        if suppressed[a]:
            continue
        i = order[a]
        keep[nkeep] = i
        nkeep += 1
        xi = x[i]
        yi = y[i]
        for cy in range(max(gy[a] - 1, 0), min(gy[a] + 2, ny)):
            for cx in range(max(gx[a] - 1, 0), min(gx[a] + 2, nx)):
                c = cy * nx + cx
                for e in range(start[c], start[c + 1]):
                    b = bucket[e]
                    if b > a and not suppressed[b]:
                        j = order[b]
                        dx = xi - x[j]
                        dy = yi - y[j]
                        if dx * dx + dy * dy <= r2:
                            suppressed[b] = True
    return keep[:nkeep].copy()


def _prepare(centers_xy, scores, radius_m):
    c = np.asarray(centers_xy, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if c.ndim != 2 or c.shape[1] < 2 or c.shape[0] != s.shape[0]:
        raise ValueError(f"centers_xy must be (N, 2) matching scores (N,), got {c.shape} and "
                         f"{s.shape}")
    r = float(radius_m)
    if not (r >= 0 and np.isfinite(r)):
        raise ValueError(f"radius_m must be finite and >= 0, got {radius_m}")
    ok = np.flatnonzero(~np.isnan(s) & np.isfinite(c[:, 0]) & np.isfinite(c[:, 1]))
    order = ok[np.argsort(-s[ok], kind="stable")]
    return np.ascontiguousarray(c[:, 0]), np.ascontiguousarray(c[:, 1]), order, r * r


def circle_nms(centers_xy: np.ndarray, scores: np.ndarray, radius_m: float) -> np.ndarray:
    """Greedy circle NMS on BEV centres.

    Args:
        centers_xy: (N, 2) box centres [x, y] in metres (extra columns ignored).
        scores: (N,) detection scores.
        radius_m: suppression radius in metres.

    Returns:
        keep (K,) int64 indices into the input, by descending score (ties: lower index first).

    """
    x, y, order, r2 = _prepare(centers_xy, scores, radius_m)
    if len(order) == 0:
        return np.zeros(0, dtype=np.int64)
    ox, oy = x[order], y[order]
    extent = max(float(ox.max() - ox.min()), float(oy.max() - oy.min()))
    # Any cell size >= the radius is exact; grow it so the grid has about N cells at most.
    cell_m = max(math.sqrt(r2) * 1.001, extent / max(1.0, math.sqrt(len(order))), 1e-9)
    return _circle_nms(x, y, order.astype(np.int64), r2, cell_m)


def circle_nms_reference(centers_xy: np.ndarray, scores: np.ndarray, radius_m: float) -> np.ndarray:
    """Numpy reference of ``circle_nms``: one vectorized suppression sweep per kept box."""
    x, y, order, r2 = _prepare(centers_xy, scores, radius_m)
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for a in range(len(order)):
        if not alive[a]:
            continue
        i = order[a]
        keep.append(i)
        rest = order[a + 1 :]
        dx = x[i] - x[rest]
        dy = y[i] - y[rest]
        alive[a + 1 :] &= ~(dx * dx + dy * dy <= r2)
    return np.asarray(keep, dtype=np.int64)
