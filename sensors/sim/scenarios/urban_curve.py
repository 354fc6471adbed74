"""Urban curve: a street bending 45-85 degrees; the ego brakes hard for a pedestrian who steps
into its lane and stays there.
"""

from __future__ import annotations

import numpy as np

from sensors.sim.builder import SceneBuilder
from sensors.sim.roads import URBAN_HALF_M, URBAN_LANE_M
from sensors.sim.scenarios.urban import (
    add_car_ahead,
    add_street,
    drive_to_obstacle,
    populate_street,
)


def lay_out(b: SceneBuilder) -> None:
    """Lay out an urban curve scene on ``b``."""
    rng = b.rng
    v_cruise = rng.uniform(8.0, 12.0)
    need = v_cruise * b.duration_s + 120.0
    phi = np.radians(rng.uniform(45, 85)) * rng.choice([-1.0, 1.0])
    radius = rng.uniform(45, 90)
    lead = 20.0 + v_cruise * b.duration_s * 0.3 + radius * np.tan(abs(phi) / 2)
    end = (80.0 + lead + need * np.cos(phi), need * np.sin(phi))
    road = add_street(b, [(-80.0, 0.0), (80.0 + lead, 0.0), end], [radius])
    ego_path, s_obs = drive_to_obstacle(b, road, v_cruise, gap_m=2.0, half_length_m=0.4)
    ego = b.ego
    assert ego is not None
    if s_obs is not None:
        # The pedestrian reaches the lane centre 0.3 s before the ego starts braking (the
        # reaction time), walking in from the right sidewalk at a brisk pace.
        t_brake = float(ego.t[ego.aeb][0]) if ego.aeb.any() else b.duration_s
        v_ped = rng.uniform(1.6, 2.2)
        end_xy, _ = ego_path.pose(s_obs)
        start_xy, _ = ego_path.pose(s_obs - 1.0, -(URBAN_HALF_M - URBAN_LANE_M / 2 + 1.0))
        t1 = t_brake - 0.3
        t0 = t1 - float(np.hypot(*(end_xy[0] - start_xy[0]))) / v_ped
        b.add_agent("pedestrian", "linear", {"a": start_xy[0], "b": end_xy[0], "t0": t0,
                                             "t1": t1})
    else:
        add_car_ahead(b)
    populate_street(b)
