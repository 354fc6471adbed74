"""The scene builder: what a scenario layout accumulates (roads, the ego's stops and motion,
agents, scenery parts, street lamps) and the placement checks that keep objects apart.
"""

from __future__ import annotations

import numpy as np

from sensors.sim.agent_shapes import CLASS_SIZE, agent_parts
from sensors.sim.agents import ATTR_PED, ATTR_VEHICLE, Agent, Trajectory, agent_pose, circles
from sensors.sim.ego_motion import EgoMotion
from sensors.sim.materials import REFLECTIVITY, VEHICLE_COLOURS
from sensors.sim.roads import Path, Road, fillet_polyline, rotate_waypoints
from sensors.sim.world import Primitives


class SceneBuilder:
    """Accumulates one scene while a scenario lays it out.

    The scene frame (origin, heading) is drawn first; a layout then adds its roads (the first
    is the main road, the ego's), plans the ego motion and calls :meth:`set_ego`, and adds
    agents and scenery. Everything is in the global frame.
    """

    def __init__(self, rng: np.random.Generator, scale: float, duration_s: float) -> None:
        self.rng = rng
        self.scale = scale
        self.duration_s = duration_s
        # Scene origin a few hundred metres from the map origin, random heading (like
        # nuScenes' map frames); layouts give waypoints in this scene frame.
        self.origin = np.array([rng.uniform(300.0, 1800.0), rng.uniform(300.0, 1800.0)]).round(2)
        self.theta = float(rng.uniform(-np.pi, np.pi))
        self.roads: list[Road] = []
        self.stops: list[tuple[float, float, float]] = []  # plan_speed stops
        self.events: list[str] = []  # scripted events, named in the scene description
        self.agents: list[Agent] = []
        self.ego: EgoMotion | None = None
        self.times: np.ndarray | None = None  # when set, statics must not meet movers
        self.occupied: list[tuple[np.ndarray, float]] = []  # (xy, radius) of placed statics
        self.s_cen: list[np.ndarray] = []
        self.s_half: list[np.ndarray] = []
        self.s_yaw: list[float] = []
        self.s_rgb: list[tuple[float, float, float]] = []
        self.s_refl: list[float] = []
        self.lamps: list[np.ndarray] = []  # street lamp heads (xy), lit at night

    # -- roads and paths ----------------------------------------------------------------------
    def path(self, wps: list[tuple[float, float]], radii: list[float]) -> Path:
        """Path through scene-frame waypoints ``wps``, inner corners rounded by ``radii``."""
        return Path.from_polyline(
            fillet_polyline(rotate_waypoints(wps, self.origin, self.theta), radii)
        )

    def add_road(self, wps: list[tuple[float, float]], radii: list[float], **kw) -> Road:
        """Add a road along scene-frame waypoints (``kw``: the ``Road`` cross-section)."""
        pts = fillet_polyline(rotate_waypoints(wps, self.origin, self.theta), radii)
        road = Road(Path.from_polyline(pts), **kw)
        self.roads.append(road)
        return road

    @staticmethod
    def lane_path(road: Road, s_start: float, d: float) -> Path:
        """Path ``d`` metres left of ``road``'s centreline from arc length ``s_start``."""
        s = np.arange(s_start, road.path.length, 0.5)
        xy, _ = road.path.pose(s, d)
        return Path.from_polyline(xy)

    def set_ego(self, ego: EgoMotion) -> None:
        """Fix the ego motion; from now on new objects must keep clear of movers."""
        self.set_times(ego, np.arange(-0.5, self.duration_s + 0.75, 0.5))

    def main_road_span(self, s_ego0: float) -> tuple[float, float, float]:
        """Arc lengths on the main road, where the ego path starts at ``s_ego0``: the ego at
        mid-scene, 50 m behind its start and 90 m beyond its end (where agents are placed).
        """
        assert self.ego is not None, "set_ego first"
        s_mid = s_ego0 + float(self.ego.s_at(self.duration_s / 2)[0])
        return s_mid, s_ego0 - 50.0, s_ego0 + float(self.ego.s[-1]) + 90.0

    # -- helpers ------------------------------------------------------------------------------
    def size(self, cls: str) -> np.ndarray:
        """A random (w, l, h) of class ``cls``, metres."""
        mean, sd = CLASS_SIZE[cls]
        z = np.clip(self.rng.standard_normal(3), -2.0, 2.0)
        return np.round(np.asarray(mean) + z * np.asarray(sd), 3)

    def colour(self, cls: str) -> np.ndarray:
        """A random colour of class ``cls``, 0-255."""
        if cls == "pedestrian":
            return self.rng.uniform(30, 220, 3).round()
        if cls == "bus":
            return np.array([[200, 40, 40], [240, 240, 235], [30, 90, 170]])[self.rng.integers(3)]
        base = VEHICLE_COLOURS[self.rng.integers(len(VEHICLE_COLOURS))]
        return np.clip(base + self.rng.normal(0, 8, 3), 0, 255).round()

    def free(self, xy: np.ndarray, radius: float) -> bool:
        """True when a disc at ``xy`` meets no placed static object."""
        return all(np.hypot(*(xy - o)) > radius + r for o, r in self.occupied)

    def set_times(self, ego: EgoMotion, times: np.ndarray) -> None:
        """Enable conflict checks of new objects against all agents and the ego at ``times``."""
        self.ego = ego
        self.times = np.asarray(times, dtype=np.float64)
        e_xy, e_yaw = ego.path.pose(ego.s_at(self.times))
        # Ego body centre: 1.3 m ahead of the rear axle.
        body = e_xy + 1.3 * np.stack([np.cos(e_yaw), np.sin(e_yaw)], axis=1)
        self._circ_xy: list[np.ndarray] = []  # (T, 2) centre track of every agent circle
        self._circ_r: list[float] = []
        self._n_done = 0
        xy, r = circles(body, e_yaw, 4.3, 1.74)
        self._ego_circ = (xy, np.full(len(xy), r))

    def _agentcircles(self) -> tuple[np.ndarray, np.ndarray]:
        """(C, T, 2) circle tracks and (C,) radii of all agents (cached incrementally)."""
        for ag in self.agents[self._n_done:]:
            poses = [agent_pose(ag, t, self.ego) for t in self.times]
            xy = np.array([p for p, _ in poses])
            yaw = np.array([y for _, y in poses])
            cxy, r = circles(xy, yaw, float(ag.wlh[1]), float(ag.wlh[0]))
            self._circ_xy.extend(cxy)
            self._circ_r.extend([r] * len(cxy))
        self._n_done = len(self.agents)
        if not self._circ_xy:
            return np.zeros((0, len(self.times), 2)), np.zeros(0)
        return np.stack(self._circ_xy), np.asarray(self._circ_r)

    def clear_of_agents(
        self, trajectory: Trajectory, wlh: np.ndarray, margin: float = 0.3
    ) -> bool:
        """True when a new object of size ``wlh`` following ``trajectory(t) -> (xy, yaw)``
        keeps ``margin`` metres from every agent and from the ego at all ``self.times``
        (always True before ``set_times``). Objects are covered by chains of circles along
        their length, so long vehicles in neighbouring lanes do not count as meeting.
        """
        if self.times is None:
            return True
        poses = [trajectory(t) for t in self.times]
        xy = np.array([np.asarray(p, dtype=np.float64) for p, _ in poses])
        yaw = np.array([float(y) for _, y in poses])
        q, rq = circles(xy, yaw, float(wlh[1]), float(wlh[0]))  # (n, T, 2)
        others = [self._ego_circ, self._agentcircles()]
        for oxy, orad in others:
            if len(orad) == 0:
                continue
            for qc in q:
                d = np.linalg.norm(oxy - qc[None], axis=2)  # (C, T)
                if (d < (orad + rq + margin)[:, None]).any():
                    return False
        return True

    def add_agent(
        self,
        cls: str,
        kind: str,
        params: dict,
        attrs: tuple[str, str] | None = None,
        wlh: np.ndarray | None = None,
        rider: bool = True,
    ) -> Agent:
        """Add an agent of class ``cls`` moving as ``kind``/``params`` (see ``agent_pose``)."""
        wlh = self.size(cls) if wlh is None else wlh
        if cls in ("bicycle", "motorcycle"):
            rider = rider and kind != "static"
            attrs = ("cycle.with_rider", "cycle.with_rider") if rider else (
                "cycle.without_rider", "cycle.without_rider"
            )
            if rider:
                wlh = wlh.copy()
                wlh[2] = round(wlh[2] + 0.35, 3)
        elif attrs is None:
            attrs = ATTR_PED if cls == "pedestrian" else ATTR_VEHICLE
        parts = tuple(agent_parts(cls, wlh, self.colour(cls), rider))
        ag = Agent(cls, wlh, parts, kind, attrs[0], attrs[1], params)
        self.agents.append(ag)
        if kind == "static":
            self.occupied.append((np.asarray(params["xy"]), 0.5 * float(np.hypot(wlh[0], wlh[1]))))
        return ag

    def add_static(
        self,
        cls: str,
        xy: np.ndarray,
        yaw: float,
        attrs: tuple[str, str] | None = None,
        wlh: np.ndarray | None = None,
        check: bool = True,
    ) -> bool:
        """Add a standing agent unless (``check``) it would meet another object."""
        wlh = self.size(cls) if wlh is None else wlh
        r = 0.5 * float(np.hypot(wlh[0], wlh[1]))
        if check and not self.free(xy, r):
            return False
        if check and not self.clear_of_agents(lambda t: (xy, yaw), wlh):
            return False
        self.add_agent(cls, "static", {"xy": np.asarray(xy, float), "yaw": float(yaw)}, attrs, wlh)
        return True

    def part(
        self,
        xy: np.ndarray,
        z0: float,
        length: float,
        width: float,
        height: float,
        yaw: float,
        rgb: tuple[float, float, float] | np.ndarray,
        material: str,
    ) -> None:
        """Add an unannotated scenery box with its bottom at ``z0``."""
        self.s_cen.append(np.array([xy[0], xy[1], z0 + height / 2.0]))
        self.s_half.append(np.array([length, width, height]) / 2.0)
        self.s_yaw.append(float(yaw))
        self.s_rgb.append(tuple(float(c) for c in rgb))
        self.s_refl.append(REFLECTIVITY[material])

    def scenery(self) -> Primitives:
        """The scenery parts as one set of boxes."""
        n = len(self.s_cen)
        return Primitives(
            np.asarray(self.s_cen, dtype=np.float64).reshape(n, 3),
            np.asarray(self.s_half, dtype=np.float64).reshape(n, 3),
            np.asarray(self.s_yaw, dtype=np.float64).reshape(n),
            np.asarray(self.s_rgb, dtype=np.float32).reshape(n, 3),
            np.asarray(self.s_refl, dtype=np.float32).reshape(n),
            np.full(n, -1, dtype=np.int32),
        )
