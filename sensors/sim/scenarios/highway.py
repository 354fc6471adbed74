"""Highway: three lanes each way behind a median barrier; the ego follows a car, a
tractor-trailer drifts past it, and a work zone stands on the shoulder.
"""

from __future__ import annotations

import numpy as np

from sensors.sim.builder import SceneBuilder
from sensors.sim.ego_motion import plan_speed
from sensors.sim.roads import HIGHWAY_HALF_M, HIGHWAY_LANE_M
from sensors.sim.scenery import road_scenery, work_zone
from sensors.sim.traffic import platoon, traffic

S_EGO0_M = 150.0  # where the ego path starts on the highway


def lay_out(b: SceneBuilder) -> None:
    """Lay out a highway scene on ``b``."""
    rng = b.rng
    duration_s = b.duration_s
    v_cruise = rng.uniform(22.0, 28.0)
    need = v_cruise * duration_s + 250.0
    phi = np.radians(rng.uniform(-12, 12))
    main = b.add_road([(-150.0, 0.0), (150.0 + need * 0.3, 0.0),
                       (150.0 + need * 0.3 + need * np.cos(phi), need * np.sin(phi))],
                      [1200.0], half_width_m=HIGHWAY_HALF_M, lane_width_m=HIGHWAY_LANE_M,
                      lanes_per_dir=3, sidewalk_m=0.0, kerbs=False, centre_line="barrier")
    ego_path = b.lane_path(main, S_EGO0_M, -HIGHWAY_LANE_M * 1.5)
    ego = plan_speed(ego_path, duration_s, v_cruise, v_cruise * rng.uniform(0.85, 1.0), b.stops)
    b.add_agent("car", "ego_follow", {"gap": rng.uniform(30, 45)})
    b.set_ego(ego)

    s_mid, s_lo, s_hi = b.main_road_span(S_EGO0_M)
    lanes = [-HIGHWAY_LANE_M * (k + 0.5) for k in range(3)]
    onc = [HIGHWAY_LANE_M * (k + 0.5) for k in range(3)]
    traffic(b, main, ego, duration_s, S_EGO0_M, [lanes[0]], onc, (20.0, 30.0), ())
    # Right lane: a tractor-trailer drifting past the ego, with traffic around it.
    v = rng.uniform(20.0, 25.0)
    s_anchor = s_mid - v * duration_s / 2 + rng.uniform(-10, 10)
    platoon(b, main.path, lanes[2], v, s_anchor, s_anchor - 80.0, s_anchor + 80.0,
            lambda: str(rng.choice(["car"] * 6 + ["truck", "bus"])), "trailer", (10.0, 40.0))
    work_zone(b, main, s_mid + 10.0, -(HIGHWAY_LANE_M * 3 + 0.4))
    road_scenery(b, main, b.roads, (s_lo - 30, s_hi + 120))
