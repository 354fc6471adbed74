"""Intersection: a four-way junction with a stop line; the ego stops, waits, then turns left,
right or goes straight once the cross traffic has cleared the junction.
"""

from __future__ import annotations

from calibration.ultrasonic_layout import FRONT_BUMPER_X_M
from sensors.sim.builder import SceneBuilder
from sensors.sim.ego_motion import plan_speed
from sensors.sim.roads import URBAN_HALF_M, URBAN_LANE_M
from sensors.sim.roadside import urban_roadside
from sensors.sim.scenarios.urban import S_EGO0_M, WORK_SIDE, add_street
from sensors.sim.scenery import road_scenery, work_zone
from sensors.sim.traffic import junction_traffic, traffic


def lay_out(b: SceneBuilder) -> None:
    """Lay out an intersection scene on ``b``."""
    rng = b.rng
    duration_s = b.duration_s
    v_cruise = rng.uniform(8.0, 11.0)
    xi = rng.uniform(35.0, 55.0)  # junction centre, metres along the main road from the ego
    main = add_street(b, [(-80.0, 0.0), (xi + 200.0, 0.0)], [])
    cross = add_street(b, [(xi, -200.0), (xi, 200.0)], [])
    turn = rng.choice(["left", "right", "straight"])
    h = URBAN_LANE_M / 2
    if turn == "right":
        wps, radii = [(0.0, -h), (xi - h, -h), (xi - h, -200.0)], [7.0]
    elif turn == "left":
        wps, radii = [(0.0, -h), (xi + h, -h), (xi + h, 200.0)], [12.0]
    else:
        wps, radii = [(0.0, -h), (xi + 200.0, -h)], []
    ego_path = b.path(wps, radii)
    s_stop = xi - URBAN_HALF_M - 2.0 - FRONT_BUMPER_X_M
    b.stops.append((s_stop, rng.uniform(1.5, 3.0), 2.5))  # stop sign: hold, go
    b.events.append(f"turn_{turn}")
    ego = plan_speed(ego_path, duration_s, v_cruise, v_cruise * 0.8, b.stops)
    b.set_ego(ego)

    s_mid, s_lo, s_hi = b.main_road_span(S_EGO0_M)
    s_mid = min(s_mid, S_EGO0_M + xi - 10.0)  # mid-scene people before the junction
    # Work zone beside the road before the junction.
    s_w = S_EGO0_M + xi - 45.0
    work_zone(b, main, s_w, WORK_SIDE * (URBAN_LANE_M + 0.3))
    s_x = float(cross.path.project(main.path.pose(S_EGO0_M + xi)[0])[0][0])
    flows = [(cross, s_x, 1.0), (cross, s_x, -1.0), (main, S_EGO0_M + xi, -1.0)]
    order = rng.permutation(len(flows))
    junction_traffic(b, [flows[i] for i in order], ego, s_stop, duration_s, v_cruise)
    traffic(b, main, ego, duration_s, S_EGO0_M, [], [], (7.0, 12.0), (-WORK_SIDE,))
    urban_roadside(b, main, ego, duration_s, s_lo, s_hi, s_mid, (s_w, s_w + 30.0, WORK_SIDE))
    urban_roadside(b, cross, ego, duration_s, s_x - 120, s_x + 120, s_x + 25, None)
    road_scenery(b, main, b.roads, (s_lo - 30, s_hi + 60))
    road_scenery(b, cross, b.roads, (0, 1e9))
