"""Urban roadside population: parked vehicles and pedestrians (walking, standing, crossing)."""

from __future__ import annotations

import numpy as np

from sensors.sim.agents import PED_WLH, Agent, agent_pose, path_traj
from sensors.sim.builder import SceneBuilder
from sensors.sim.ego_motion import EgoMotion
from sensors.sim.roads import PARK_KERB_GAP_M, URBAN_HALF_M, URBAN_SIDEWALK_M, Road
from sensors.sim.scenery import on_other_road


def urban_roadside(
    b: SceneBuilder, road: Road, ego: EgoMotion, duration: float, s_lo: float, s_hi: float,
    s_mid: float, skip: tuple[float, float, float] | None,
) -> None:
    """Parked vehicles, pedestrians (walking, standing, crossing) along an urban road.

    Called after the moving traffic exists: pedestrians are only placed where they keep clear
    of every agent and of the ego for the whole scene.
    """
    rng = b.rng
    roads = b.roads

    def parked_d(side: float, wlh: np.ndarray) -> float:
        return side * (URBAN_HALF_M - PARK_KERB_GAP_M - wlh[0] / 2)

    def in_skip(s: float, side: float, pad: float) -> bool:
        return skip is not None and np.sign(skip[2]) == side and skip[0] - pad < s < skip[1] + pad

    # Guaranteed near-ego instances of the rarer classes at mid-scene.
    for cls, side, ds in (("truck", -1.0, 14.0), ("motorcycle", 1.0, 6.0),
                          ("bicycle", -1.0, -4.0), ("bus", 1.0, 32.0)):
        wlh = b.size(cls)
        for shift in (0.0, -12.0, 12.0, -24.0, 24.0, -36.0):
            sd = -side if in_skip(s_mid + ds + shift, side, 8.0) else side
            xy, hd = road.path.pose(s_mid + ds + shift, parked_d(sd, wlh))
            if on_other_road(xy[0], roads, road, 1.0):
                continue
            if b.add_static(cls, xy[0], hd[0] + (np.pi if sd > 0 else 0.0), wlh=wlh):
                break
    for side in (-1.0, 1.0):
        s = s_lo + rng.uniform(0, 5)
        while s < s_hi:
            if in_skip(s, side, 8.0):
                s += 6
                continue
            if rng.uniform() < 0.7 * min(b.scale, 1.4):
                cls = str(rng.choice(["car"] * 12 + ["truck", "motorcycle", "bicycle"]))
                wlh = b.size(cls)
                xy, hd = road.path.pose(s + wlh[1] / 2, parked_d(side, wlh))
                if not on_other_road(xy[0], roads, road, 1.0):
                    b.add_static(cls, xy[0], hd[0] + (np.pi if side > 0 else 0.0), wlh=wlh)
                s += wlh[1] + rng.uniform(0.8, 4.0)
            else:
                s += rng.uniform(3, 12)
    # Pedestrians on the sidewalks: walkers in two walking lines (one per direction, one speed
    # per line so that they never walk through each other), standing people further out.
    edge = URBAN_HALF_M + 0.3
    for side in (-1.0, 1.0):
        for direction, lane in ((1.0, 1.0), (-1.0, 1.8)):
            v = rng.uniform(1.0, 1.5) * direction
            d = side * (edge + lane)
            s = s_mid - 60.0 + rng.uniform(0, 10)
            while s < s_mid + 60.0:
                s0 = s - v * duration / 2
                if not in_skip(s, side, 8.0) and rng.uniform() < 0.5 * b.scale:
                    traj = path_traj(road.path, s0, v, d)
                    if b.clear_of_agents(traj, PED_WLH):
                        b.add_agent("pedestrian", "path",
                                    {"path": road.path, "s0": s0, "speed": v, "offset": d})
                s += rng.uniform(4.0, 14.0)
        for _ in range(int(round(rng.integers(1, 4) * b.scale))):
            s = s_mid + rng.uniform(-50, 50)
            xy, hd = road.path.pose(s, side * (edge + rng.uniform(2.4, URBAN_SIDEWALK_M - 0.3)))
            if not in_skip(s, side, 5.0) and not on_other_road(xy[0], roads, road, 0.5):
                b.add_static("pedestrian", xy[0], hd[0] + rng.uniform(-np.pi, np.pi))
    # A standing pedestrian near the ego at mid-scene.
    for ds in (8.0, 14.0, 20.0, 2.0, -6.0):
        xy, hd = road.path.pose(s_mid + ds, -(edge + 2.6))
        if not on_other_road(xy[0], roads, road, 0.5) and b.add_static(
            "pedestrian", xy[0], hd[0] + np.pi / 2
        ):
            break
    # Pedestrians crossing the road, clear of the ego and of the traffic.
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(12):
            s_c = s_mid + rng.uniform(-30, 50)
            v = rng.uniform(1.1, 1.6)
            width = 2 * (edge + 0.8)
            t0 = rng.uniform(-2.0, duration)
            t1 = t0 + width / v
            side = rng.choice([-1.0, 1.0])
            a, _ = road.path.pose(s_c, side * (edge + 0.8))
            bb, _ = road.path.pose(s_c + rng.uniform(-2, 2), -side * (edge + 0.8))
            params = {"a": a[0], "b": bb[0], "t0": t0, "t1": t1}
            probe = Agent("pedestrian", np.zeros(3), (), "linear", "", "", params)
            if on_other_road(a[0], roads, road, 0.5) or on_other_road(bb[0], roads, road, 0.5):
                continue
            if b.clear_of_agents(lambda t, probe=probe: agent_pose(probe, t, None), PED_WLH,
                                 margin=0.8):
                b.add_agent("pedestrian", "linear", params)
                break
