"""Roadside scenery (kerbs, median barriers, guard rails, street lamps, trees, buildings) and
work zones (cones, barriers, a construction vehicle, a trailer, a worker).
"""

from __future__ import annotations

import numpy as np

from sensors.sim.builder import SceneBuilder
from sensors.sim.roads import Road


def on_other_road(xy: np.ndarray, roads: list[Road], own: Road, margin: float) -> bool:
    """True when ``xy`` lies on (or within ``margin`` of) a road other than ``own``."""
    for rd in roads:
        if rd is own:
            continue
        s, lat = rd.path.project(xy[None])
        near = abs(lat[0]) < rd.half_width_m + rd.sidewalk_m + margin
        if near and -5 < s[0] < rd.path.length + 5:
            return True
    return False


def road_scenery(
    b: SceneBuilder, road: Road, roads: list[Road], s_range: tuple[float, float]
) -> None:
    """Kerbs, poles, trees, buildings or guard rails along ``road`` within ``s_range``."""
    rng = b.rng
    s0, s1 = max(0.0, s_range[0]), min(road.path.length, s_range[1])
    hw = road.half_width_m
    for side in (-1.0, 1.0):
        if road.kerbs:
            for s in np.arange(s0, s1, 3.0):
                xy, hd = road.path.pose(s + 1.5, side * (hw + 0.15))
                if on_other_road(xy[0], roads, road, 0.5):
                    continue
                b.part(xy[0], 0.0, 3.0, 0.3, 0.15, hd[0], (150, 150, 145), "concrete")
        if road.centre_line == "barrier" and side > 0:
            for s in np.arange(s0, s1, 4.0):
                xy, hd = road.path.pose(s + 2.0, 0.0)
                b.part(xy[0], 0.0, 4.0, 0.6, 0.85, hd[0], (175, 175, 170), "concrete")
        if road.sidewalk_m == 0.0:
            # Highway: guard rail on posts beyond the shoulder, trees further out.
            for s in np.arange(s0, s1, 4.0):
                xy, hd = road.path.pose(s + 2.0, side * (hw + 0.6))
                b.part(xy[0], 0.45, 4.0, 0.12, 0.32, hd[0], (190, 195, 200), "metal")
                b.part(xy[0], 0.0, 0.12, 0.12, 0.45, hd[0], (120, 120, 120), "metal")
            for s in np.arange(s0, s1, rng.uniform(6, 12)):
                d = side * (hw + rng.uniform(4.0, 18.0))
                xy, _ = road.path.pose(s, d)
                tree(b, xy[0])
            continue
        edge = hw + 0.3
        for s in np.arange(s0 + rng.uniform(0, 20), s1, rng.uniform(22, 30)):
            xy, hd = road.path.pose(s, side * (hw + 0.45))
            if on_other_road(xy[0], roads, road, 0.5):
                continue
            b.part(xy[0], 0.0, 0.22, 0.22, 6.5, hd[0], (110, 110, 115), "metal")
            arm, _ = road.path.pose(s, side * (edge - 1.0))
            b.part(arm[0], 6.3, 0.2, 3.0, 0.2, hd[0], (110, 110, 115), "metal")
            lamp, _ = road.path.pose(s, side * (edge - 2.3))
            b.lamps.append(lamp[0])
            b.occupied.append((xy[0], 0.3))
        for s in np.arange(s0 + rng.uniform(0, 10), s1, rng.uniform(9, 16)):
            xy, _ = road.path.pose(s, side * (edge + road.sidewalk_m - 0.9))
            if on_other_road(xy[0], roads, road, 1.0) or not b.free(xy[0], 1.0):
                continue
            tree(b, xy[0])
            b.occupied.append((xy[0], 0.4))
        s = s0 + rng.uniform(0, 8)
        while s < s1:
            length = rng.uniform(10, 30)
            depth = rng.uniform(10, 16)
            setback = edge + road.sidewalk_m + rng.uniform(0.5, 5.0)
            xy, hd = road.path.pose(s + length / 2, side * (setback + depth / 2))
            corners_ok = not on_other_road(xy[0], roads, road, depth / 2 + length / 2)
            if corners_ok and rng.uniform() < 0.85:
                height = rng.uniform(5, 22)
                tone = rng.uniform(0.6, 1.1)
                base = np.array([[170, 110, 90], [200, 195, 185], [150, 150, 160], [190, 170, 130]])
                rgb = np.clip(base[rng.integers(4)] * tone, 0, 255)
                b.part(xy[0], 0.0, length, depth, height, hd[0], rgb, "brick")
            s += length + rng.uniform(0.5, 8)


def tree(b: SceneBuilder, xy: np.ndarray) -> None:
    """A tree (trunk and crown) at ``xy``."""
    rng = b.rng
    h_trunk = rng.uniform(1.8, 3.0)
    crown = rng.uniform(2.0, 3.6)
    yaw = rng.uniform(0, np.pi)
    b.part(xy, 0.0, 0.3, 0.3, h_trunk + 0.3, yaw, (90, 65, 40), "wood")
    g = rng.uniform(0.7, 1.1)
    b.part(xy, h_trunk, crown, crown, crown * rng.uniform(0.8, 1.3), yaw, (50 * g, 105 * g, 45 * g),
           "foliage")


def work_zone(b: SceneBuilder, road: Road, s_w: float, d_cones: float) -> None:
    """A work zone beside the traffic: cones and barriers along the line ``d_cones`` (offset
    from ``road``'s centreline) from arc length ``s_w``, and beyond that line a construction
    vehicle, a trailer, a worker and a parked bicycle.
    """
    rng = b.rng
    sign = np.sign(d_cones)
    out = abs(d_cones)
    length = 28.0
    for k, s in enumerate(np.arange(s_w, s_w + length, 3.5)):
        xy, hd = road.path.pose(s, d_cones)
        if k in (0, 4, 7):
            b.add_static("barrier", xy[0], hd[0] + np.pi / 2 + rng.normal(0, 0.05), check=False)
        else:
            b.add_static("traffic_cone", xy[0], rng.uniform(-np.pi, np.pi), check=False)
    xy, hd = road.path.pose(s_w - 2.0, sign * (out + 1.4))
    b.add_static("barrier", xy[0], hd[0], check=False)
    cv = b.size("construction_vehicle")
    xy, hd = road.path.pose(s_w + 8.0, sign * (out + 0.5 + cv[0] / 2))
    b.add_static("construction_vehicle", xy[0], hd[0] + rng.choice([0.0, np.pi]), wlh=cv,
                 attrs=("vehicle.moving", "vehicle.stopped"), check=False)
    tr = b.size("trailer")
    s_tr = s_w + 8.0 + cv[1] / 2 + tr[1] / 2 + 1.5
    xy, hd = road.path.pose(s_tr, sign * (out + 0.5 + tr[0] / 2))
    b.add_static("trailer", xy[0], hd[0], wlh=tr, check=False)
    xy, hd = road.path.pose(s_w + 2.3, sign * (out + 0.6))
    b.add_static("pedestrian", xy[0], hd[0] + rng.uniform(-2, 2), check=False)
    xy, hd = road.path.pose(s_w - 0.8, sign * (out + 1.5))
    b.add_static("bicycle", xy[0], hd[0] + np.pi / 2, check=False)
