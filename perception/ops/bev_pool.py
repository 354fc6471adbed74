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

``bev_pool_prepare`` groups the frustum points once per geometry into segments: one camera's
points of one cell, input order inside (counting sorts, so stable). Segments are ordered by
camera - a cell's segments therefore come in input order - then by image column, depth bin and
image row of their first point: consecutive segments read the same few feature rows and depth
values, which stay in L1/L2. The forward walks the segments with the cell's accumulator row in
AVX2 registers (``_simd.segment_sum``: up to 96 channels per pass, loaded or zeroed once,
stored once), so each output row is written once and never re-read. The per-cell, per-channel
additions are exactly the reference's, so the result is bit-identical; with several Numba
threads each thread owns a stripe of cells and walks the same order (same bits). Without an
explicit plan, ``bev_pool`` reuses the plan of the last cell_index it saw when the new one is
equal (an int32 compare, ~0.2 ms for 6 cameras), else builds and keeps a new one - camera
geometry is fixed, so one plan serves every frame.

The backward goes feature row by feature row, column by column (the pixels of an image column
hit nearly the same cells at each depth, so grad_out rows stay cached), with the row's
grad_feats accumulator in registers and the dot product fused into the same pass over
channels (``_simd.row_backward``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from perception.ops._prefetch import prefetch
from perception.ops._simd import (
    SEGMENT_SUM_MAX_VECTORS,
    axpy1,
    dot8,
    row_backward1,
    row_backward2,
    row_backward3,
    row_backward4,
    row_backward5,
    row_backward6,
    row_backward7,
    row_backward8,
    row_backward9,
    row_backward10,
    row_backward11,
    row_backward12,
    segment_sum1,
    segment_sum2,
    segment_sum3,
    segment_sum4,
    segment_sum5,
    segment_sum6,
    segment_sum7,
    segment_sum8,
    segment_sum9,
    segment_sum10,
    segment_sum11,
    segment_sum12,
)


@dataclass(frozen=True)
class BevPoolPlan:
    """Frustum points grouped by camera and BEV cell, computed once per camera geometry.

    Segment s holds camera n's points of one cell, in input order; segments are sorted by
    camera (so a cell's segments come in input order), then by image column, depth bin and
    image row of their first point (a cache-friendly walk over the features; any order of
    distinct cells gives the same sums).

    Attributes:
        num_cells: number of BEV cells K.
        index_shape: (N, D, h, w) shape of the cell_index this plan was built from.
        seg_cell: (S,) int32 cell of each segment.
        seg_start: (S+1,) int64; segment s is entries seg_start[s]:seg_start[s+1].
        seg_first: (S,) uint8, 1 where the segment is its cell's first (no earlier camera).
        entries: (P,) int64, segment by segment: feat_row << 32 | point_index, one load per
            point in the forward (see the properties).
        empty_cells: (E,) int32 cells that no point reaches (zero in the output).

    """

    num_cells: int
    index_shape: tuple[int, int, int, int]
    seg_cell: np.ndarray
    seg_start: np.ndarray
    seg_first: np.ndarray
    entries: np.ndarray
    empty_cells: np.ndarray

    @property
    def num_points(self) -> int:
        """Frustum points that land in some cell."""
        return int(self.entries.shape[0])

    @property
    def point_index(self) -> np.ndarray:
        """(P,) int64 flat index into depth (N*D*h*w) of each entry."""
        return self.entries & 0xFFFFFFFF

    @property
    def feat_row(self) -> np.ndarray:
        """(P,) int64 flat row into feats viewed as (N*h*w, C) of each entry."""
        return self.entries >> 32


@numba.njit(cache=True)
def _count_cells(cell_flat, num_cells):
    bad = 0
    for p in range(cell_flat.shape[0]):
        k = cell_flat[p]
        if k < -1 or k >= num_cells:
            bad += 1
    return bad


@numba.njit(cache=True)
def _prepare(cell_flat, num_cells, n_cam, d_bins, h, w):
    hw = h * w
    chunk = d_bins * hw
    # Pass 1, camera by camera: points per touched cell, segments in order of discovery
    # (their first point), then a counting sort of the camera's segments by (image column,
    # depth bin) of the first point; ties keep discovery order (ascending image row).
    counts = np.zeros(num_cells, dtype=np.int64)
    first_p = np.empty(num_cells, dtype=np.int64)
    max_seg = min(cell_flat.shape[0], n_cam * num_cells)
    found = np.empty(max_seg, dtype=np.int32)  # cells, in discovery order
    seg_cell = np.empty(max_seg, dtype=np.int32)  # cells, in plan order
    seg_len = np.empty(max_seg, dtype=np.int64)
    cam_seg = np.zeros(n_cam + 1, dtype=np.int64)
    bucket = np.empty(max_seg, dtype=np.int64)
    bucket_pos = np.empty(w * d_bins + 1, dtype=np.int64)
    nseg = 0
    bad = 0
    for n in range(n_cam):
        s0 = nseg
        # Runs of equal cells (neighbouring pixels often share one) update the count once:
        # a count per point would chain every update through a store and a reload.
        p = n * chunk
        end = p + chunk
        while p < end:
            k = cell_flat[p]
            q = p + 1
            while q < end and cell_flat[q] == k:
                q += 1
            if k >= 0:
                if k >= num_cells:
                    bad += q - p
                else:
                    if counts[k] == 0:
                        first_p[k] = p
                        found[nseg] = k
                        nseg += 1
                    counts[k] += q - p
            elif k != -1:
                bad += q - p
            p = q
        bucket_pos[:] = 0
        for s in range(s0, nseg):
            p = first_p[found[s]]
            bucket[s] = (p % w) * d_bins + (p // hw) % d_bins
            bucket_pos[bucket[s] + 1] += 1
        for b in range(w * d_bins):
            bucket_pos[b + 1] += bucket_pos[b]
        for s in range(s0, nseg):
            o = s0 + bucket_pos[bucket[s]]
            bucket_pos[bucket[s]] += 1
            k = found[s]
            seg_cell[o] = k
            seg_len[o] = counts[k]
            counts[k] = 0
        cam_seg[n + 1] = nseg
    if bad:  # the caller raises; nothing below may index with a bad cell
        z = np.empty(0, dtype=np.int64)
        return bad, z.astype(np.int32), z, z.astype(np.uint8), z, z.astype(np.int32)
    seg_cell = seg_cell[:nseg].copy()
    seg_start = np.empty(nseg + 1, dtype=np.int64)
    seg_first = np.empty(nseg, dtype=np.uint8)
    seen = np.zeros(num_cells, dtype=np.uint8)
    q = 0
    for s in range(nseg):
        k = seg_cell[s]
        seg_start[s] = q
        seg_first[s] = 1 - seen[k]
        seen[k] = 1
        q += seg_len[s]
    seg_start[nseg] = q
    # Pass 2, camera by camera: each point to the next free entry of its segment.
    entries = np.empty(q, dtype=np.int64)
    pos = counts  # all zero again: reused as the write position per cell
    p = 0
    for n in range(n_cam):
        for s in range(cam_seg[n], cam_seg[n + 1]):
            pos[seg_cell[s]] = seg_start[s]
        # Nested loops instead of p // (D*h*w) and p % (h*w) per point; runs of equal cells
        # inside an image row of pixels move the write position once.
        for _ in range(d_bins):
            r0 = n * hw
            r1 = r0 + hw
            r = r0
            while r < r1:
                k = cell_flat[p]
                q = 1
                while r + q < r1 and cell_flat[p + q] == k:
                    q += 1
                if k >= 0:
                    e = pos[k]
                    for t in range(q):
                        entries[e + t] = (np.int64(r + t) << 32) | (p + t)
                    pos[k] = e + q
                p += q
                r += q
    n_empty = 0
    for k in range(num_cells):
        n_empty += 1 - seen[k]
    empty = np.empty(n_empty, dtype=np.int32)
    j = 0
    for k in range(num_cells):
        if seen[k] == 0:
            empty[j] = k
            j += 1
    return 0, seg_cell, seg_start, seg_first, entries, empty


def _check_cells(cell_index, num_cells):
    ci = np.asarray(cell_index)
    if ci.ndim != 4 or not np.issubdtype(ci.dtype, np.integer):
        raise ValueError(f"cell_index must be an integer (N, D, h, w) array, got {ci.dtype} "
                         f"{ci.shape}")
    k = int(num_cells)
    if k < 0:
        raise ValueError(f"num_cells must be >= 0, got {k}")
    return np.ascontiguousarray(ci, dtype=np.int32), k


def _raise_if_bad(ci: np.ndarray, k: int) -> None:
    bad = _count_cells(ci.reshape(-1), k)
    if bad:
        raise ValueError(f"cell_index has {bad} entries outside [-1, {k})")


def bev_pool_prepare(cell_index: np.ndarray, num_cells: int) -> BevPoolPlan:
    """Group frustum points by camera and BEV cell once, for ``bev_pool(..., plan=plan)``.

    Args:
        cell_index: (N, D, h, w) int cell of each frustum point in [0, num_cells), or -1.
        num_cells: number of BEV cells K (e.g. H * W).

    Returns:
        The plan; raises ValueError when an index is outside [-1, num_cells).

    """
    ci, k = _check_cells(cell_index, num_cells)
    n, d, h, w = ci.shape
    if ci.size >= 2**32:
        raise ValueError(f"cell_index has {ci.size} frustum points, the plan holds < 2**32")
    bad, *arrays = _prepare(ci.reshape(-1), k, n, d, h, w)
    if bad:
        raise ValueError(f"cell_index has {bad} entries outside [-1, {k})")
    return BevPoolPlan(k, (n, d, h, w), *arrays)


@numba.njit(cache=True, inline="always")
def _segment_sum(nv, out, k, c0, feats2d, entries, dep, start, end, first):
    # Literal dispatch to the register-blocked kernel of nv vectors (the branch is the same
    # for every segment of a block, so it predicts perfectly).
    if nv == 1:
        segment_sum1(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 2:
        segment_sum2(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 3:
        segment_sum3(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 4:
        segment_sum4(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 5:
        segment_sum5(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 6:
        segment_sum6(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 7:
        segment_sum7(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 8:
        segment_sum8(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 9:
        segment_sum9(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 10:
        segment_sum10(out, k, c0, feats2d, entries, dep, start, end, first)
    elif nv == 11:
        segment_sum11(out, k, c0, feats2d, entries, dep, start, end, first)
    else:
        segment_sum12(out, k, c0, feats2d, entries, dep, start, end, first)


@numba.njit(cache=True)
def _walk_segments(out, depth_flat, feats2d, seg_cell, seg_start, seg_first, entries, block,
                   group, groups):
    """Add the segments of the cells of ``group`` (stripes of 64 cells) into out, in order."""
    c = feats2d.shape[1]
    for c0 in range(0, c, block):
        c1 = min(c, c0 + block)
        nv = (c1 - c0) // 8
        for sg in range(seg_cell.shape[0]):
            k = seg_cell[sg]
            if groups > 1 and (k >> 6) % groups != group:
                continue
            if nv > 0:
                _segment_sum(nv, out, k, c0, feats2d, entries, depth_flat, seg_start[sg],
                             seg_start[sg + 1], seg_first[sg])
            for q in range(c0 + 8 * nv, c1):  # the last < 8 channels, one at a time
                acc = np.float32(0.0) if seg_first[sg] else out[k, q]
                for e in range(seg_start[sg], seg_start[sg + 1]):
                    acc += depth_flat[entries[e] & 0xFFFFFFFF] * feats2d[entries[e] >> 32, q]
                out[k, q] = acc


@numba.njit(cache=True)
def _new_output(num_cells, c, empty_cells):
    out = np.empty((num_cells, c), dtype=np.float32)
    for j in range(empty_cells.shape[0]):
        out[empty_cells[j], :] = 0.0
    return out


@numba.njit(cache=True, parallel=True)
def _walk_parallel(out, depth_flat, feats2d, seg_cell, seg_start, seg_first, entries, block,
                   groups):
    # Threads own disjoint sets of cells and walk the segments in plan order, so each cell
    # still adds its cameras in order: no atomics, the same bits for any thread count.
    for g in prange(groups):
        _walk_segments(out, depth_flat, feats2d, seg_cell, seg_start, seg_first, entries, block,
                       g, groups)


def _channel_block(c: int) -> int:
    # As many channels per pass as the registers hold (a pass re-reads the plan), split
    # evenly: 80 -> one pass of 80, 128 -> two of 64.
    passes = -(-c // (8 * SEGMENT_SUM_MAX_VECTORS))
    per_pass = -(-c // passes)
    return max(8, -(-per_pass // 8) * 8)


def _run_plan(dep_flat: np.ndarray, f2: np.ndarray, plan: BevPoolPlan) -> np.ndarray:
    out = _new_output(plan.num_cells, f2.shape[1], plan.empty_cells)
    args = (out, dep_flat, f2, plan.seg_cell, plan.seg_start, plan.seg_first, plan.entries,
            _channel_block(f2.shape[1]))
    groups = numba.get_num_threads()
    if groups > 1:
        _walk_parallel(*args, groups)
    else:
        # One thread: no parallel region at all (measured ~30% faster than prange over one
        # group on this machine).
        _walk_segments(*args, 0, 1)
    return out


# The plan of the last cell_index seen without an explicit plan: (cell_index copy, plan).
# Camera geometry rarely changes, so the next call usually only pays the comparison.
_LAST_PLAN: tuple[np.ndarray, BevPoolPlan] | None = None


@numba.njit(cache=True)
def _same_cells(a, b):
    # Equality of two integer arrays (values compared after sign extension) in one read of
    # each, vectorized (np.array_equal builds a boolean temporary first: 3x slower), stopping
    # at the first differing block.
    n = a.shape[0]
    for s in range(0, n, 4096):
        diff = 0
        for i in range(s, min(n, s + 4096)):
            diff |= a[i] ^ b[i]
        if diff:
            return False
    return True


def _cached_plan(ci: np.ndarray, k: int) -> BevPoolPlan:
    global _LAST_PLAN
    last = _LAST_PLAN  # one read: another thread may replace it meanwhile
    if (last is not None and last[1].num_cells == k and last[0].shape == ci.shape
            and _same_cells(last[0].reshape(-1), ci.reshape(-1))):
        return last[1]
    plan = bev_pool_prepare(ci, k)
    # int16 when every valid cell fits: the compare is memory-bound, and this is 25% less to
    # read (an out-of-range value in a later cell_index can never compare equal to it).
    _LAST_PLAN = (ci.astype(np.int16) if k <= 2**15 else ci.copy(), plan)
    return plan


@numba.njit(cache=True, inline="always")
def _row_backward(nv, grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                  grad_feats):
    # Literal dispatch, as _segment_sum.
    if nv == 1:
        row_backward1(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 2:
        row_backward2(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 3:
        row_backward3(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 4:
        row_backward4(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 5:
        row_backward5(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 6:
        row_backward6(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 7:
        row_backward7(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 8:
        row_backward8(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 9:
        row_backward9(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                      grad_feats)
    elif nv == 10:
        row_backward10(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                       grad_feats)
    elif nv == 11:
        row_backward11(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                       grad_feats)
    else:
        row_backward12(grad_out, feats2d, r, ci_flat, dep_flat, gd_flat, base, hw, d_bins,
                       grad_feats)


@numba.njit(cache=True)
def _backward_rows(grad_out, depth, feats2d, ci, grad_depth, grad_feats, t0, t1):
    """Backward of feature rows t0..t1 in column order (see _backward)."""
    n_cam, d_bins, h, w = ci.shape
    c = feats2d.shape[1]
    hw = h * w
    # Whole rows in registers when they fit (C a multiple of 8, at most 96 channels).
    nv = c // 8 if c % 8 == 0 and c <= 8 * SEGMENT_SUM_MAX_VECTORS else 0
    ci_flat = ci.reshape(-1)
    dep_flat = depth.reshape(-1)
    gd_flat = grad_depth.reshape(-1)
    for t in range(t0, t1):
        n = t // hw
        j = (t % hw) // h
        i = t % h
        r = n * hw + i * w + j
        if nv > 0:
            _row_backward(nv, grad_out, feats2d, r, ci_flat, dep_flat, gd_flat,
                          n * d_bins * hw + i * w + j, hw, d_bins, grad_feats)
            continue
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


@numba.njit(cache=True, parallel=True)
def _backward_parallel(grad_out, depth, feats2d, ci, grad_depth, grad_feats, parts):
    rows = grad_feats.shape[0]
    for b in prange(parts):
        _backward_rows(grad_out, depth, feats2d, ci, grad_depth, grad_feats,
                       rows * b // parts, rows * (b + 1) // parts)


def _backward(grad_out, depth, feats2d, ci):
    # One feature row (n, i, j) at a time: its D frustum points write only their own
    # grad_depth entries and this row of grad_feats, so rows run in parallel without atomics.
    # Rows go column by column (i fastest): the pixels of an image column see nearly the
    # same BEV cells at each depth, so their grad_out rows are still in cache. Each row's
    # own sums do not depend on the row order.
    n_cam, _, h, w = ci.shape
    grad_depth = np.zeros(ci.shape, dtype=np.float32)
    grad_feats = np.empty((n_cam * h * w, feats2d.shape[1]), dtype=np.float32)
    threads = numba.get_num_threads()
    if threads > 1:
        _backward_parallel(grad_out, depth, feats2d, ci, grad_depth, grad_feats, 4 * threads)
    else:  # no parallel region for one thread (see _run_plan)
        _backward_rows(grad_out, depth, feats2d, ci, grad_depth, grad_feats, 0,
                       grad_feats.shape[0])
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
        plan: optional ``bev_pool_prepare(cell_index, num_cells)``. Without it the plan of
            the last cell_index seen is reused when cell_index is equal to it (a compare,
            ~0.2 ms for 6 cameras), else built and kept; the result is the same either way.
            Runs on Numba threads over disjoint cells; bit-identical for any thread count.

    Returns:
        (K, C) float32 pooled features.

    """
    dep, f2, ci, k = _check_inputs(depth, feats, cell_index, num_cells)
    if plan is None:
        plan = _cached_plan(ci, k)
    elif plan.index_shape != ci.shape or plan.num_cells != k:
        raise ValueError(
            f"plan was built for cell_index {plan.index_shape} / {plan.num_cells} cells, "
            f"got {ci.shape} / {k}"
        )
    return _run_plan(dep.reshape(-1), f2, plan)


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
    _raise_if_bad(ci, k)
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
