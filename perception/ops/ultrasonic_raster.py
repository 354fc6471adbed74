"""Ultrasonic cones and echoes rasterized into BEV evidence (Numba + numpy reference).

Each sensor sees a 2D cone (apex at its position, axis along its yaw, half-angle
``half_fov_rad``). A cell (centre ``(x, y)``, distance ``rho`` from the apex) is in the cone when
``dot((x, y) - apex, axis) >= rho * cos(half_fov)``. With an echo at range ``r``:

* occupied evidence where ``|rho - r| <= t``: the echo arc, ``t`` = half a cell diagonal so
  that the arc is at least one cell thick in every direction;
* free evidence where ``rho < r - t``: the sound got that far without hitting anything.

Without an echo (NaN, inf, or ``r > max_range_m``) the whole cone up to ``max_range_m`` is free.
Evidence is 1.0 where any sensor says so (max over sensors), 0.0 elsewhere; a cell can be
free for one sensor and occupied for another (both channels set; the network weighs them).
Sensor z is ignored. All geometry is float64 with only +, *, sqrt, so kernel and reference
agree bit for bit.

Grid convention (as ``scatter_to_bev``): row i covers y in ``ymin + [i, i+1) * dy``, column j
covers x in ``xmin + [j, j+1) * dx``, with ``dx = (xmax - xmin) / W``, ``dy = (ymax - ymin) / H``.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _raster(ranges, px, py, ax, ay, cos_half, max_range, xs, ys, t, x0, y0, dx, dy):
    h = ys.shape[0]
    w = xs.shape[0]
    out = np.zeros((2, h, w), dtype=np.float32)
    for s in range(ranges.shape[0]):
        r = ranges[s]
        echo = r <= max_range[s]  # False for NaN and inf
        reach = r + t if echo else max_range[s]
        # Only cells whose centre can be within reach of the apex (conservative bounds).
        j0 = max(0, int(math.floor((px[s] - reach - x0) / dx)) - 1)
        j1 = min(w, int(math.ceil((px[s] + reach - x0) / dx)) + 1)
        i0 = max(0, int(math.floor((py[s] - reach - y0) / dy)) - 1)
        i1 = min(h, int(math.ceil((py[s] + reach - y0) / dy)) + 1)
        for i in range(i0, i1):
            vy = ys[i] - py[s]
            for j in range(j0, j1):
                vx = xs[j] - px[s]
                rho = math.sqrt(vx * vx + vy * vy)
                if not (vx * ax[s] + vy * ay[s] >= rho * cos_half[s]):
                    continue
                if echo:
                    if abs(rho - r) <= t:
                        out[1, i, j] = 1.0
                    elif rho < r - t:
                        out[0, i, j] = 1.0
                elif rho <= reach:
                    out[0, i, j] = 1.0
    return out


def _prepare(ranges_m, position_ego_m, yaw_ego_rad, half_fov_rad, max_range_m, bev_range_m,
             grid_hw):
    r = np.asarray(ranges_m, dtype=np.float64).reshape(-1)
    s = r.shape[0]
    pos = np.asarray(position_ego_m, dtype=np.float64)
    yaw = np.asarray(yaw_ego_rad, dtype=np.float64).reshape(-1)
    if pos.ndim != 2 or pos.shape[0] != s or pos.shape[1] < 2 or yaw.shape != (s,):
        raise ValueError(
            f"ranges_m ({s},), position_ego_m ({s}, 3) and yaw_ego_rad ({s},) must agree, got "
            f"{r.shape}, {pos.shape}, {yaw.shape}"
        )
    if np.any(r < 0):
        raise ValueError(f"ultrasonic ranges must be >= 0 or NaN (no echo), got {r.tolist()}")
    half = np.broadcast_to(np.asarray(half_fov_rad, dtype=np.float64), (s,))
    maxr = np.broadcast_to(np.asarray(max_range_m, dtype=np.float64), (s,))
    if np.any(~(half > 0) | ~(half < np.pi / 2)):
        raise ValueError(f"half_fov_rad must be in (0, pi/2), got {half_fov_rad}")
    if np.any(~(maxr > 0) | ~np.isfinite(maxr)):
        raise ValueError(f"max_range_m must be finite and > 0, got {max_range_m}")
    if not (np.all(np.isfinite(pos[:, :2])) and np.all(np.isfinite(yaw))):
        raise ValueError("ultrasonic sensor positions and yaws must be finite")
    b = np.asarray(bev_range_m, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not (b[2] > b[0] and b[3] > b[1]):
        raise ValueError(f"bev_range_m must be [xmin, ymin, xmax, ymax], got {b.tolist()}")
    h, w = (int(v) for v in grid_hw)
    if h < 1 or w < 1:
        raise ValueError(f"grid_hw must be positive, got {(h, w)}")
    dx = (b[2] - b[0]) / w
    dy = (b[3] - b[1]) / h
    xs = b[0] + (np.arange(w) + 0.5) * dx
    ys = b[1] + (np.arange(h) + 0.5) * dy
    t = 0.5 * math.hypot(dx, dy)
    return (r, np.ascontiguousarray(pos[:, 0]), np.ascontiguousarray(pos[:, 1]), np.cos(yaw),
            np.sin(yaw), np.ascontiguousarray(np.cos(half)), np.ascontiguousarray(maxr), xs, ys,
            t, float(b[0]), float(b[1]), dx, dy)


def ultrasonic_raster(
    ranges_m: np.ndarray,
    position_ego_m: np.ndarray,
    yaw_ego_rad: np.ndarray,
    half_fov_rad,
    max_range_m,
    bev_range_m,
    grid_hw,
) -> np.ndarray:
    """Rasterize ultrasonic cones and echoes into BEV free/occupied evidence.

    Args:
        ranges_m: (S,) echo ranges in metres, NaN = no echo (S = 12 for the default layout).
        position_ego_m: (S, 3) sensor positions in the ego frame, metres.
        yaw_ego_rad: (S,) sensor boresight yaw in the ego frame, radians.
        half_fov_rad: cone half-angle in radians, scalar or (S,), in (0, pi/2).
        max_range_m: sensor maximum range in metres, scalar or (S,).
        bev_range_m: (4,) [xmin, ymin, xmax, ymax] of the BEV grid in metres.
        grid_hw: (H, W) grid size; row = y, column = x.

    Returns:
        (2, H, W) float32: channel 0 free evidence, channel 1 occupied evidence, in {0, 1}.

    """
    return _raster(*_prepare(ranges_m, position_ego_m, yaw_ego_rad, half_fov_rad, max_range_m,
                             bev_range_m, grid_hw))


def ultrasonic_raster_reference(
    ranges_m: np.ndarray,
    position_ego_m: np.ndarray,
    yaw_ego_rad: np.ndarray,
    half_fov_rad,
    max_range_m,
    bev_range_m,
    grid_hw,
) -> np.ndarray:
    """Numpy reference of ``ultrasonic_raster`` (whole grid per sensor, vectorized)."""
    (r, px, py, ax, ay, cos_half, maxr, xs, ys, t, _, _, _, _) = _prepare(
        ranges_m, position_ego_m, yaw_ego_rad, half_fov_rad, max_range_m, bev_range_m, grid_hw)
    out = np.zeros((2, ys.shape[0], xs.shape[0]), dtype=np.float32)
    for s in range(r.shape[0]):
        vx = xs[None, :] - px[s]
        vy = ys[:, None] - py[s]
        rho = np.sqrt(vx * vx + vy * vy)
        cone = vx * ax[s] + vy * ay[s] >= rho * cos_half[s]
        if r[s] <= maxr[s]:
            occ = cone & (np.abs(rho - r[s]) <= t)
            out[1][occ] = 1.0
            out[0][cone & ~occ & (rho < r[s] - t)] = 1.0
        else:
            out[0][cone & (rho <= maxr[s])] = 1.0
    return out
