"""What the urban scenario kinds share: the street cross-section, the drive towards an
emergency stop, and the street's population (work zone, traffic, roadside, scenery).
"""

from __future__ import annotations

import numpy as np

from calibration.ultrasonic_layout import FRONT_BUMPER_X_M
from sensors.sim.builder import SceneBuilder
from sensors.sim.ego_motion import plan_speed
from sensors.sim.roads import URBAN_HALF_M, URBAN_LANE_M, URBAN_SIDEWALK_M, Path, Road
from sensors.sim.roadside import urban_roadside
from sensors.sim.scenery import road_scenery, work_zone
from sensors.sim.traffic import traffic

S_EGO0_M = 80.0  # where the ego path starts on the main road (80 m of road behind it)
WORK_SIDE = 1.0  # work zones stand left of the main road's centreline (oncoming side)


def add_street(b: SceneBuilder, wps: list[tuple[float, float]], radii: list[float]) -> Road:
    """An urban street (one lane each way, kerbs, sidewalks) along scene-frame waypoints."""
    return b.add_road(wps, radii, half_width_m=URBAN_HALF_M, lane_width_m=URBAN_LANE_M,
                      lanes_per_dir=1, sidewalk_m=URBAN_SIDEWALK_M)


def drive_to_obstacle(
    b: SceneBuilder, road: Road, v_cruise: float, gap_m: float, half_length_m: float
) -> tuple[Path, float | None]:
    """Plan the ego along the right lane of ``road``, with (85% of scenes) an emergency stop
    ``gap_m`` before an obstacle of half length ``half_length_m`` in the lane.

    Returns:
        The ego path and the obstacle's arc length on it (None: no emergency in this scene;
        the caller places the obstacle, or a car to follow when there is none).

    """
    rng = b.rng
    ego_path = b.lane_path(road, S_EGO0_M, -URBAN_LANE_M / 2)
    brake = rng.uniform() < 0.85
    t_obs = b.duration_s * rng.uniform(0.45, 0.6)
    s_obs = v_cruise * t_obs + 25.0
    if brake:
        b.stops.append((s_obs - gap_m - half_length_m - FRONT_BUMPER_X_M, np.inf, 6.5))
        b.events.append("emergency_brake")
    ego = plan_speed(ego_path, b.duration_s, v_cruise, v_cruise * rng.uniform(0.6, 1.0), b.stops)
    b.set_ego(ego)
    return ego_path, (s_obs if brake else None)


def add_car_ahead(b: SceneBuilder) -> None:
    """A car the ego follows in its lane (scenes without an emergency)."""
    b.add_agent("car", "ego_follow", {"gap": b.rng.uniform(18, 30)})


def populate_street(b: SceneBuilder) -> None:
    """Work zone, oncoming traffic and cyclists, roadside and scenery of a single street."""
    assert b.ego is not None
    main = b.roads[0]
    s_mid, s_lo, s_hi = b.main_road_span(S_EGO0_M)
    # Work zone beside the road ahead of the ego at mid-scene.
    s_w = s_mid + 6.0
    work_zone(b, main, s_w, WORK_SIDE * (URBAN_LANE_M + 0.3))
    traffic(b, main, b.ego, b.duration_s, S_EGO0_M, [], [URBAN_LANE_M / 2], (7.0, 12.0),
            (-WORK_SIDE,))
    urban_roadside(b, main, b.ego, b.duration_s, s_lo, s_hi, s_mid, (s_w, s_w + 30.0, WORK_SIDE))
    road_scenery(b, main, b.roads, (s_lo - 30, s_hi + 60))
