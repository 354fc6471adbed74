"""Parking: a slow drive along a parking aisle between stall rows, ending at a bollard line and
a low wall (low obstacles near the ego that the roof LiDAR's near blind zone misses).
"""

from __future__ import annotations

import numpy as np

from calibration.ultrasonic_layout import FRONT_BUMPER_X_M
from sensors.sim.agents import PED_WLH, path_traj
from sensors.sim.builder import SceneBuilder
from sensors.sim.ego_motion import EgoMotion, ego_s_at, plan_speed
from sensors.sim.roads import Road
from sensors.sim.scenery import work_zone

S_EGO0_M = 30.0  # where the ego path starts on the aisle


def lay_out(b: SceneBuilder) -> None:
    """Lay out a parking scene on ``b``."""
    rng = b.rng
    duration_s = b.duration_s
    v_cruise = rng.uniform(2.0, 3.2)
    aisle_len = v_cruise * duration_s + 60.0
    aisle = b.add_road([(-30.0, 0.0), (aisle_len, 0.0)], [], half_width_m=3.5, lane_width_m=3.5,
                       lanes_per_dir=1, sidewalk_m=0.0, kerbs=False, centre_line="none")
    ego_path = b.lane_path(aisle, S_EGO0_M, -0.6)
    # Stop in front of a bollard line and a low wall at the end of the drive: s_end is
    # where the front bumper comes to rest (ego path arc length), placed so that the
    # stop happens at ~80% of the scene.
    free = plan_speed(ego_path, duration_s, v_cruise, 0.0, [], a_max=0.8, comfort_decel=1.2)
    s_end = ego_s_at(free, 0.6 * duration_s) + FRONT_BUMPER_X_M
    b.stops.append((s_end - FRONT_BUMPER_X_M + 0.2, np.inf, 1.2))
    b.events.append("parking_stop")
    ego = plan_speed(ego_path, duration_s, v_cruise, 0.0, b.stops, a_max=0.8, comfort_decel=1.2)
    b.set_ego(ego)
    s_mid, _, _ = b.main_road_span(S_EGO0_M)
    parking_lot(b, aisle, ego, duration_s, S_EGO0_M, s_end, s_mid)


def parking_lot(
    b: SceneBuilder, aisle: Road, ego: EgoMotion, duration: float, s_ego0: float, s_end: float,
    s_mid: float,
) -> None:
    """Stall rows with parked vehicles, bollards and cones near the ego's path, a wall at the
    end of the drive, walking pedestrians and a work corner.
    """
    rng = b.rng
    stall_w, stall_d = 2.7, 5.4
    row_d = 3.5 + stall_d / 2
    s_ego_end = s_ego0 + s_end
    for side in (-1.0, 1.0):
        for _k, s in enumerate(np.arange(s_ego0 - 25, s_ego_end + 30, stall_w)):
            # Stall lines are painted in the ground map; wheel stops are low scenery.
            xy, hd = aisle.path.pose(s + stall_w / 2, side * (row_d + stall_d / 2 - 0.4))
            b.part(xy[0], 0.0, 0.25, 1.8, 0.12, hd[0] + np.pi / 2, (200, 200, 60), "concrete")
            if abs(s - s_mid) < 6 and side < 0:
                continue  # an empty stall next to the ego at mid-scene
            r = rng.uniform()
            if r < 0.75 * min(b.scale, 1.3):
                cls = rng.choice(["car"] * 10 + ["truck", "motorcycle", "bicycle"])
                wlh = b.size(cls)
                if wlh[0] > stall_w - 0.2:
                    continue
                xy, hd = aisle.path.pose(s + stall_w / 2 + rng.normal(0, 0.1),
                                         side * (row_d + rng.normal(0, 0.15)))
                yaw = hd[0] + side * np.pi / 2 + rng.choice([0.0, np.pi]) + rng.normal(0, 0.04)
                b.add_static(cls, xy[0], yaw, wlh=wlh)
    # Larger vehicles parked along the far ends (bus, truck), guaranteed near mid-scene.
    for cls, side, ds in (("bus", 1.0, 10.0), ("truck", -1.0, -14.0), ("motorcycle", 1.0, -5.0)):
        wlh = b.size(cls)
        xy, hd = aisle.path.pose(s_mid + ds, side * (row_d + stall_d + 1.0 + wlh[0] / 2))
        b.add_static(cls, xy[0], hd[0], wlh=wlh, check=False)
    # Low obstacles close to the ego path: bollards and small cones at the aisle edges that
    # the roof LiDAR's near blind zone misses.
    for s in np.arange(s_ego0 + 4.0, s_ego_end, rng.uniform(5.0, 8.0)):
        side = rng.choice([-1.0, 1.0])
        d = -0.6 + side * rng.uniform(1.45, 2.0)
        xy, _ = aisle.path.pose(s, d)
        if b.free(xy[0], 0.3):
            h = rng.uniform(0.45, 0.75)
            b.part(xy[0], 0.0, 0.16, 0.16, h, 0.0, (230, 200, 30), "paint")
            b.occupied.append((xy[0], 0.2))
    # End wall ahead of the stop point and a bollard row in front of it.
    xy, hd = aisle.path.pose(s_ego_end + 1.0, 0.0)
    b.part(xy[0], 0.0, 0.3, 7.0, 0.6, hd[0], (170, 170, 165), "concrete")
    for d in (-2.5, -0.6, 1.3, 3.0):
        xy, _ = aisle.path.pose(s_ego_end + 0.55, d)
        b.part(xy[0], 0.0, 0.18, 0.18, 0.55, 0.0, (230, 200, 30), "paint")
    # Building and bushes beyond the lot.
    for side in (-1.0, 1.0):
        for s in np.arange(s_ego0 - 30, s_ego_end + 40, 12.0):
            xy, hd = aisle.path.pose(s, side * (row_d + stall_d + 6.0 + rng.uniform(0, 2)))
            b.part(xy[0], 0.0, rng.uniform(1.5, 3.0), 1.2, rng.uniform(0.8, 1.4), hd[0],
                   (55, 100, 50), "foliage")
        xy, hd = aisle.path.pose(s_mid + rng.uniform(-10, 10), side * (row_d + stall_d + 22.0))
        b.part(xy[0], 0.0, 60.0, 14.0, rng.uniform(8, 15), hd[0], (185, 180, 170), "concrete")
    for s in np.arange(s_ego0 - 20, s_ego_end + 30, 25.0):
        xy, hd = aisle.path.pose(s, row_d + stall_d / 2 + 0.2)
        b.part(xy[0], 0.0, 0.25, 0.25, 7.0, hd[0], (110, 110, 115), "metal")
        b.lamps.append(xy[0])
    # Pedestrians walking along the stall rows and standing by cars.
    for _ in range(int(rng.integers(3, 6))):
        side = rng.choice([-1.0, 1.0])
        d = side * rng.uniform(2.5, 2.8)
        v = rng.uniform(0.8, 1.4) * rng.choice([-1.0, 1.0])
        s0 = s_mid + rng.uniform(-25, 25) - v * duration / 2
        # Keep pedestrians clear of the ego: walk only at the far side of the aisle.
        d = abs(d) if d < 0 else d
        if b.clear_of_agents(path_traj(aisle.path, s0, v, d), PED_WLH):
            b.add_agent("pedestrian", "path",
                        {"path": aisle.path, "s0": s0, "speed": v, "offset": d})
    xy, hd = aisle.path.pose(s_mid + 6.0, 2.7)
    b.add_static("pedestrian", xy[0], hd[0] - np.pi / 2, check=False)
    # Work corner: cones/barriers, construction vehicle, trailer beyond the far row.
    work_zone(b, aisle, s_mid + 4.0, -(row_d + stall_d + 1.0))
