"""The ground: a material raster (asphalt, markings, sidewalk, grass, parking lot) around the
drive that both the LiDAR (intensity) and the cameras (colour) read.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sensors.sim.ego_motion import EgoMotion
from sensors.sim.materials import (
    GROUND_ASPHALT,
    GROUND_GRASS,
    GROUND_LOT,
    GROUND_MARKING,
    GROUND_RES_M,
    GROUND_RGB,
    GROUND_SIDEWALK,
)
from sensors.sim.roads import Path, Road


@dataclass(frozen=True, eq=False)
class GroundMap:
    """Ground material raster over the scene area.

    Attributes:
        material: (H, W) uint8 material codes (GROUND_*); cell (r, c) covers raster-frame
            x in [c, c+1) * res_m and y in [r, r+1) * res_m.
        rgb: (H, W, 3) uint8 camera colour with texture noise.
        origin_xy: (2,) global x, y of cell (0, 0)'s corner, metres.
        res_m: metres per cell.
        yaw: heading of the raster x axis in the global frame (the raster is aligned with
            the scene's road so that it stays small), radians.

    """

    material: np.ndarray
    rgb: np.ndarray
    origin_xy: np.ndarray
    res_m: float
    yaw: float = 0.0

    def to_raster(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) global x, y to raster-frame metres (divide by ``res_m`` for cells)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        d = np.asarray(xy, dtype=np.float64) - self.origin_xy
        return np.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c], axis=1)


def ground_map(
    roads: list[Road], ego: EgoMotion, rng: np.random.Generator, yaw: float, parking_lot: bool
) -> GroundMap:
    """Rasterise ground materials (grass, sidewalks, asphalt, markings) around the drive, in a
    raster frame rotated by ``yaw`` (the scene's base heading). ``parking_lot``: the one road
    is a parking aisle (lot surface with painted stalls) rather than a street.
    """
    res = GROUND_RES_M
    c_y, s_y = np.cos(yaw), np.sin(yaw)
    rot_t = np.array([[c_y, s_y], [-s_y, c_y]])  # global -> raster axes
    ex = ego.path.xy @ rot_t.T
    margin = 90.0
    lo = ex.min(axis=0) - margin
    hi = ex.max(axis=0) + margin
    w = int(np.ceil((hi[0] - lo[0]) / res))
    h = int(np.ceil((hi[1] - lo[1]) / res))
    mat = np.full((h, w), GROUND_GRASS, dtype=np.uint8)
    origin = rot_t.T @ lo

    def px(xy: np.ndarray) -> np.ndarray:
        loc = np.asarray(xy) @ rot_t.T - lo
        return np.round(loc / res * 16).astype(np.int32)  # 4 fractional bits

    def band(path: Path, d0: float, d1: float, value: int, s0=0.0, s1=None) -> None:
        s1 = path.length if s1 is None else s1
        s = np.arange(s0, s1, 1.0)
        if len(s) < 2:
            return
        s = np.append(s, s1)
        left, _ = path.pose(s, d1)
        right, _ = path.pose(s, d0)
        # One polygon for the whole strip (left edge out, right edge back).
        cv2.fillPoly(mat, [px(np.concatenate([left, right[::-1]]))], int(value), cv2.LINE_8, 4)

    if parking_lot:
        rd = roads[0]
        band(rd.path, -20.0, 20.0, GROUND_LOT)
        stall_w, row_d0, depth = 2.7, 3.5, 5.4
        for side in (-1.0, 1.0):
            for s in np.arange(0.0, rd.path.length, stall_w):
                a, _ = rd.path.pose(s, side * row_d0)
                b2, _ = rd.path.pose(s, side * (row_d0 + depth))
                cv2.line(mat, px(a[0]), px(b2[0]), GROUND_MARKING, 1, cv2.LINE_8, 4)
    else:
        for rd in roads:
            if rd.sidewalk_m > 0:
                band(rd.path, -(rd.half_width_m + rd.sidewalk_m + 0.3),
                     rd.half_width_m + rd.sidewalk_m + 0.3, GROUND_SIDEWALK)
        for rd in roads:
            band(rd.path, -rd.half_width_m, rd.half_width_m, GROUND_ASPHALT)
        for rd in roads:
            hw = rd.half_width_m
            lw = rd.lane_width_m
            # Edge lines and lane lines (dashed), centre line (double solid) or median.
            lines: list[tuple[float, bool]] = []
            if rd.centre_line == "double":
                lines += [(-0.12, False), (0.12, False)]
            for k in range(1, rd.lanes_per_dir):
                lines += [(-lw * k, True), (lw * k, True)]
            lines += [(-(lw * rd.lanes_per_dir + 0.1), False), (lw * rd.lanes_per_dir + 0.1, False)]
            if rd.sidewalk_m == 0.0:
                lines += [(-(hw - 0.3), False), (hw - 0.3, False)]
            for d, dashed in lines:
                if dashed:
                    for s in np.arange(0.0, rd.path.length, 9.0):
                        band(rd.path, d - 0.075, d + 0.075, GROUND_MARKING, s, s + 3.0)
                else:
                    band(rd.path, d - 0.075, d + 0.075, GROUND_MARKING)
        if len(roads) > 1:
            # Clear the junction box of through-markings, add stop lines.
            main, cross = roads[0], roads[1]
            s_x = float(main.path.project(cross.path.xy[len(cross.path.xy) // 2][None])[0][0])
            band(main.path, -main.half_width_m, main.half_width_m, GROUND_ASPHALT,
                 s_x - cross.half_width_m, s_x + cross.half_width_m)
            s_c = float(cross.path.project(main.path.pose(s_x)[0])[0][0])
            band(cross.path, -cross.half_width_m, cross.half_width_m, GROUND_ASPHALT,
                 s_c - main.half_width_m, s_c + main.half_width_m)
            band(main.path, -main.lane_width_m, 0.0, GROUND_MARKING,
                 s_x - cross.half_width_m - 1.5, s_x - cross.half_width_m - 1.0)
            # Zebra crossings on the main road on both sides of the junction.
            for s_z in (s_x - cross.half_width_m - 4.0, s_x + cross.half_width_m + 1.0):
                for d in np.arange(-main.half_width_m + 0.5, main.half_width_m, 1.0):
                    band(main.path, d, d + 0.5, GROUND_MARKING, s_z, s_z + 3.0)
    # Camera colour: material colour with low-frequency tone and fine grain.
    coarse = rng.normal(0.0, 1.0, (max(h // 16, 2), max(w // 16, 2))).astype(np.float32)
    coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    # Fine grain from one tile repeated (a full-size draw costs more than it adds).
    tile = rng.normal(0.0, 1.0, (256, 256)).astype(np.float32)
    grain = np.tile(tile, (h // 256 + 1, w // 256 + 1))[:h, :w]
    tone = 1.0 + 0.06 * coarse + 0.05 * grain
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    for ch in range(3):
        rgb[..., ch] = np.clip(GROUND_RGB[mat, ch] * tone, 0, 255)
    return GroundMap(mat, rgb, origin, res, float(yaw))
