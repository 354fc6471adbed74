"""The world of one scene and its per-time queries.

A :class:`World` is built once per scene from a seeded generator (``sensors.sim.scenarios``)
and then queried at any time: ``ego_pose(t)`` and ``agent_states(t)`` are pure functions of
time, so LiDAR sweeps, camera frames, CAN bus messages and annotations all agree by
construction.

Geometry is made of oriented boxes ("parts"). An agent is a few parts inside its annotation
box (``sensors.sim.agent_shapes``); scenery (kerbs, walls, poles, trees, bollards) is parts
with no annotation. The ground is the plane z = 0 with a material raster
(``sensors.sim.ground``). Frames: everything here is in the global (map) frame, x east,
y north, z up, metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sensors.scene_description import Condition
from sensors.sim.agents import Agent, AgentStates, agent_pose
from sensors.sim.config import ScenarioKind
from sensors.sim.ego_motion import EgoMotion
from sensors.sim.ground import GroundMap
from sensors.sim.roads import Path, Road


@dataclass(frozen=True, eq=False)
class Primitives:
    """Oriented boxes for ray casting and rendering (global frame).

    Attributes:
        center: (P, 3) float64. half: (P, 3) float64 half extents (local x, y, z).
        yaw: (P,) float64. rgb: (P, 3) float32 0-255. reflectivity: (P,) float32.
        owner: (P,) int32 agent index, -1 for scenery.

    """

    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    rgb: np.ndarray
    reflectivity: np.ndarray
    owner: np.ndarray


# ---------------------------------------------------------------------------------------------
# World
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class World:
    """One scene's world.

    Attributes:
        scenario: scenario kind. condition: weather / lighting.
        description: human-readable scene description (goes into the scene table).
        roads: roads (global frame).
        ego: ego motion.
        agents: annotated agents.
        scenery: static unannotated parts (global frame).
        ground: ground raster.
        duration_s: scene length, seconds.
        map_name: location name for the log table.

    """

    scenario: ScenarioKind
    condition: Condition
    description: str
    roads: tuple[Road, ...]
    ego: EgoMotion
    agents: tuple[Agent, ...]
    scenery: Primitives
    ground: GroundMap
    duration_s: float
    map_name: str
    lamps_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def ego_pose(self, t: float) -> tuple[np.ndarray, float]:
        """Ego (x, y) and yaw at time ``t`` seconds."""
        st = self.ego.at(t)
        return st["xy"][0], float(st["yaw"][0])

    def __post_init__(self) -> None:
        # Precomputed, vectorised views of the agents (the per-time queries are hot: every
        # sensor reading asks for all agents).
        n = len(self.agents)
        kinds = np.array([a.kind for a in self.agents])
        wlh = np.array([a.wlh for a in self.agents], dtype=np.float64).reshape(n, 3)
        static_xy = np.zeros((n, 2))
        static_yaw = np.zeros(n)
        for i, a in enumerate(self.agents):
            if a.kind == "static":
                static_xy[i] = a.params["xy"]
                static_yaw[i] = a.params["yaw"]
        groups: dict[int, list[int]] = {}
        paths: dict[int, Path] = {}
        for i, a in enumerate(self.agents):
            if a.kind == "path":
                groups.setdefault(id(a.params["path"]), []).append(i)
                paths[id(a.params["path"])] = a.params["path"]
        path_groups = []
        for key, idx in groups.items():
            idx_arr = np.array(idx, dtype=np.int64)
            s0 = np.array([self.agents[i].params["s0"] for i in idx])
            sp = np.array([self.agents[i].params["speed"] for i in idx])
            off = np.array([self.agents[i].params["offset"] for i in idx])
            path_groups.append((paths[key], idx_arr, s0, sp, off))
        part_owner, part_c, part_size, part_rgb, part_refl = [], [], [], [], []
        for i, a in enumerate(self.agents):
            for pt in a.parts:
                part_owner.append(i)
                part_c.append(pt.center_m)
                part_size.append(pt.size_m)
                part_rgb.append(pt.rgb)
                part_refl.append(pt.reflectivity)
        m = len(part_owner)
        cache = {
            "kinds": kinds,
            "wlh": wlh,
            "static_xy": static_xy,
            "static_yaw": static_yaw,
            "path_groups": path_groups,
            "other": [i for i, a in enumerate(self.agents) if a.kind in ("ego_follow", "linear")],
            "cls_still": np.array([a.cls in ("traffic_cone", "barrier") for a in self.agents],
                                  dtype=bool),
            "part_owner": np.asarray(part_owner, dtype=np.int32).reshape(m),
            "part_center": np.asarray(part_c, dtype=np.float64).reshape(m, 3),
            "part_half": np.asarray(part_size, dtype=np.float64).reshape(m, 3) / 2.0,
            "part_rgb": np.asarray(part_rgb, dtype=np.float32).reshape(m, 3),
            "part_refl": np.asarray(part_refl, dtype=np.float32).reshape(m),
        }
        object.__setattr__(self, "_cache", cache)

    def _poses(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(A, 2) xy and (A,) yaw of all agents at time ``t``."""
        c = self._cache
        xy = c["static_xy"].copy()
        yaw = c["static_yaw"].copy()
        for path, idx, s0, sp, off in c["path_groups"]:
            s = s0 + sp * t
            sc = np.clip(s, 0.0, path.length)
            px = np.interp(sc, path.s, path.xy[:, 0])
            py = np.interp(sc, path.s, path.xy[:, 1])
            hd = np.interp(sc, path.s, path.heading)
            extra = s - sc
            ch, sh = np.cos(hd), np.sin(hd)
            xy[idx, 0] = px + extra * ch - off * sh
            xy[idx, 1] = py + extra * sh + off * ch
            yaw[idx] = hd + np.where(sp < 0, np.pi, 0.0)
        for i in c["other"]:
            p, y = self._agent_xy_yaw(self.agents[i], t)
            xy[i] = p
            yaw[i] = y
        return xy, yaw

    def agent_states(self, t: float) -> AgentStates:
        """Pose, velocity and attribute of every agent at time ``t``."""
        c = self._cache
        n = len(self.agents)
        dt = 0.05
        xy, yaw = self._poses(t)
        xy1, _ = self._poses(t + dt)
        xy0, _ = self._poses(t - dt)
        vel = (xy1 - xy0) / (2 * dt)
        center = np.zeros((n, 3))
        center[:, :2] = xy
        center[:, 2] = c["wlh"][:, 2] / 2.0
        moving = np.hypot(vel[:, 0], vel[:, 1]) > 0.2
        attrs = tuple(
            "" if c["cls_still"][i] else (ag.attribute_moving if moving[i] else ag.attribute_still)
            for i, ag in enumerate(self.agents)
        )
        return AgentStates(center, np.arctan2(np.sin(yaw), np.cos(yaw)), vel, c["wlh"].copy(),
                           attrs)

    def _agent_xy_yaw(self, ag: Agent, t: float) -> tuple[np.ndarray, float]:
        return agent_pose(ag, t, self.ego)

    def primitives(self, t: float, states: AgentStates | None = None) -> Primitives:
        """All parts (agents at time ``t`` + scenery) as one set of oriented boxes."""
        st = self.agent_states(t) if states is None else states
        c = self._cache
        own = c["part_owner"]
        yaw = st.yaw[own]
        cy, sy = np.cos(yaw), np.sin(yaw)
        lc = c["part_center"]
        base = st.center[own] - np.stack(
            [np.zeros(len(own)), np.zeros(len(own)), c["wlh"][own, 2] / 2.0], axis=1
        )
        cen = base + np.stack([lc[:, 0] * cy - lc[:, 1] * sy, lc[:, 0] * sy + lc[:, 1] * cy,
                               lc[:, 2]], axis=1)
        sc = self.scenery
        return Primitives(
            np.ascontiguousarray(np.concatenate([cen, sc.center])),
            np.ascontiguousarray(np.concatenate([c["part_half"], sc.half])),
            np.ascontiguousarray(np.concatenate([yaw, sc.yaw])),
            np.concatenate([c["part_rgb"], sc.rgb]),
            np.concatenate([c["part_refl"], sc.reflectivity]),
            np.concatenate([own, sc.owner]).astype(np.int32),
        )
