"""Agents: annotated objects with a trajectory, their pose at any time, and the circle chains
used to check that placed objects never meet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sensors.sim.agent_shapes import PartSpec
from sensors.sim.ego_motion import EgoMotion
from sensors.sim.roads import Path

# (xy, yaw) of an object at time t.
Trajectory = Callable[[float], tuple[np.ndarray, float]]

@dataclass(frozen=True, eq=False)
class Agent:
    """An annotated object with a trajectory.

    Attributes:
        cls: detection class name.
        wlh: (3,) width, length, height, metres.
        parts: box parts in the local frame (bottom at z = 0).
        kind: "static" (fixed pose), "path" (moves along a path), "ego_follow" (moves along
            the ego path at a fixed gap ahead), "linear" (straight line between two points over
            a time window, standing otherwise).
        attribute_moving / attribute_still: nuScenes attribute names when moving / not.
        params: trajectory parameters (see ``World.agent_states``).

    """

    cls: str
    wlh: np.ndarray
    parts: tuple[PartSpec, ...]
    kind: str
    attribute_moving: str
    attribute_still: str
    params: dict = field(default_factory=dict)


def agent_pose(ag: Agent, t: float, ego: EgoMotion | None) -> tuple[np.ndarray, float]:
    """(x, y) and yaw of agent ``ag`` at time ``t`` (``ego`` is needed for "ego_follow")."""
    p = ag.params
    if ag.kind == "static":
        return np.asarray(p["xy"], dtype=np.float64), float(p["yaw"])
    if ag.kind == "path":
        path: Path = p["path"]
        s = p["s0"] + p["speed"] * t
        xy, hd = path.pose(s, p["offset"])
        yaw = hd[0] + (np.pi if p["speed"] < 0 else 0.0)
        return xy[0], float(yaw)
    if ag.kind == "ego_follow":
        assert ego is not None
        s_ego = float(ego.s_at(t)[0])
        xy, hd = ego.path.pose(s_ego + p["gap"])
        return xy[0], float(hd[0])
    if ag.kind == "linear":
        a, b = np.asarray(p["a"]), np.asarray(p["b"])
        f = float(np.clip((t - p["t0"]) / (p["t1"] - p["t0"]), 0.0, 1.0))
        d = b - a
        return a + f * d, float(np.arctan2(d[1], d[0]))
    raise ValueError(f"unknown agent kind {ag.kind}")


ATTR_VEHICLE = ("vehicle.moving", "vehicle.parked")
ATTR_PED = ("pedestrian.moving", "pedestrian.standing")


@dataclass(frozen=True, eq=False)
class AgentStates:
    """All agents at one time (global frame).

    Attributes:
        center: (A, 3) box centres, metres.
        yaw: (A,) headings, radians.
        velocity: (A, 2) vx, vy, m/s.
        wlh: (A, 3).
        attributes: A attribute names ("" for cones/barriers).

    """

    center: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    wlh: np.ndarray
    attributes: tuple[str, ...]


PED_WLH = np.array([0.8, 0.8, 1.8])  # conflict-check footprint of a pedestrian


def circles(
    xy: np.ndarray, yaw: np.ndarray, length: float, width: float
) -> tuple[np.ndarray, float]:
    """Cover a (length x width) footprint moving along ``xy`` (T, 2) / ``yaw`` (T,) with a
    chain of n equal circles: returns (n, T, 2) centres and their radius.
    """
    n = max(1, int(np.ceil(length / max(width, 1e-3))))
    seg = length / n
    offs = -length / 2 + seg / 2 + seg * np.arange(n)
    d = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)  # (T, 2)
    centres = xy[None, :, :] + offs[:, None, None] * d[None, :, :]
    return centres, float(np.hypot(seg / 2, width / 2))


def path_traj(path: Path, s0: float, v: float, d: float) -> Trajectory:
    """(xy, yaw)(t) of an object moving along ``path`` at signed speed ``v``, lateral ``d``."""
    def traj(t: float) -> tuple[np.ndarray, float]:
        xy, hd = path.pose(s0 + v * t, d)
        return xy[0], float(hd[0] + (np.pi if v < 0 else 0.0))

    return traj
