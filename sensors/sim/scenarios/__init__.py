"""Scenario layouts: one module per scenario kind, chosen by a ``match`` in :func:`build_world`.

Each kind's ``lay_out(b)`` adds the roads, plans the ego motion and places agents and scenery
on a :class:`~sensors.sim.builder.SceneBuilder`; ``build_world`` turns the result into a
:class:`~sensors.sim.world.World`. The generator is seeded per scene, so the order of random
draws is part of the output: the same seed gives byte-identical data.
"""

from __future__ import annotations

import numpy as np

from sensors.scene_description import Condition, format_scene_description
from sensors.sim.builder import SceneBuilder
from sensors.sim.config import ScenarioKind
from sensors.sim.ground import ground_map
from sensors.sim.scenarios import highway, intersection, parking, urban_curve, urban_straight
from sensors.sim.world import World

MAP_NAMES = (
    "singapore-onenorth",
    "boston-seaport",
    "singapore-queenstown",
    "singapore-hollandvillage",
)


def build_world(
    scenario: ScenarioKind | str,
    condition: Condition | str,
    rng: np.random.Generator,
    duration_s: float,
    scale: float = 1.0,
) -> World:
    """Lay out one scene.

    Args:
        scenario: the scenario kind (or its name, ``config.SCENARIO_KINDS``).
        condition: the weather / lighting (or its name, ``config.CONDITIONS``).
        rng: the scene's random generator (seeded from the dataset seed and scene index).
        duration_s: scene length, seconds.
        scale: multiplies the number of agents.

    Returns:
        The world, in global coordinates (scene origin a few hundred metres from the map
        origin, random heading, like nuScenes' map frames).

    Raises:
        ValueError: an unknown scenario kind or condition.

    """
    kind = ScenarioKind(scenario)
    cond = Condition(condition)
    b = SceneBuilder(rng, scale, duration_s)
    match kind:
        case ScenarioKind.URBAN_STRAIGHT:
            urban_straight.lay_out(b)
        case ScenarioKind.URBAN_CURVE:
            urban_curve.lay_out(b)
        case ScenarioKind.INTERSECTION:
            intersection.lay_out(b)
        case ScenarioKind.HIGHWAY:
            highway.lay_out(b)
        case ScenarioKind.PARKING:
            parking.lay_out(b)
    assert b.ego is not None, f"{kind.value} layout planned no ego motion"
    ground = ground_map(b.roads, b.ego, rng, b.theta, parking_lot=kind is ScenarioKind.PARKING)
    return World(
        scenario=kind,
        condition=cond,
        description=format_scene_description(cond, kind.summary, kind.value, b.events),
        roads=tuple(b.roads),
        ego=b.ego,
        agents=tuple(b.agents),
        scenery=b.scenery(),
        ground=ground,
        duration_s=duration_s,
        map_name=MAP_NAMES[int(rng.integers(len(MAP_NAMES)))],
        lamps_xy=np.asarray(b.lamps, dtype=np.float64).reshape(-1, 2),
    )
