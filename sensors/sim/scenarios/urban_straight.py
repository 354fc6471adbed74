"""Urban straight: a straight street; the ego brakes hard for a car stopped in its lane."""

from __future__ import annotations

from sensors.sim.builder import SceneBuilder
from sensors.sim.scenarios.urban import (
    add_car_ahead,
    add_street,
    drive_to_obstacle,
    populate_street,
)


def lay_out(b: SceneBuilder) -> None:
    """Lay out an urban straight scene on ``b``."""
    rng = b.rng
    v_cruise = rng.uniform(8.0, 12.0)
    need = v_cruise * b.duration_s + 120.0
    road = add_street(b, [(-80.0, 0.0), (need, 0.0)], [])
    ego_path, s_obs = drive_to_obstacle(b, road, v_cruise, gap_m=2.4, half_length_m=2.3)
    if s_obs is not None:
        xy, hd = ego_path.pose(s_obs)
        b.add_static("car", xy[0], hd[0], attrs=("vehicle.moving", "vehicle.stopped"),
                     check=False)
    else:
        add_car_ahead(b)
    populate_street(b)
