"""Moving traffic: platoons of vehicles in a lane, cyclists in the bike lanes, and timed flows
through a junction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sensors.sim.agents import path_traj
from sensors.sim.builder import SceneBuilder
from sensors.sim.ego_motion import EgoMotion, ego_s_at
from sensors.sim.roads import BIKE_LANE_D, URBAN_LANE_M, Path, Road


def platoon(
    b: SceneBuilder, path: Path, offset: float, speed: float, s_anchor: float, s_lo: float,
    s_hi: float, pick: Callable[[], str], anchor_cls: str | None = None,
    gap: tuple[float, float] = (8.0, 35.0),
) -> None:
    """Vehicles in one lane, all at ``speed`` (signed: negative drives against ``path``), so
    they never run into each other; positions at t = 0 fill [s_lo, s_hi] outward from
    ``s_anchor`` (where ``anchor_cls``, if given, is placed).
    """
    rng = b.rng

    def add(cls: str, s_centre: float, wlh: np.ndarray) -> None:
        # Skip a vehicle that would meet an earlier agent (e.g. a pedestrian in the road).
        if b.clear_of_agents(path_traj(path, s_centre, speed, offset), wlh, margin=0.2):
            b.add_agent(cls, "path", {"path": path, "s0": s_centre, "speed": speed,
                                      "offset": offset}, wlh=wlh)

    cls = anchor_cls or pick()
    wlh = b.size(cls)
    add(cls, s_anchor, wlh)
    front = s_anchor + wlh[1] / 2
    back = s_anchor - wlh[1] / 2
    if cls == "trailer":
        # A tractor unit (truck) pulls the trailer: same speed, 0.8 m ahead of it.
        tk = b.size("truck")
        direction = 1.0 if speed >= 0 else -1.0
        if direction > 0:
            add("truck", front + 0.8 + tk[1] / 2, tk)
            front += 0.8 + tk[1]
        else:
            add("truck", back - 0.8 - tk[1] / 2, tk)
            back -= 0.8 + tk[1]
    while True:
        cls = pick()
        wlh = b.size(cls)
        s_c = front + rng.uniform(*gap) + wlh[1] / 2
        if s_c > s_hi:
            break
        add(cls, s_c, wlh)
        front = s_c + wlh[1] / 2
    while True:
        cls = pick()
        wlh = b.size(cls)
        s_c = back - rng.uniform(*gap) - wlh[1] / 2
        if s_c < s_lo:
            break
        add(cls, s_c, wlh)
        back = s_c - wlh[1] / 2


def junction_traffic(
    b: SceneBuilder, flows: list[tuple[Road, float, float]], ego: EgoMotion, s_stop: float,
    duration: float, v_cruise: float,
) -> None:
    """Traffic through a junction, timed so that flows never meet in it and all of it has
    cleared the junction before the ego leaves its stop line.

    Flows go through one after the other, going back in time from the ego's start; a flow in
    the direction the ego turns into drives faster than the ego cruises, so the ego never
    catches up with it.

    Args:
        b: builder.
        flows: (road, junction arc length on that road, direction) per flow; direction +1
            drives along the road (right lane), -1 against it.
        ego: ego motion.
        s_stop: ego-path arc length of the stop line.
        duration: scene length, seconds.
        v_cruise: ego cruise speed, m/s.

    """
    rng = b.rng
    moving_after = ego.t[(ego.s > s_stop + 0.3)]
    t_go = float(moving_after[0]) if len(moving_after) else duration + 5.0
    exit_heading = ego.path.heading[-1]
    clear_m = 25.0  # half length of the junction zone along a flow
    t_end = t_go - 1.0  # when the current flow's last vehicle must have left the zone
    for road, s_x, direction in flows:
        road_heading = float(np.interp(s_x, road.path.s, road.path.heading))
        v = rng.uniform(7.0, 11.0)
        if np.cos(exit_heading - road_heading) * direction > 0.5:
            v = max(v, v_cruise + 3.0)
        offset = -direction * URBAN_LANE_M / 2
        # Distance travelled past the junction centre: the last vehicle's front is at
        # clear_m + L/2 at t_end; vehicles ahead of it follow with gaps.
        ahead = 0.0  # distance of the current vehicle's centre ahead of the last one's
        prev_half = 0.0
        for k in range(int(rng.integers(1, 4))):
            cls = str(rng.choice(["car"] * 5 + ["truck", "bus"]))
            wlh = b.size(cls)
            if k > 0:
                ahead += prev_half + rng.uniform(8.0, 25.0) + wlh[1] / 2
            prev_half = wlh[1] / 2
            # Centre distance beyond the junction centre at t_end, then back to t = 0.
            beyond = clear_m + wlh[1] / 2 + ahead
            s0 = s_x + direction * (beyond - v * t_end)
            b.add_agent(cls, "path", {"path": road.path, "s0": s0, "speed": direction * v,
                                      "offset": offset}, wlh=wlh)
        # The flow's first (front) vehicle entered the zone (its front at -clear_m) at:
        t_first_enter = t_end - (ahead + 2 * clear_m + 2 * prev_half) / v
        t_end = t_first_enter - 0.5



def traffic(
    b: SceneBuilder,
    road: Road,
    ego: EgoMotion,
    duration: float,
    s_ego0: float,
    lane_centres_same: list[float],
    lane_centres_oncoming: list[float],
    speed_range: tuple[float, float],
    bike_sides: tuple[float, ...],
) -> None:
    """Moving traffic on ``road``: one platoon per lane (oncoming lanes meet the ego, same
    direction lanes drift past it; the first oncoming lane brings a bus past the ego at
    mid-scene) and cyclists in the bike lanes of ``bike_sides``.
    """
    rng = b.rng
    scale = max(b.scale, 0.2)
    s_a = s_ego0 + float(ego.s[0])
    s_b = s_ego0 + ego_s_at(ego, duration)
    gap = (8.0 / scale, 35.0 / scale)

    def pick_vehicle() -> str:
        return str(rng.choice(["car"] * 7 + ["truck", "motorcycle"]))

    for k, d in enumerate(lane_centres_oncoming):
        v = rng.uniform(*speed_range)
        # Where a vehicle must be at t = 0 to meet the ego at time T/2 (25 m ahead of it).
        s_meet = s_ego0 + ego_s_at(ego, duration / 2) + 25.0 + v * duration / 2
        platoon(b, road.path, d, -v, s_meet if k == 0 else s_meet + rng.uniform(-30, 30),
                 s_a - 20.0, s_b + v * duration + 40.0, pick_vehicle,
                 "bus" if k == 0 else None, gap)
    for d in lane_centres_same:
        v = rng.uniform(*speed_range)
        s_mid = s_ego0 + ego_s_at(ego, duration / 2) - v * duration / 2
        platoon(b, road.path, d, v, s_mid + rng.uniform(-20, 20), s_mid - 90.0, s_mid + 90.0,
                 lambda: str(rng.choice(["car"] * 6 + ["truck", "bus", "motorcycle"])), None, gap)
    for side in bike_sides:
        if rng.uniform() < 0.3:
            continue
        v = rng.uniform(3.5, 6.0)
        direction = -side  # right-hand traffic: the right side (-) rides with the path
        s_mid = s_ego0 + ego_s_at(ego, duration / 2) - direction * v * duration / 2
        platoon(b, road.path, side * BIKE_LANE_D, direction * v, s_mid + rng.uniform(-20, 20),
                 s_mid - 50.0, s_mid + 50.0,
                 lambda: "bicycle" if rng.uniform() < 0.75 else "motorcycle", None, (6.0, 40.0))
