"""Lift-splat camera BEV pooling (Numba): fused forward, backward, reusable geometry plan.

Every frustum point ``(n, d, i, j)`` (camera, depth bin, feature row, feature column) carries
the depth probability ``depth[n, d, i, j]`` and the image feature ``feats[n, i, j, :]``; its
BEV cell ``cell_index[n, d, i, j]`` (or -1 outside the grid) comes from fixed camera geometry.

    forward:  out[k, :] = sum over points p in cell k of depth[p] * feats[row(p), :]
    backward: grad_depth[p] = dot(grad_out[cell(p)], feats[row(p)])
              grad_feats[r, :] = sum over d of depth[n, d, i, j] * grad_out[cell, :]

The (points x C) product is never materialized.

Summation order (so that every variant is bit-identical to the numpy reference): products
``depth * feat`` are rounded to float32 and added in float32; the forward adds a cell's points
in input (C) order; grad_feats adds depth bins in ascending d; the dot product of grad_depth
runs over 8 interleaved lanes (lane l sums channels l, l+8, ... in order), combined as
``((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`` - the order an 8-wide SIMD unit uses, so the kernel
vectorizes without reassociating anything.

``bev_pool_prepare`` sorts the frustum points by cell once (a stable counting sort, so each
cell keeps input order). With the plan, the forward is a cache-friendly gather that runs in
parallel over cells with no atomics - and still gives the same bits as the serial scatter.
Camera geometry is fixed, so one plan serves every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from perception.ops._prefetch import prefetch
from perception.ops._simd import axpy1, axpy4, dot8

# Frustum points ahead whose feature rows the forward gather prefetches.
_AHEAD = 16


@dataclass(frozen=True)
class BevPoolPlan:
    """Frustum points sorted by BEV cell, computed once per camera geometry.

    Attributes:
        num_cells: number of BEV cells K.
        index_shape: (N, D, h, w) shape of the cell_index this plan was built from.
        cell_start: (K+1,) int64; points of cell k are entries cell_start[k]:cell_start[k+1].
        point_index: (P,) int32/int64 flat index into depth (N*D*h*w), sorted by cell, input
            order inside a cell.
        feat_row: (P,) same dtype, flat row into feats viewed as (N*h*w, C), same order.

    """

    num_cells: int
    index_shape: tuple[int, int, int, int]
    cell_start: np.ndarray
    point_index: np.ndarray
    feat_row: np.ndarray

    @property
    def num_points(self) -> int:
        """Frustum points that land in some cell."""
        return int(self.point_index.shape[0])


@numba.njit(cache=True)
def _count_cells(cell_flat, num_cells):
    counts = np.zeros(num_cells + 1, dtype=np.int64)
    bad = 0
    for p in range(cell_flat.shape[0]):
        k = cell_flat[p]
        if k >= 0:
            if k >= num_cells:
                bad += 1
            else:
                counts[k + 1] += 1
        elif k != -1:
            bad += 1
    return counts, bad


@numba.njit(cache=True)
def _prepare(cell_flat, num_cells, d_bins, hw, counts, idx_dtype_probe):
    start = np.cumsum(counts)
    total = start[num_cells]
    point_index = np.empty(total, dtype=idx_dtype_probe.dtype)
    feat_row = np.empty(total, dtype=idx_dtype_probe.dtype)
    pos = start[:num_cells].copy()
    n_cam = cell_flat.shape[0] // (d_bins * hw)
    p = 0
    # Nested loops instead of p // (D*h*w) and p % (h*w): two integer divisions per point
    # cost more than the rest of the sort.
    for n in range(n_cam):
        for _ in range(d_bins):
            for r in range(n * hw, (n + 1) * hw):
                k = cell_flat[p]
                if k >= 0:
                    q = pos[k]
                    point_index[q] = p
                    feat_row[q] = r
                    pos[k] = q + 1
                p += 1
    return start, point_index, feat_row


def _check_cells(cell_index, num_cells):
    ci = np.asarray(cell_index)
    if ci.ndim != 4 or not np.issubdtype(ci.dtype, np.integer):
        raise ValueError(f"cell_index must be an integer (N, D, h, w) array, got {ci.dtype} "
                         f"{ci.shape}")
    k = int(num_cells)
    if k < 0:
        raise ValueError(f"num_cells must be >= 0, got {k}")
    return np.ascontiguousarray(ci, dtype=np.int32), k


def bev_pool_prepare(cell_index: np.ndarray, num_cells: int) -> BevPoolPlan:
    """Sort frustum points by BEV cell once, for ``bev_pool(..., plan=plan)``.

    Args:
        cell_index: (N, D, h, w) int cell of each frustum point in [0, num_cells), or -1.
        num_cells: number of BEV cells K (e.g. H * W).

    Returns:
        The plan; raises ValueError when an index is outside [-1, num_cells).

    """
    ci, k = _check_cells(cell_index, num_cells)
    flat = ci.reshape(-1)
    counts, bad = _count_cells(flat, k)
    if bad:
        raise ValueError(f"cell_index has {bad} entries outside [-1, {k})")
    n, d, h, w = ci.shape
    probe = np.empty(0, dtype=np.int32 if flat.shape[0] < 2**31 else np.int64)
    start, point_index, feat_row = _prepare(flat, k, d, h * w, counts, probe)
    return BevPoolPlan(k, (n, d, h, w), start, point_index, feat_row)


@numba.njit(cache=True)
def _forward_scatter(depth, feats2d, ci, num_cells):
    n_cam, d_bins, h, w = ci.shape
    out = np.zeros((num_cells, feats2d.shape[1]), dtype=np.float32)
    hw = h * w
    for n in range(n_cam):
        for d in range(d_bins):
            for i in range(h):
                for j in range(w):
                    k = ci[n, d, i, j]
                    if k >= 0:
                        axpy1(out[k], feats2d[n * hw + i * w + j], depth[n, d, i, j])
    return out


@numba.njit(cache=True, parallel=True)
def _forward_plan(depth_flat, feats2d, start, point_index, feat_row, num_cells):
    n = point_index.shape[0]
    # Depth values in plan order first: one pass of independent loads (many misses in
    # flight) instead of a scattered load stalling every accumulation step.
    dep = np.empty(n, dtype=np.float32)
    for e in prange(n):
        dep[e] = depth_flat[point_index[e]]
    out = np.zeros((num_cells, feats2d.shape[1]), dtype=np.float32)
    for k in prange(num_cells):
        acc = out[k]  # stays in L1 while the cell's points stream through
        e = start[k]
        end = start[k + 1]
        # Four points per pass: one load/store of the accumulator row instead of four, and the
        # same additions in the same order as one point at a time.
        while e + 4 <= end:
            if e + _AHEAD + 4 <= n:
                for a in range(4):
                    prefetch(feats2d, feat_row[e + _AHEAD + a])
            axpy4(acc, feats2d[feat_row[e]], feats2d[feat_row[e + 1]],
                  feats2d[feat_row[e + 2]], feats2d[feat_row[e + 3]],
                  dep[e], dep[e + 1], dep[e + 2], dep[e + 3])
            e += 4
        while e < end:
            axpy1(acc, feats2d[feat_row[e]], dep[e])
            e += 1
    return out


@numba.njit(cache=True, parallel=True)
def _backward(grad_out, depth, feats2d, ci):
    n_cam, d_bins, h, w = ci.shape
    c = feats2d.shape[1]
    hw = h * w
    grad_depth = np.zeros((n_cam, d_bins, h, w), dtype=np.float32)
    grad_feats = np.empty((n_cam * hw, c), dtype=np.float32)
    # One feature row (n, i, j) per iteration: its D frustum points write only their own
    # grad_depth entries and this row of grad_feats, so rows run in parallel without atomics.
    for r in prange(n_cam * hw):
        n = r // hw
        i = (r % hw) // w
        j = r % w
        gf = grad_feats[r]
        gf[:] = 0.0
        f = feats2d[r]
        for d in range(d_bins):
            if d + 2 < d_bins and ci[n, d + 2, i, j] >= 0:
                prefetch(grad_out, ci[n, d + 2, i, j])
            k = ci[n, d, i, j]
            if k >= 0:
                g = grad_out[k]
                axpy1(gf, g, depth[n, d, i, j])
                grad_depth[n, d, i, j] = dot8(g, f)
    return grad_depth, grad_feats


def _check_inputs(depth, feats, cell_index, num_cells):
    ci, k = _check_cells(cell_index, num_cells)
    dep = np.ascontiguousarray(depth, dtype=np.float32)
    f = np.asarray(feats)
    if dep.shape != ci.shape:
        raise ValueError(f"depth {dep.shape} and cell_index {ci.shape} must have the same shape")
    n, _, h, w = ci.shape
    if f.ndim != 4 or f.shape[:3] != (n, h, w):
        raise ValueError(f"feats must be (N, h, w, C) = ({n}, {h}, {w}, C), got {f.shape}")
    f2 = np.ascontiguousarray(f, dtype=np.float32).reshape(n * h * w, f.shape[3])
    return dep, f2, ci, k


def bev_pool(
    depth: np.ndarray,
    feats: np.ndarray,
    cell_index: np.ndarray,
    num_cells: int,
    plan: BevPoolPlan | None = None,
) -> np.ndarray:
    """Sum depth-weighted camera features into BEV cells (lift-splat), fused.

    Args:
        depth: (N, D, h, w) float32 depth-bin probabilities per camera pixel.
        feats: (N, h, w, C) float32 image features.
        cell_index: (N, D, h, w) int32 BEV cell per frustum point in [0, num_cells) or -1.
        num_cells: number of BEV cells K (H * W for an H x W grid, row-major).
        plan: optional ``bev_pool_prepare(cell_index, num_cells)``; with it the forward runs
            in parallel over cells (Numba threads); the result is bit-identical either way.

    Returns:
        (K, C) float32 pooled features.

    """
    dep, f2, ci, k = _check_inputs(depth, feats, cell_index, num_cells)
    if plan is None:
        counts_bad = _count_cells(ci.reshape(-1), k)[1]
        if counts_bad:
            raise ValueError(f"cell_index has {counts_bad} entries outside [-1, {k})")
        return _forward_scatter(dep, f2, ci, k)
    if plan.index_shape != ci.shape or plan.num_cells != k:
        raise ValueError(
            f"plan was built for cell_index {plan.index_shape} / {plan.num_cells} cells, "
            f"got {ci.shape} / {k}"
        )
    return _forward_plan(dep.reshape(-1), f2, plan.cell_start, plan.point_index,
                         plan.feat_row, k)


def bev_pool_backward(
    grad_out: np.ndarray,
    depth: np.ndarray,
    feats: np.ndarray,
    cell_index: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``bev_pool`` with respect to depth and feats.

    Args:
        grad_out: (K, C) float32 gradient of the loss with respect to the pooled output.
        depth: (N, D, h, w) float32, as given to the forward.
        feats: (N, h, w, C) float32, as given to the forward.
        cell_index: (N, D, h, w) int32, as given to the forward.

    Returns:
        grad_depth (N, D, h, w) float32 and grad_feats (N, h, w, C) float32.

    """
    g = np.asarray(grad_out)
    if g.ndim != 2:
        raise ValueError(f"grad_out must be (K, C), got {g.shape}")
    dep, f2, ci, k = _check_inputs(depth, feats, cell_index, g.shape[0])
    if g.shape[1] != f2.shape[1]:
        raise ValueError(f"grad_out has {g.shape[1]} channels, feats {f2.shape[1]}")
    bad = _count_cells(ci.reshape(-1), k)[1]
    if bad:
        raise ValueError(f"cell_index has {bad} entries outside [-1, {k})")
    g = np.ascontiguousarray(g, dtype=np.float32)
    grad_depth, grad_feats = _backward(g, dep, f2, ci)
    return grad_depth, grad_feats.reshape(np.asarray(feats).shape)


# ----------------------------------------------------------------------------------------
# Plain-numpy references.
# ----------------------------------------------------------------------------------------


def _reference_points(depth, feats, cell_index, num_cells):
    dep, f2, ci, k = _check_inputs(depth, feats, cell_index, num_cells)
    flat = ci.reshape(-1)
    if np.any((flat < -1) | (flat >= k)):
        raise ValueError(f"cell_index has entries outside [-1, {k})")
    n, d, h, w = ci.shape
    p = np.flatnonzero(flat >= 0)
    rows = (p // (d * h * w)) * (h * w) + p % (h * w)
    return dep.reshape(-1), f2, flat, p, rows


def bev_pool_reference(
    depth: np.ndarray, feats: np.ndarray, cell_index: np.ndarray, num_cells: int
) -> np.ndarray:
    """Numpy reference of ``bev_pool``: materialized products, ``np.add.at`` in input order."""
    dep, f2, flat, p, rows = _reference_points(depth, feats, cell_index, num_cells)
    out = np.zeros((int(num_cells), f2.shape[1]), dtype=np.float32)
    np.add.at(out, flat[p], dep[p][:, None] * f2[rows])
    return out


def _dot8_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise float32 dot products in the 8-lane order of ``_simd.dot8``."""
    m, c = a.shape
    lanes = np.zeros((m, 8), dtype=np.float32)
    c8 = c - c % 8
    for q in range(0, c8, 8):
        lanes += a[:, q : q + 8] * b[:, q : q + 8]
    lanes[:, : c - c8] += a[:, c8:] * b[:, c8:]
    return ((lanes[:, 0] + lanes[:, 4]) + (lanes[:, 2] + lanes[:, 6])) + (
        (lanes[:, 1] + lanes[:, 5]) + (lanes[:, 3] + lanes[:, 7])
    )


def bev_pool_backward_reference(
    grad_out: np.ndarray, depth: np.ndarray, feats: np.ndarray, cell_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy reference of ``bev_pool_backward`` (same float32 summation order)."""
    g = np.ascontiguousarray(grad_out, dtype=np.float32)
    dep, f2, flat, p, rows = _reference_points(depth, feats, cell_index, g.shape[0])
    grad_depth = np.zeros(flat.shape[0], dtype=np.float32)
    grad_depth[p] = _dot8_reference(g[flat[p]], f2[rows])
    ci = np.asarray(cell_index).reshape(np.asarray(depth).shape)
    n, d_bins, h, w = ci.shape
    grad_feats = np.zeros((n, h, w, f2.shape[1]), dtype=np.float32)
    d4 = np.asarray(depth, dtype=np.float32)
    for d in range(d_bins):  # ascending depth bins, like the kernel
        k = ci[:, d]
        valid = k >= 0
        grad_feats[valid] += d4[:, d][valid][:, None] * g[k[valid]]
    return grad_depth.reshape(ci.shape), grad_feats
