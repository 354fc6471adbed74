"""Hard and dynamic voxelization of point clouds (Numba), with plain-numpy references.

Semantics are those of spconv's CPU ``PointToVoxel`` / mmcv's hard voxelization, bit for bit:

* the grid is ``round((max - min) / size)`` per axis in float32 (see ``_grid.make_grid``);
* a point's voxel is ``floor((p - min) / size)`` per axis in float32; a point is outside the
  range (ignored) unless every axis lands in ``[0, grid)``. Rows with NaN or inf in x, y or z
  fail that test and are ignored; NaN in the other columns is copied through unchanged;
* voxels are numbered in the order of their first point; inside a voxel points keep input
  order; a point past ``max_points_per_voxel`` is dropped; a point whose voxel would be number
  ``max_voxels`` or later is dropped (later points of voxels already opened are still kept).

Coordinates are returned in (z, y, x) order as int32, like spconv and mmdet3d.

How, single thread (``hard_voxelize``, grids under 2**31 cells): one fused pass over the points
in chunks of 256. Per chunk, x, y, z are transposed into small contiguous buffers so that the
key arithmetic vectorizes (8 float32 divisions per instruction: the scalar divider bounded the
old key loop); then each point, in input order, finds its voxel id - in a dense cell table
when the grid is small (PointPillars: 512 x 512 cells; int32 entries id << 8 | count when there
are more points than cells, else int16 ids, 512 KiB, that stay in L2), else in an
open-addressing hash of 8-byte rows key << 32 | id sized to 2x the voxels it can hold (2 MiB
instead of spconv's 168 MiB dense grid for CenterPoint), probes prefetched 32 points ahead -
and is copied straight into its output slot. A voxel's row is zeroed and its (z, y, x)
recorded when it opens, so padding needs no second pass; the output is allocated for the most
voxels there can be (``np.empty``: untouched pages cost nothing) and returned as a view of the
first M rows.

``parallel=True`` (and grids of 2**31 cells or more) takes the staged path shared with
``assign_voxels``: (1) a pass computes each point's int64 key (on Numba threads);
(2) one serial pass assigns voxel ids with the same hash (voxel numbering depends on input
order, so it stays serial and the output is identical); (3) a counting sort groups kept
points by voxel; (4) the output is written voxel by voxel on Numba threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from perception.ops._grid import VoxelGrid, as_points, make_grid
from perception.ops._prefetch import prefetch

# Golden-ratio multiplier for Fibonacci hashing of the 64-bit linear voxel key.
_HASH_MUL = np.uint64(11400714819323198485)
# How many points ahead the hash probe and the gather prefetch: enough in flight to cover
# DRAM latency (measured: 16-64 all ~2x faster than none on the 10-sweep CenterPoint case).
_PREFETCH_AHEAD = 32
_GATHER_AHEAD = 16


@numba.njit(cache=True, inline="always")
def _point_key(points, i, vsize, rmin, gx, gy, gz):
    # float32 arithmetic throughout, z then y then x, exactly as spconv's point2voxel_cpu.
    fz = np.floor((points[i, 2] - rmin[2]) / vsize[2])
    if not (fz >= 0 and fz < gz):  # also false for NaN
        return -1
    fy = np.floor((points[i, 1] - rmin[1]) / vsize[1])
    if not (fy >= 0 and fy < gy):
        return -1
    fx = np.floor((points[i, 0] - rmin[0]) / vsize[0])
    if not (fx >= 0 and fx < gx):
        return -1
    return (np.int64(fz) * gy + np.int64(fy)) * gx + np.int64(fx)


@numba.njit(cache=True, inline="always")
def _point_key_branchless(points, i, vsize, rmin, gx, gy, gz, fgx, fgy, fgz):
    # Same float32 arithmetic and result as _point_key, without early exits, so that the
    # key loop vectorizes. Out-of-range (and NaN) values are replaced by 0 before the int
    # conversion, which is undefined for them.
    fz = np.floor((points[i, 2] - rmin[2]) / vsize[2])
    fy = np.floor((points[i, 1] - rmin[1]) / vsize[1])
    fx = np.floor((points[i, 0] - rmin[0]) / vsize[0])
    ok = (fz >= 0) & (fz < fgz) & (fy >= 0) & (fy < fgy) & (fx >= 0) & (fx < fgx)
    iz = np.int64(fz if ok else np.float32(0.0))
    iy = np.int64(fy if ok else np.float32(0.0))
    ix = np.int64(fx if ok else np.float32(0.0))
    return (iz * gy + iy) * gx + ix if ok else np.int64(-1)


@numba.njit(cache=True)
def _keys_serial(points, vsize, rmin, gx, gy, gz):
    n = points.shape[0]
    keys = np.empty(n, dtype=np.int64)
    fgx, fgy, fgz = np.float32(gx), np.float32(gy), np.float32(gz)
    for i in range(n):
        keys[i] = _point_key_branchless(points, i, vsize, rmin, gx, gy, gz, fgx, fgy, fgz)
    return keys


@numba.njit(cache=True, parallel=True)
def _keys_parallel(points, vsize, rmin, gx, gy, gz):
    n = points.shape[0]
    keys = np.empty(n, dtype=np.int64)
    fgx, fgy, fgz = np.float32(gx), np.float32(gy), np.float32(gz)
    for i in prange(n):
        keys[i] = _point_key_branchless(points, i, vsize, rmin, gx, gy, gz, fgx, fgy, fgz)
    return keys


@numba.njit(cache=True, inline="always")
def _slot_of(key, shift):
    return np.int64((np.uint64(key) * _HASH_MUL) >> shift)


@numba.njit(cache=True)
def _assign(keys, max_points, max_voxels):
    """Voxel id per point (-1: outside or dropped by a cap), voxel keys, point counts.

    Open addressing, linear probing, table >= 2x the voxels it can hold. A row is 16 bytes,
    [key, voxel id << 32 | count], so a point costs one random cache line, which is
    prefetched a few points ahead to overlap the misses.
    """
    n = keys.shape[0]
    cap = min(n, max_voxels)
    bits = 4
    while (1 << bits) < 2 * cap:
        bits += 1
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    table = np.empty((1 << bits, 2), dtype=np.int64)
    table[:, 0] = -1
    vkeys = np.empty(cap, dtype=np.int64)
    pvid = np.empty(n, dtype=np.int32)
    nvox = 0
    last_key = np.int64(-1)
    last_row = np.int64(-1)
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            ahead = keys[i + _PREFETCH_AHEAD]
            if ahead >= 0:
                prefetch(table, _slot_of(ahead, shift))
        key = keys[i]
        pvid[i] = -1
        if key < 0:
            continue
        # Consecutive LiDAR returns often share a voxel: skip the probe for them.
        if key != last_key:
            last_key = key
            h = _slot_of(key, shift)
            while True:
                k = table[h, 0]
                if k == key:
                    break
                if k == -1:
                    if nvox < max_voxels:
                        table[h, 0] = key
                        table[h, 1] = np.int64(nvox) << 32
                        vkeys[nvox] = key
                        nvox += 1
                    else:
                        h = -1  # the voxel cap binds: this voxel never opens
                    break
                h = (h + 1) & mask
            last_row = h
        if last_row < 0:
            continue
        packed = table[last_row, 1]
        if (packed & 0xFFFFFFFF) >= max_points:
            continue
        pvid[i] = packed >> 32
        table[last_row, 1] = packed + 1
    counts = np.zeros(nvox, dtype=np.int32)
    for h in range(1 << bits):
        if table[h, 0] >= 0:
            counts[table[h, 1] >> 32] = table[h, 1] & 0xFFFFFFFF
    return pvid, vkeys[:nvox].copy(), counts


@numba.njit(cache=True)
def _group(pvid, counts):
    """Kept points grouped by voxel (counting sort): ``order[start[v]:start[v+1]]``, in input
    order, so that the output can then be written sequentially.
    """
    m = counts.shape[0]
    start = np.empty(m + 1, dtype=np.int64)
    start[0] = 0
    for v in range(m):
        start[v + 1] = start[v] + counts[v]
    pos = start[:m].copy()
    order = np.empty(start[m], dtype=np.int32)
    for i in range(pvid.shape[0]):
        v = pvid[i]
        if v >= 0:
            order[pos[v]] = i
            pos[v] += 1
    return start, order


@numba.njit(cache=True)
def _coords_from_keys(vkeys, gx, gy):
    m = vkeys.shape[0]
    coords = np.empty((m, 3), dtype=np.int32)
    for v in range(m):
        k = vkeys[v]
        coords[v, 2] = k % gx
        coords[v, 1] = (k // gx) % gy
        coords[v, 0] = k // (gx * gy)
    return coords


@numba.njit(cache=True, inline="always")
def _gather_voxel(points, start, order, out, v):
    c = points.shape[1]
    p = out.shape[1]
    n_kept = order.shape[0]
    s = 0
    for e in range(start[v], start[v + 1]):
        if e + _GATHER_AHEAD < n_kept:
            prefetch(points, order[e + _GATHER_AHEAD])
        i = order[e]
        for k in range(c):
            out[v, s, k] = points[i, k]
        s += 1
    # Padding written here, not by a memset of the whole tensor first: each byte once.
    for s2 in range(s, p):
        for k in range(c):
            out[v, s2, k] = 0.0


@numba.njit(cache=True)
def _fill_serial(points, start, order, out):
    for v in range(out.shape[0]):
        _gather_voxel(points, start, order, out, v)


@numba.njit(cache=True, parallel=True)
def _fill_parallel(points, start, order, out):
    for v in prange(out.shape[0]):  # voxels own disjoint output rows: no atomics
        _gather_voxel(points, start, order, out, v)


# ---------------------------------------------------------------------------------------
# Serial fused path: keys, assignment and the copy of each kept point in one pass.
# ---------------------------------------------------------------------------------------

# Points per chunk of the fused pass: their x, y, z are transposed into three small
# contiguous buffers (L1-resident) so that the key arithmetic vectorizes (8 float32 divisions
# per instruction instead of one: the divider was the bottleneck of the scalar key loop).
_CHUNK = 256
# Rows of the fused path's hash table per voxel it can hold (8-byte rows: 2x is 16 bytes per
# voxel, load factor <= 1/2; measured faster than 4x or 8x: a smaller table stays in cache).
_HASH_SLACK = 2
# A dense cell -> voxel table (int32 per cell) replaces the hash when it is no bigger than
# this or than the hash table would be: one load per point, no probing, no key compare.
_DENSE_MAX_BYTES = 1 << 21


@numba.njit(cache=True, inline="always")
def _chunk_scratch():
    """Per-chunk buffers of ``_chunk_keys``: float32 x, y, z; int32 z, y, x cells; int32 key."""
    return (np.empty(_CHUNK, dtype=np.float32), np.empty(_CHUNK, dtype=np.float32),
            np.empty(_CHUNK, dtype=np.float32), np.empty(_CHUNK, dtype=np.int32),
            np.empty(_CHUNK, dtype=np.int32), np.empty(_CHUNK, dtype=np.int32),
            np.empty(_CHUNK, dtype=np.int32))


@numba.njit(cache=True, inline="always")
def _chunk_keys(points, c0, m, vsize, rmin, gx, gy, fgx, fgy, fgz, xs, ys, zs, izs, iys, ixs,
                keys):
    # keys[t] for points c0 + t, t < m, and their (z, y, x) in (izs, iys, ixs)[t]: the same
    # float32 arithmetic and result as _point_key, in int32 (the caller checked the grid has
    # fewer than 2**31 cells). x, y, z are first transposed into xs, ys, zs, so that the loop
    # below reads contiguous 1-D buffers and vectorizes (scalars, not small arrays, for the
    # constants: a load from an array that might alias the outputs blocks vectorization).
    for t in range(m):
        xs[t] = points[c0 + t, 0]
        ys[t] = points[c0 + t, 1]
        zs[t] = points[c0 + t, 2]
    sx, sy, sz = vsize[0], vsize[1], vsize[2]
    mx, my, mz = rmin[0], rmin[1], rmin[2]
    for t in range(m):
        fz = np.floor((zs[t] - mz) / sz)
        fy = np.floor((ys[t] - my) / sy)
        fx = np.floor((xs[t] - mx) / sx)
        ok = (fz >= 0) & (fz < fgz) & (fy >= 0) & (fy < fgy) & (fx >= 0) & (fx < fgx)
        # Out-of-range and NaN values become 0 before the (otherwise undefined) conversion.
        iz = np.int32(fz if ok else np.float32(0.0))
        iy = np.int32(fy if ok else np.float32(0.0))
        ix = np.int32(fx if ok else np.float32(0.0))
        izs[t] = iz
        iys[t] = iy
        ixs[t] = ix
        key = (iz * gy + iy) * gx + ix
        keys[t] = key if ok else np.int32(-1)


@numba.njit(cache=True, inline="always")
def _open_voxel(out, coords, v, izs, iys, ixs, t):
    # Zero the voxel's whole row when it opens (rows open in order, so these writes stream):
    # padding then costs nothing later, and only the M rows in use are ever touched.
    for s in range(out.shape[1]):
        for k in range(out.shape[2]):
            out[v, s, k] = 0.0
    coords[v, 0] = izs[t]
    coords[v, 1] = iys[t]
    coords[v, 2] = ixs[t]


@numba.njit(cache=True, inline="always")
def _copy_point(points, i, out, v, s):
    for k in range(points.shape[1]):
        out[v, s, k] = points[i, k]


@numba.njit(cache=True)
def _fused_dense(points, vsize, rmin, gx, gy, gz, max_points, max_voxels, table, out,
                 coords, counts):
    """One pass: key, voxel id from the dense cell ``table`` (-1: not open), point appended
    to ``out[v]``. Returns the number of voxels M; out, coords, counts are valid up to M.
    """
    n = points.shape[0]
    xs, ys, zs, izs, iys, ixs, keys = _chunk_scratch()
    fgx, fgy, fgz = np.float32(gx), np.float32(gy), np.float32(gz)
    gx32, gy32 = np.int32(gx), np.int32(gy)
    nvox = 0
    last_key = np.int32(-1)
    last_v = -1
    for c0 in range(0, n, _CHUNK):
        m = min(_CHUNK, n - c0)
        _chunk_keys(points, c0, m, vsize, rmin, gx32, gy32, fgx, fgy, fgz, xs, ys, zs, izs,
                    iys, ixs, keys)
        for t in range(m):
            if t + _PREFETCH_AHEAD < m and keys[t + _PREFETCH_AHEAD] >= 0:
                prefetch(table, keys[t + _PREFETCH_AHEAD])
            key = keys[t]
            if key < 0:
                continue
            # Consecutive LiDAR returns often share a voxel: skip the lookup for them.
            if key != last_key:
                last_key = key
                v = table[key]
                if v < 0 and nvox < max_voxels:
                    v = nvox
                    table[key] = v
                    _open_voxel(out, coords, nvox, izs, iys, ixs, t)
                    nvox += 1
                last_v = v  # stays -1 when the voxel cap binds: the voxel never opens
            if last_v < 0:
                continue
            s = counts[last_v]
            if s < max_points:
                counts[last_v] = s + 1
                _copy_point(points, c0 + t, out, last_v, s)
    return nvox


@numba.njit(cache=True)
def _fused_dense_packed(points, vsize, rmin, gx, gy, gz, max_points, max_voxels, table, out,
                        coords, vkeys):
    """As ``_fused_dense`` with the point count packed into the table entry (voxel id << 8 |
    count, -1: not open): one load per point instead of two dependent ones, and no
    same-voxel shortcut needed (the store-to-load forwarding serves repeats). Needs
    max_points < 256; the counts are read back from the table at the end.
    """
    n = points.shape[0]
    xs, ys, zs, izs, iys, ixs, keys = _chunk_scratch()
    fgx, fgy, fgz = np.float32(gx), np.float32(gy), np.float32(gz)
    gx32, gy32 = np.int32(gx), np.int32(gy)
    nvox = 0
    for c0 in range(0, n, _CHUNK):
        m = min(_CHUNK, n - c0)
        _chunk_keys(points, c0, m, vsize, rmin, gx32, gy32, fgx, fgy, fgz, xs, ys, zs, izs,
                    iys, ixs, keys)
        for t in range(m):
            if t + _PREFETCH_AHEAD < m and keys[t + _PREFETCH_AHEAD] >= 0:
                prefetch(table, keys[t + _PREFETCH_AHEAD])
            key = keys[t]
            if key < 0:
                continue
            e = table[key]
            if e < 0:
                if nvox >= max_voxels:
                    continue  # the voxel cap binds: this voxel never opens
                e = np.int32(nvox << 8)
                vkeys[nvox] = key
                _open_voxel(out, coords, nvox, izs, iys, ixs, t)
                nvox += 1
            s = e & 255
            if s < max_points:
                table[key] = e + 1
                _copy_point(points, c0 + t, out, e >> 8, s)
    return nvox


@numba.njit(cache=True)
def _counts_from_table(table, vkeys, nvox):
    counts = np.empty(nvox, dtype=np.int32)
    for v in range(nvox):
        counts[v] = table[vkeys[v]] & 255
    return counts


@numba.njit(cache=True)
def _fused_hash(points, vsize, rmin, gx, gy, gz, max_points, max_voxels, out, coords,
                counts):
    """As ``_fused_dense`` with an open-addressing hash (Fibonacci hashing, linear probing)
    instead of the table, probes prefetched ahead.
    """
    n = points.shape[0]
    cap = out.shape[0]
    bits = 4
    while (1 << bits) < _HASH_SLACK * cap:
        bits += 1
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    # One int64 per row, key << 32 | voxel id (both < 2**31 here); -1 marks an empty row.
    table = np.full(1 << bits, -1, dtype=np.int64)
    xs, ys, zs, izs, iys, ixs, keys = _chunk_scratch()
    fgx, fgy, fgz = np.float32(gx), np.float32(gy), np.float32(gz)
    gx32, gy32 = np.int32(gx), np.int32(gy)
    nvox = 0
    last_key = np.int32(-1)
    last_v = np.int64(-1)
    for c0 in range(0, n, _CHUNK):
        m = min(_CHUNK, n - c0)
        _chunk_keys(points, c0, m, vsize, rmin, gx32, gy32, fgx, fgy, fgz, xs, ys, zs, izs,
                    iys, ixs, keys)
        for t in range(m):
            if t + _PREFETCH_AHEAD < m and keys[t + _PREFETCH_AHEAD] >= 0:
                prefetch(table, _slot_of(np.int64(keys[t + _PREFETCH_AHEAD]), shift))
            key = keys[t]
            if key < 0:
                continue
            if key != last_key:
                last_key = key
                k64 = np.int64(key)
                h = _slot_of(k64, shift)
                while True:
                    row = table[h]
                    if (row >> 32) == k64:
                        last_v = row & 0xFFFFFFFF
                        break
                    if row == -1:
                        if nvox < max_voxels:
                            table[h] = (k64 << 32) | nvox
                            _open_voxel(out, coords, nvox, izs, iys, ixs, t)
                            last_v = nvox
                            nvox += 1
                        else:
                            last_v = -1  # the voxel cap binds: this voxel never opens
                        break
                    h = (h + 1) & mask
            if last_v < 0:
                continue
            s = counts[last_v]
            if s < max_points:
                counts[last_v] = s + 1
                _copy_point(points, c0 + t, out, last_v, s)
    return nvox


def _use_packed(n: int, cap: int, p: int, num_cells: int) -> bool:
    """Whether the dense path packs counts into an int32 table (else int16 ids when they fit).

    Packing saves a dependent load per point but doubles an int16 table; measured on
    PointPillars: 15% faster for 10 sweeps (more points than cells), 25% slower for one
    sweep (the smaller table stays in L2). With ids needing int32 anyway, packing always wins.
    """
    return p < 256 and cap < 2**23 and (cap >= 2**15 or n >= num_cells)


def _hard_serial_fused(pts: np.ndarray, grid: VoxelGrid, p: int, m: int):
    """Serial hard voxelization in one pass (grids of fewer than 2**31 cells)."""
    gx, gy, gz = (int(g) for g in grid.shape_xyz)
    cap = min(pts.shape[0], m)
    # Sized for the most voxels there can be; only the rows that open are ever written
    # (np.empty: untouched pages cost nothing), and the result is a view of the first M.
    out = np.empty((cap, p, pts.shape[1]), dtype=np.float32)
    coords = np.empty((cap, 3), dtype=np.int32)
    counts = np.zeros(cap, dtype=np.int32)
    if grid.num_cells * 4 <= max(_DENSE_MAX_BYTES, 8 * _HASH_SLACK * cap):  # vs the hash
        if _use_packed(pts.shape[0], cap, p, grid.num_cells):
            table = np.full(grid.num_cells, -1, dtype=np.int32)
            vkeys = np.empty(cap, dtype=np.int32)
            nvox = _fused_dense_packed(pts, grid.voxel_size, grid.range_min, gx, gy, gz, p, m,
                                       table, out, coords, vkeys)
            return out[:nvox], coords[:nvox], _counts_from_table(table, vkeys, nvox)
        # int16 ids when they fit: half the table, so that more of it stays in L2.
        table = np.full(grid.num_cells, -1, dtype=np.int16 if cap < 2**15 else np.int32)
        nvox = _fused_dense(pts, grid.voxel_size, grid.range_min, gx, gy, gz, p, m, table,
                            out, coords, counts)
    else:
        nvox = _fused_hash(pts, grid.voxel_size, grid.range_min, gx, gy, gz, p, m, out,
                           coords, counts)
    return out[:nvox], coords[:nvox], counts[:nvox]


def _check_caps(max_points_per_voxel: int, max_voxels: int) -> tuple[int, int]:
    p, m = int(max_points_per_voxel), int(max_voxels)
    if p < 1 or m < 0:
        raise ValueError(
            f"need max_points_per_voxel >= 1 and max_voxels >= 0, got {p} and {m}"
        )
    return p, m


def assign_voxels(
    points: np.ndarray,
    grid: VoxelGrid,
    max_points_per_voxel: int,
    max_voxels: int,
    parallel: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hard-voxelization bookkeeping without copying point data (shared with pillars).

    Args:
        points: (N, C>=3) float32 C-contiguous [x, y, z, ...] in metres.
        grid: the grid from ``make_grid``.
        max_points_per_voxel: cap P on points kept per voxel.
        max_voxels: cap on voxels kept.
        parallel: compute voxel keys with Numba threads (same result).

    Returns:
        start (M+1,) int64 and order (K,) int32: the kept points of voxel v are
        ``order[start[v]:start[v+1]]``, in input order; coords_zyx (M, 3) int32;
        num_points (M,) int32.

    """
    gx, gy, gz = (int(g) for g in grid.shape_xyz)
    keys_fn = _keys_parallel if parallel else _keys_serial
    keys = keys_fn(points, grid.voxel_size, grid.range_min, gx, gy, gz)
    pvid, vkeys, counts = _assign(keys, max_points_per_voxel, max_voxels)
    start, order = _group(pvid, counts)
    return start, order, _coords_from_keys(vkeys, gx, gy), counts


def hard_voxelize(
    points: np.ndarray,
    voxel_size_m,
    point_range_m,
    max_points_per_voxel: int,
    max_voxels: int,
    parallel: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group points into at most ``max_voxels`` voxels of at most ``max_points_per_voxel``.

    Args:
        points: (N, C>=3) float32 [x, y, z, ...] in metres (other dtypes are cast to float32).
        voxel_size_m: (3,) [dx, dy, dz] in metres.
        point_range_m: (6,) [xmin, ymin, zmin, xmax, ymax, zmax] in metres.
        max_points_per_voxel: P, points kept per voxel (later ones dropped).
        max_voxels: voxels kept (voxels first seen later are dropped).
        parallel: use Numba threads for the binning and the copy; output is identical.

    Returns:
        voxels (M, P, C) float32 zero-padded, coords_zyx (M, 3) int32, num_points (M,) int32,
        voxels in order of their first point.

    """
    pts = as_points(points)
    grid = make_grid(voxel_size_m, point_range_m)
    p, m = _check_caps(max_points_per_voxel, max_voxels)
    if not parallel and grid.num_cells < 2**31:
        return _hard_serial_fused(pts, grid, p, m)
    start, order, coords, counts = assign_voxels(pts, grid, p, m, parallel)
    out = np.empty((coords.shape[0], p, pts.shape[1]), dtype=np.float32)
    (_fill_parallel if parallel else _fill_serial)(pts, start, order, out)
    return out, coords, counts


@numba.njit(cache=True)
def _dynamic_serial(points, vsize, rmin, gx, gy, gz):
    n = points.shape[0]
    out = np.empty((n, 3), dtype=np.int32)
    for i in range(n):
        key = _point_key(points, i, vsize, rmin, gx, gy, gz)
        if key < 0:
            out[i, 0] = -1
            out[i, 1] = -1
            out[i, 2] = -1
        else:
            out[i, 2] = key % gx
            out[i, 1] = (key // gx) % gy
            out[i, 0] = key // (gx * gy)
    return out


def dynamic_voxelize(points: np.ndarray, voxel_size_m, point_range_m) -> np.ndarray:
    """Per-point voxel coordinates, for scatter-based (dynamic) voxel encoders.

    Args:
        points: (N, C>=3) float32 [x, y, z, ...] in metres.
        voxel_size_m: (3,) [dx, dy, dz] in metres.
        point_range_m: (6,) [xmin, ymin, zmin, xmax, ymax, zmax] in metres.

    Returns:
        coords_zyx (N, 3) int32; rows of points outside the range (or with NaN xyz) are -1.

    """
    pts = as_points(points)
    grid = make_grid(voxel_size_m, point_range_m)
    gx, gy, gz = (int(g) for g in grid.shape_xyz)
    return _dynamic_serial(pts, grid.voxel_size, grid.range_min, gx, gy, gz)


# ----------------------------------------------------------------------------------------
# Plain-numpy references (vectorized, no Numba): the oracle the kernels are tested against.
# ----------------------------------------------------------------------------------------


def _reference_coords(pts: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(N, 3) int64 zyx coords, -1 rows outside; float32 arithmetic like spconv."""
    n = pts.shape[0]
    coords = np.full((n, 3), -1, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    f = np.empty((n, 3), dtype=np.float32)
    for axis in range(3):
        with np.errstate(invalid="ignore"):
            f[:, axis] = np.floor((pts[:, axis] - grid.range_min[axis]) / grid.voxel_size[axis])
            valid &= (f[:, axis] >= 0) & (f[:, axis] < grid.shape_xyz[axis])
    coords[valid] = f[valid][:, ::-1].astype(np.int64)
    return coords


def dynamic_voxelize_reference(points: np.ndarray, voxel_size_m, point_range_m) -> np.ndarray:
    """Numpy reference of ``dynamic_voxelize`` (same arguments and result)."""
    pts = as_points(points)
    grid = make_grid(voxel_size_m, point_range_m)
    return _reference_coords(pts, grid).astype(np.int32)


def hard_voxelize_reference(
    points: np.ndarray,
    voxel_size_m,
    point_range_m,
    max_points_per_voxel: int,
    max_voxels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numpy reference of ``hard_voxelize``: unique + first-occurrence ranks, no hashing."""
    pts = as_points(points)
    grid = make_grid(voxel_size_m, point_range_m)
    p, m = _check_caps(max_points_per_voxel, max_voxels)
    c = pts.shape[1]
    coords = _reference_coords(pts, grid)
    valid = np.flatnonzero(coords[:, 0] >= 0)
    gx, gy = int(grid.shape_xyz[0]), int(grid.shape_xyz[1])
    keys = (coords[valid, 0] * gy + coords[valid, 1]) * gx + coords[valid, 2]
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # Voxel number = rank of its first point among all voxels' first points.
    rank_of_uniq = np.empty(len(uniq), dtype=np.int64)
    rank_of_uniq[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    vox = rank_of_uniq[inverse.reshape(-1)]
    keep_vox = vox < m
    valid, vox = valid[keep_vox], vox[keep_vox]
    # Slot = how many earlier points share the voxel (stable sort keeps input order).
    order = np.argsort(vox, kind="stable")
    sorted_vox = vox[order]
    starts = np.searchsorted(sorted_vox, sorted_vox, side="left")
    slot = np.empty(len(vox), dtype=np.int64)
    slot[order] = np.arange(len(vox)) - starts
    keep = slot < p
    valid, vox, slot = valid[keep], vox[keep], slot[keep]
    nvox = min(len(uniq), m)
    voxels = np.zeros((nvox, p, c), dtype=np.float32)
    voxels[vox, slot] = pts[valid]
    num_points = np.bincount(vox, minlength=nvox).astype(np.int32)
    first_point = np.full(nvox, -1, dtype=np.int64)
    first_point[vox[slot == 0]] = valid[slot == 0]
    coords_out = coords[first_point].astype(np.int32).reshape(nvox, 3)
    return voxels, coords_out, num_points
