"""Procedural worlds: roads, an ego trajectory, agents of the 10 nuScenes classes and scenery.

A :class:`World` is built once per scene from a seeded generator and then queried at any time:
``ego_pose(t)`` and ``agent_states(t)`` are pure functions of time, so LiDAR sweeps, camera
frames, CAN bus messages and annotations all agree by construction.

Geometry is made of oriented boxes ("parts"). An agent is a few parts inside its annotation
box (a car = chassis with wheels + body + cabin); scenery (kerbs, walls, poles, trees,
bollards) is parts with no annotation. The ground is the plane z = 0 with a material raster
(asphalt, markings, sidewalk, grass) that both the LiDAR (intensity) and cameras (colour) read.
Frames: everything here is in the global (map) frame, x east, y north, z up, metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# ---------------------------------------------------------------------------------------------
# Classes, categories, sizes
# ---------------------------------------------------------------------------------------------

# Detection class -> nuScenes category name written to the category table.
CLASS_CATEGORY: dict[str, str] = {
    "car": "vehicle.car",
    "truck": "vehicle.truck",
    "bus": "vehicle.bus.rigid",
    "trailer": "vehicle.trailer",
    "construction_vehicle": "vehicle.construction",
    "pedestrian": "human.pedestrian.adult",
    "motorcycle": "vehicle.motorcycle",
    "bicycle": "vehicle.bicycle",
    "traffic_cone": "movable_object.trafficcone",
    "barrier": "movable_object.barrier",
}

# Mean and spread of (width, length, height), metres, close to nuScenes' per-class statistics.
CLASS_SIZE: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "car": ((1.95, 4.62, 1.73), (0.12, 0.35, 0.15)),
    "truck": ((2.52, 6.94, 2.84), (0.2, 1.0, 0.35)),
    "bus": ((2.94, 11.19, 3.47), (0.08, 0.8, 0.15)),
    "trailer": ((2.92, 12.28, 3.87), (0.1, 1.2, 0.2)),
    "construction_vehicle": ((2.82, 6.55, 3.20), (0.15, 0.6, 0.3)),
    "pedestrian": ((0.67, 0.73, 1.77), (0.06, 0.08, 0.1)),
    "motorcycle": ((0.77, 2.11, 1.47), (0.06, 0.12, 0.08)),
    "bicycle": ((0.61, 1.70, 1.30), (0.05, 0.1, 0.06)),
    "traffic_cone": ((0.41, 0.42, 1.07), (0.04, 0.04, 0.08)),
    "barrier": ((2.53, 0.50, 0.98), (0.25, 0.05, 0.05)),
}

# LiDAR reflectivity (0-1, scaled to nuScenes-like 0-255 intensity) of named materials.
REFLECTIVITY: dict[str, float] = {
    "paint": 0.35,
    "glass": 0.08,
    "tire": 0.05,
    "skin": 0.25,
    "cloth": 0.2,
    "metal": 0.45,
    "retro": 0.95,  # retro-reflective cone stripes, plates, barrier sheeting
    "plastic": 0.3,
    "concrete": 0.22,
    "brick": 0.18,
    "wood": 0.15,
    "foliage": 0.12,
}

# Ground materials in the ground raster (uint8 codes) with LiDAR reflectivity and RGB colour.
GROUND_ASPHALT, GROUND_MARKING, GROUND_SIDEWALK, GROUND_GRASS, GROUND_LOT = 0, 1, 2, 3, 4
GROUND_REFLECTIVITY = np.array([0.06, 0.55, 0.14, 0.08, 0.07], dtype=np.float32)
GROUND_RGB = np.array(
    [[82, 84, 88], [225, 225, 215], [160, 156, 148], [78, 112, 58], [92, 92, 96]], dtype=np.uint8
)
GROUND_RES_M = 0.2  # ground raster resolution, metres per cell

VEHICLE_COLOURS = np.array(
    [
        [200, 30, 30],
        [30, 60, 170],
        [230, 230, 230],
        [25, 25, 28],
        [130, 130, 135],
        [190, 160, 40],
        [40, 120, 70],
        [150, 80, 30],
        [90, 20, 60],
        [170, 190, 210],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class PartSpec:
    """One box part of an object in the object's local frame.

    Attributes:
        center_m: (3,) centre, local frame (x along length, z up from the object's bottom).
        size_m: (3,) full extent along local x, y, z (length, width, height).
        rgb: colour 0-255.
        reflectivity: LiDAR reflectivity 0-1.

    """

    center_m: tuple[float, float, float]
    size_m: tuple[float, float, float]
    rgb: tuple[float, float, float]
    reflectivity: float


def _p(cx, cy, z0, lx, wy, hz, rgb, material) -> PartSpec:
    """Part from its centre x/y, bottom z and extents (local frame)."""
    return PartSpec(
        (float(cx), float(cy), float(z0 + hz / 2.0)),
        (float(lx), float(wy), float(hz)),
        tuple(float(c) for c in rgb),
        REFLECTIVITY[material],
    )


# Lamp colours above 255 make them glow: they stay bright after a dark exposure (night).
HEADLAMP_RGB = (600.0, 590.0, 520.0)
TAIL_LAMP_RGB = (560.0, 40.0, 30.0)


def _lamps(length: float, width: float, z0: float, height: float, front: bool) -> list[PartSpec]:
    """Tail lamps (and headlamps when ``front``) in the 4 cm left free at each end of the body
    (local frame: +x is the front).
    """
    parts = []
    for y in (-1.0, 1.0):
        yy = y * (width / 2 - 0.18)
        parts.append(_p(-(length / 2 - 0.02), yy, z0, 0.03, 0.25, height, TAIL_LAMP_RGB, "retro"))
        if front:
            parts.append(_p(length / 2 - 0.02, yy, z0, 0.03, 0.25, height, HEADLAMP_RGB, "retro"))
    return parts


def agent_parts(cls: str, wlh: np.ndarray, colour: np.ndarray, with_rider: bool) -> list[PartSpec]:
    """Box parts of an agent of class ``cls`` inside its ``wlh`` annotation box.

    Parts stay strictly inside the annotation box (1 cm margin) so that every LiDAR return on
    an agent falls inside its box.
    """
    w, length, h = (float(v) for v in wlh)
    m = 0.01
    L, W, H = length - 2 * m, w - 2 * m, h - 2 * m  # noqa: N806 - short extents
    dark = (30, 30, 32)
    glass = (60, 80, 100)
    col = tuple(colour)
    if cls == "car":
        return [
            _p(0, 0, m, L * 0.78, W * 0.96, 0.36 * H, dark, "tire"),
            _p(0, 0, m + 0.3 * H, L - 0.08, W, 0.32 * H, col, "paint"),
            _p(-0.06 * L, 0, m + 0.6 * H, 0.52 * L, W * 0.9, 0.4 * H, glass, "glass"),
            *_lamps(L, W, m + 0.44 * H, 0.1 * H, front=True),
        ]
    if cls == "truck":
        return [
            _p(0, 0, m, L * 0.9, W * 0.9, 0.3 * H, dark, "tire"),
            _p(0.38 * L - 0.04, 0, m + 0.25 * H, 0.22 * L - 0.08, W, 0.72 * H, col, "paint"),
            _p(-0.12 * L + 0.04, 0, m + 0.25 * H, 0.76 * L - 0.08, W, 0.75 * H,
               (210, 210, 205), "metal"),
            *_lamps(L, W, m + 0.3 * H, 0.06 * H, front=True),
        ]
    if cls == "bus":
        return [
            _p(0, 0, m, L * 0.94, W * 0.94, 0.12 * H, dark, "tire"),
            _p(0, 0, m + 0.1 * H, L - 0.08, W, 0.45 * H, col, "paint"),
            _p(0, 0, m + 0.55 * H, L - 0.08, W * 0.99, 0.45 * H, glass, "glass"),
            *_lamps(L, W, m + 0.18 * H, 0.05 * H, front=True),
        ]
    if cls == "trailer":
        return [
            _p(-0.3 * L, 0, m, L * 0.3, W * 0.85, 0.3 * H, dark, "tire"),
            _p(0.44 * L, 0, m + 0.22 * H, L * 0.06, W * 0.3, 0.1 * H, dark, "metal"),
            _p(0.04, 0, m + 0.3 * H, L - 0.08, W, 0.7 * H, (200, 200, 195), "metal"),
            *_lamps(L, W, m + 0.3 * H, 0.05 * H, front=False),
        ]
    if cls == "construction_vehicle":
        yellow = (225, 170, 20)
        return [
            _p(0, 0, m, L * 0.8, W, 0.3 * H, dark, "tire"),
            _p(-0.1 * L, 0, m + 0.28 * H, 0.75 * L, W * 0.95, 0.35 * H, yellow, "paint"),
            _p(-0.2 * L, 0.15 * W, m + 0.6 * H, 0.3 * L, W * 0.5, 0.4 * H, glass, "glass"),
            _p(0.3 * L, -0.1 * W, m + 0.45 * H, 0.4 * L, W * 0.2, 0.25 * H, yellow, "metal"),
        ]
    if cls == "pedestrian":
        return [
            _p(0, 0, m, L * 0.35, W * 0.45, 0.47 * H, (40, 45, 70), "cloth"),
            _p(0, 0, m + 0.47 * H, L * 0.45, W * 0.9, 0.38 * H, col, "cloth"),
            _p(0, 0, m + 0.86 * H, L * 0.3, W * 0.35, 0.14 * H, (200, 160, 130), "skin"),
        ]
    if cls in ("motorcycle", "bicycle"):
        parts = [
            _p(0, 0, m, L, W * 0.25, 0.5 * H if with_rider else 0.75 * H, dark, "tire"),
            _p(0, 0, m + 0.3 * H, L * 0.6, W * 0.4, 0.25 * H, col, "metal"),
        ]
        if with_rider:
            parts.append(_p(-0.05 * L, 0, m + 0.5 * H, 0.3 * L, W, 0.5 * H, (60, 60, 90), "cloth"))
        return parts
    if cls == "traffic_cone":
        return [
            _p(0, 0, m, L, W, 0.06 * H, dark, "plastic"),
            _p(0, 0, m + 0.06 * H, L * 0.6, W * 0.6, 0.45 * H, (245, 110, 20), "retro"),
            _p(0, 0, m + 0.51 * H, L * 0.35, W * 0.35, 0.49 * H, (250, 250, 250), "retro"),
        ]
    if cls == "barrier":
        return [
            _p(0, 0, m, L * 0.8, W, 0.55 * H, (235, 235, 235), "plastic"),
            _p(0, 0, m + 0.55 * H, L * 0.6, W, 0.45 * H, (220, 40, 30), "retro"),
        ]
    raise ValueError(f"unknown class {cls!r}")


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Path:
    """A polyline resampled every ``STEP`` metres, with arc length and heading.

    Attributes:
        xy: (M, 2) float64 points, metres.
        s: (M,) cumulative arc length, metres.
        heading: (M,) tangent heading, radians.

    """

    xy: np.ndarray
    s: np.ndarray
    heading: np.ndarray

    STEP = 0.25

    @staticmethod
    def from_polyline(points: np.ndarray) -> Path:
        """Resample a dense polyline uniformly in arc length."""
        pts = np.asarray(points, dtype=np.float64)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        keep = np.concatenate([[True], seg > 1e-9])
        pts = pts[keep]
        s_raw = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        s = np.arange(0.0, s_raw[-1], Path.STEP)
        xy = np.stack([np.interp(s, s_raw, pts[:, 0]), np.interp(s, s_raw, pts[:, 1])], axis=1)
        d = np.gradient(xy, axis=0)
        heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        return Path(xy, s, heading)

    @property
    def length(self) -> float:
        """Arc length, metres."""
        return float(self.s[-1])

    def pose(self, s: np.ndarray | float, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Points ``offset`` metres left of the path at arc length(s) ``s``, and heading(s).

        Beyond the ends the path is extended straight.
        """
        s_arr = np.atleast_1d(np.asarray(s, dtype=np.float64))
        sc = np.clip(s_arr, 0.0, self.length)
        x = np.interp(sc, self.s, self.xy[:, 0])
        y = np.interp(sc, self.s, self.xy[:, 1])
        hd = np.interp(sc, self.s, self.heading)
        extra = s_arr - sc
        x = x + extra * np.cos(hd) - offset * np.sin(hd)
        y = y + extra * np.sin(hd) + offset * np.cos(hd)
        return np.stack([x, y], axis=1), hd

    def __post_init__(self) -> None:
        k = np.gradient(self.heading, self.s) if len(self.s) > 1 else np.zeros(len(self.s))
        object.__setattr__(self, "_signed_k", k)

    def curvature(self, s: np.ndarray) -> np.ndarray:
        """|d heading / ds| at arc length(s) ``s``, 1/metres."""
        return np.abs(self.signed_curvature(s))

    def signed_curvature(self, s: np.ndarray) -> np.ndarray:
        """Signed curvature d heading / ds (left turns positive) at arc length(s) ``s``, 1/m."""
        return np.interp(np.clip(s, 0, self.length), self.s, self._signed_k)

    def project(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length and signed lateral offset (left +) of points ``xy`` (K, 2)."""
        d2 = ((xy[:, None, :] - self.xy[None, ::4, :]) ** 2).sum(-1)
        idx = np.argmin(d2, axis=1) * 4
        rel = xy - self.xy[idx]
        hd = self.heading[idx]
        along = rel[:, 0] * np.cos(hd) + rel[:, 1] * np.sin(hd)
        lat = -rel[:, 0] * np.sin(hd) + rel[:, 1] * np.cos(hd)
        return self.s[idx] + along, lat


def fillet_polyline(waypoints: list[tuple[float, float]], radii: list[float]) -> np.ndarray:
    """Dense polyline through ``waypoints`` with each inner corner rounded by an arc.

    Args:
        waypoints: K >= 2 points.
        radii: K - 2 fillet radii (metres), one per inner waypoint.

    Returns:
        (M, 2) float64 points.

    """
    wp = np.asarray(waypoints, dtype=np.float64)
    out = [wp[0]]
    for i in range(1, len(wp) - 1):
        a, b, c = wp[i - 1], wp[i], wp[i + 1]
        u = (a - b) / np.linalg.norm(a - b)
        v = (c - b) / np.linalg.norm(c - b)
        theta = np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))
        r = radii[i - 1]
        if theta > np.pi - 1e-6:  # straight through
            out.append(b)
            continue
        tdist = r / np.tan(theta / 2.0)
        p1, p2 = b + u * tdist, b + v * tdist
        bis = (u + v) / np.linalg.norm(u + v)
        centre = b + bis * (r / np.sin(theta / 2.0))
        a1 = np.arctan2(p1[1] - centre[1], p1[0] - centre[0])
        a2 = np.arctan2(p2[1] - centre[1], p2[0] - centre[0])
        da = (a2 - a1 + np.pi) % (2 * np.pi) - np.pi
        n = max(8, int(abs(da) * r / 0.25))
        ang = a1 + da * np.linspace(0.0, 1.0, n)
        out.extend(np.stack([centre[0] + r * np.cos(ang), centre[1] + r * np.sin(ang)], axis=1))
    out.append(wp[-1])
    pts = [np.asarray(out[0])]
    for p in out[1:]:
        p = np.asarray(p)
        # Densify straight runs so that arc-length resampling sees them.
        n = max(1, int(np.linalg.norm(p - pts[-1]) / 1.0))
        start = pts[-1]
        for k in range(1, n + 1):
            pts.append(start + (p - start) * (k / n))
    return np.asarray(pts, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Road:
    """A road: centreline and cross-section, metres.

    Attributes:
        path: centreline.
        half_width_m: asphalt half width (kerb line).
        lane_width_m: width of one driving lane.
        lanes_per_dir: driving lanes in each direction.
        sidewalk_m: sidewalk width beyond the kerb (0 = none, e.g. highway shoulder grass).
        kerbs: whether raised kerbs line the asphalt.
        centre_line: "double" (urban), "barrier" (highway median), "none".

    """

    path: Path
    half_width_m: float
    lane_width_m: float
    lanes_per_dir: int
    sidewalk_m: float
    kerbs: bool = True
    centre_line: str = "double"


# ---------------------------------------------------------------------------------------------
# Ego motion
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EgoMotion:
    """Ego arc length, speed and acceleration sampled at ``DT`` along ``path``.

    Attributes:
        path: the driven path (lane centre).
        t: (T,) seconds from scene start.
        s: (T,) arc length, metres.
        v: (T,) speed, m/s.
        a: (T,) longitudinal acceleration, m/s^2.
        brake: (T,) brake command 0-1 (from negative acceleration).
        aeb: (T,) bool, an emergency brake is active (deceleration beyond comfort for an
            obstacle in the path).

    """

    path: Path
    t: np.ndarray
    s: np.ndarray
    v: np.ndarray
    a: np.ndarray
    brake: np.ndarray
    aeb: np.ndarray

    DT = 0.01

    def s_at(self, t: np.ndarray | float) -> np.ndarray:
        """Arc length at time(s) ``t``; before t = 0 the ego is extrapolated at its initial
        speed (cameras expose up to 43 ms before the first LiDAR sweep).
        """
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
        return np.interp(tt, self.t, self.s) + np.minimum(tt, 0.0) * self.v[0]

    def at(self, t: np.ndarray | float) -> dict[str, np.ndarray]:
        """Interpolated state at time(s) ``t``: xy, yaw, s, v, a, yaw_rate, brake, aeb."""
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
        s = self.s_at(tt)
        v = np.interp(tt, self.t, self.v)
        a = np.interp(tt, self.t, self.a)
        xy, yaw = self.path.pose(s)
        # yaw rate = v * curvature (signed)
        k = self.path.signed_curvature(s)
        idx = np.clip(np.round(tt / self.DT).astype(np.int64), 0, len(self.t) - 1)
        return {
            "xy": xy,
            "yaw": yaw,
            "s": s,
            "v": v,
            "a": a,
            "yaw_rate": v * k,
            "brake": np.interp(tt, self.t, self.brake),
            "aeb": self.aeb[idx],
        }


def plan_speed(
    path: Path,
    duration_s: float,
    v_cruise: float,
    v0: float,
    stops: list[tuple[float, float, float]],
    a_max: float = 1.6,
    a_lat_max: float = 2.0,
    comfort_decel: float = 2.5,
) -> EgoMotion:
    """Integrate a longitudinal speed profile along ``path``.

    Args:
        path: driven path.
        duration_s: seconds to simulate (a little margin is added).
        v_cruise: target speed, m/s.
        v0: initial speed, m/s.
        stops: (s_stop, hold_s, decel) triples: come to rest just before arc length
            ``s_stop``, wait ``hold_s`` seconds (inf = for good), then drive on. ``decel`` above
            ``comfort_decel`` marks an emergency stop: braking starts late, at up to that
            deceleration, and sets ``aeb`` while it lasts.
        a_max: max acceleration, m/s^2.
        a_lat_max: lateral acceleration limit through curves, m/s^2.
        comfort_decel: normal braking deceleration, m/s^2.

    Returns:
        The sampled motion.

    """
    dt = EgoMotion.DT
    n = int(np.ceil((duration_s + 1.0) / dt)) + 1
    t = np.arange(n) * dt
    s = np.zeros(n)
    v = np.zeros(n)
    a = np.zeros(n)
    aeb = np.zeros(n, dtype=bool)
    s[0], v[0] = 0.0, v0
    look = np.linspace(0.0, 40.0, 41)
    state = [{"s": st[0], "hold": st[1], "decel": st[2], "since": None, "done": False,
              "braking": False} for st in stops]
    for i in range(1, n):
        si, vi = s[i - 1], v[i - 1]
        # Curvature limit looking ahead: v^2 <= a_lat/k at each point, reachable by braking.
        k = path.curvature(si + look)
        v_curve = np.sqrt(a_lat_max / np.maximum(k, 1e-4))
        v_allow = np.sqrt(v_curve**2 + 2 * comfort_decel * look).min()
        v_des = min(v_cruise, v_allow)
        acc = float(np.clip((v_des - vi) / 0.8, -comfort_decel * 1.2, a_max))
        # Smooth the drive command a little (powertrain lag).
        acc = 0.7 * a[i - 1] + 0.3 * acc if a[i - 1] > -comfort_decel else acc
        holding = False
        for st in state:
            if st["done"]:
                continue
            gap = st["s"] - si
            if st["since"] is not None:
                if t[i] - st["since"] >= st["hold"]:
                    st["done"] = True
                    continue
                holding = True
                continue
            if vi < 0.05 and gap < 1.0:
                st["since"] = t[i]
                holding = True
                continue
            emergency = st["decel"] > comfort_decel
            need = vi**2 / (2.0 * max(gap - 0.2, 0.05))
            # Normal stops brake as soon as ~60% of comfort deceleration is needed; emergency
            # stops only once comfort braking can no longer make it.
            trigger = 0.75 * st["decel"] if emergency else 0.6 * comfort_decel
            if st["braking"] or need > trigger:
                st["braking"] = True
                acc = min(acc, -min(need, st["decel"] if emergency else 2.0 * comfort_decel))
                if emergency and vi > 0.05:
                    aeb[i] = True
        if holding:
            acc = -min(vi / dt, comfort_decel)
        vn = max(vi + acc * dt, 0.0)
        a[i] = (vn - vi) / dt
        v[i] = vn
        s[i] = si + 0.5 * (vi + vn) * dt
    brake = np.clip(-a / 8.0, 0.0, 1.0)
    return EgoMotion(path, t, s, v, a, brake, aeb)


# ---------------------------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------------------------


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
class GroundMap:
    """Ground material raster over the scene area.

    Attributes:
        material: (H, W) uint8 material codes (GROUND_*); cell (r, c) covers raster-frame
            x in [c, c+1) * res_m and y in [r, r+1) * res_m.
        rgb: (H, W, 3) uint8 camera colour with texture noise.
        origin_xy: (2,) global x, y of cell (0, 0)'s corner, metres.
        res_m: metres per cell.
        yaw: heading of the raster x axis in the global frame (the raster is aligned with
            the scene's road so that it stays small), radians.

    """

    material: np.ndarray
    rgb: np.ndarray
    origin_xy: np.ndarray
    res_m: float
    yaw: float = 0.0

    def to_raster(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) global x, y to raster-frame metres (divide by ``res_m`` for cells)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        d = np.asarray(xy, dtype=np.float64) - self.origin_xy
        return np.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c], axis=1)


@dataclass(frozen=True, eq=False)
class World:
    """One scene's world.

    Attributes:
        scenario: scenario kind. condition: "clear" / "fog" / "rain" / "night".
        description: human-readable scene description (goes into the scene table).
        roads: roads (global frame).
        ego: ego motion.
        agents: annotated agents.
        scenery: static unannotated parts (global frame).
        ground: ground raster.
        duration_s: scene length, seconds.
        map_name: location name for the log table.

    """

    scenario: str
    condition: str
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


# ---------------------------------------------------------------------------------------------
# Scene construction
# ---------------------------------------------------------------------------------------------

FRONT_OVERHANG_M = 3.45  # rear axle (ego origin) to front bumper
URBAN_HALF_M, URBAN_LANE_M, URBAN_SIDEWALK_M = 7.4, 3.5, 3.4
# Bike lane centre; parked vehicles keep PARK_KERB_GAP_M from the kerb (7.4 m) so that even
# a bus (2.94 m) clears a motorcycle (0.77 m) in the bike lane.
BIKE_LANE_D, PARK_KERB_GAP_M = 3.85, 0.15
HIGHWAY_LANE_M, HIGHWAY_HALF_M = 3.7, 15.6  # 3 lanes + a 4.5 m shoulder (work zones)
MAP_NAMES = (
    "singapore-onenorth",
    "boston-seaport",
    "singapore-queenstown",
    "singapore-hollandvillage",
)


class _Builder:
    """Accumulates agents and scenery parts while a scene is laid out."""

    def __init__(self, rng: np.random.Generator, scale: float) -> None:
        self.rng = rng
        self.scale = scale
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

    # -- helpers ------------------------------------------------------------------------------
    def size(self, cls: str) -> np.ndarray:
        mean, sd = CLASS_SIZE[cls]
        z = np.clip(self.rng.standard_normal(3), -2.0, 2.0)
        return np.round(np.asarray(mean) + z * np.asarray(sd), 3)

    def colour(self, cls: str) -> np.ndarray:
        if cls == "pedestrian":
            return self.rng.uniform(30, 220, 3).round()
        if cls == "bus":
            return np.array([[200, 40, 40], [240, 240, 235], [30, 90, 170]])[self.rng.integers(3)]
        base = VEHICLE_COLOURS[self.rng.integers(len(VEHICLE_COLOURS))]
        return np.clip(base + self.rng.normal(0, 8, 3), 0, 255).round()

    def free(self, xy: np.ndarray, radius: float) -> bool:
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
        xy, r = _circles(body, e_yaw, 4.3, 1.74)
        self._ego_circ = (xy, np.full(len(xy), r))

    def _agent_circles(self) -> tuple[np.ndarray, np.ndarray]:
        """(C, T, 2) circle tracks and (C,) radii of all agents (cached incrementally)."""
        for ag in self.agents[self._n_done:]:
            poses = [agent_pose(ag, t, self.ego) for t in self.times]
            xy = np.array([p for p, _ in poses])
            yaw = np.array([y for _, y in poses])
            cxy, r = _circles(xy, yaw, float(ag.wlh[1]), float(ag.wlh[0]))
            self._circ_xy.extend(cxy)
            self._circ_r.extend([r] * len(cxy))
        self._n_done = len(self.agents)
        if not self._circ_xy:
            return np.zeros((0, len(self.times), 2)), np.zeros(0)
        return np.stack(self._circ_xy), np.asarray(self._circ_r)

    def clear_of_agents(self, trajectory, wlh: np.ndarray, margin: float = 0.3) -> bool:
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
        q, rq = _circles(xy, yaw, float(wlh[1]), float(wlh[0]))  # (n, T, 2)
        others = [self._ego_circ, self._agent_circles()]
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
        self, cls: str, xy: np.ndarray, yaw: float, attrs=None, wlh=None, check=True
    ) -> bool:
        wlh = self.size(cls) if wlh is None else wlh
        r = 0.5 * float(np.hypot(wlh[0], wlh[1]))
        if check and not self.free(xy, r):
            return False
        if check and not self.clear_of_agents(lambda t: (xy, yaw), wlh):
            return False
        self.add_agent(cls, "static", {"xy": np.asarray(xy, float), "yaw": float(yaw)}, attrs, wlh)
        return True

    def part(self, xy, z0, length, width, height, yaw, rgb, material) -> None:
        self.s_cen.append(np.array([xy[0], xy[1], z0 + height / 2.0]))
        self.s_half.append(np.array([length, width, height]) / 2.0)
        self.s_yaw.append(float(yaw))
        self.s_rgb.append(tuple(float(c) for c in rgb))
        self.s_refl.append(REFLECTIVITY[material])

    def scenery(self) -> Primitives:
        n = len(self.s_cen)
        return Primitives(
            np.asarray(self.s_cen, dtype=np.float64).reshape(n, 3),
            np.asarray(self.s_half, dtype=np.float64).reshape(n, 3),
            np.asarray(self.s_yaw, dtype=np.float64).reshape(n),
            np.asarray(self.s_rgb, dtype=np.float32).reshape(n, 3),
            np.asarray(self.s_refl, dtype=np.float32).reshape(n),
            np.full(n, -1, dtype=np.int32),
        )


def _on_other_road(xy: np.ndarray, roads: list[Road], own: Road, margin: float) -> bool:
    """True when ``xy`` lies on (or within ``margin`` of) a road other than ``own``."""
    for rd in roads:
        if rd is own:
            continue
        s, lat = rd.path.project(xy[None])
        near = abs(lat[0]) < rd.half_width_m + rd.sidewalk_m + margin
        if near and -5 < s[0] < rd.path.length + 5:
            return True
    return False


def _road_scenery(b: _Builder, road: Road, roads: list[Road], s_range: tuple[float, float]) -> None:
    """Kerbs, poles, trees, buildings or guard rails along ``road`` within ``s_range``."""
    rng = b.rng
    s0, s1 = max(0.0, s_range[0]), min(road.path.length, s_range[1])
    hw = road.half_width_m
    for side in (-1.0, 1.0):
        if road.kerbs:
            for s in np.arange(s0, s1, 3.0):
                xy, hd = road.path.pose(s + 1.5, side * (hw + 0.15))
                if _on_other_road(xy[0], roads, road, 0.5):
                    continue
                b.part(xy[0], 0.0, 3.0, 0.3, 0.15, hd[0], (150, 150, 145), "concrete")
        if road.centre_line == "barrier" and side > 0:
            for s in np.arange(s0, s1, 4.0):
                xy, hd = road.path.pose(s + 2.0, 0.0)
                b.part(xy[0], 0.0, 4.0, 0.6, 0.85, hd[0], (175, 175, 170), "concrete")
        if road.sidewalk_m == 0.0:
            # Highway: guard rail on posts beyond the shoulder, trees further out.
            for s in np.arange(s0, s1, 4.0):
                xy, hd = road.path.pose(s + 2.0, side * (hw + 0.6))
                b.part(xy[0], 0.45, 4.0, 0.12, 0.32, hd[0], (190, 195, 200), "metal")
                b.part(xy[0], 0.0, 0.12, 0.12, 0.45, hd[0], (120, 120, 120), "metal")
            for s in np.arange(s0, s1, rng.uniform(6, 12)):
                d = side * (hw + rng.uniform(4.0, 18.0))
                xy, _ = road.path.pose(s, d)
                _tree(b, xy[0])
            continue
        edge = hw + 0.3
        for s in np.arange(s0 + rng.uniform(0, 20), s1, rng.uniform(22, 30)):
            xy, hd = road.path.pose(s, side * (hw + 0.45))
            if _on_other_road(xy[0], roads, road, 0.5):
                continue
            b.part(xy[0], 0.0, 0.22, 0.22, 6.5, hd[0], (110, 110, 115), "metal")
            arm, _ = road.path.pose(s, side * (edge - 1.0))
            b.part(arm[0], 6.3, 0.2, 3.0, 0.2, hd[0], (110, 110, 115), "metal")
            lamp, _ = road.path.pose(s, side * (edge - 2.3))
            b.lamps.append(lamp[0])
            b.occupied.append((xy[0], 0.3))
        for s in np.arange(s0 + rng.uniform(0, 10), s1, rng.uniform(9, 16)):
            xy, _ = road.path.pose(s, side * (edge + road.sidewalk_m - 0.9))
            if _on_other_road(xy[0], roads, road, 1.0) or not b.free(xy[0], 1.0):
                continue
            _tree(b, xy[0])
            b.occupied.append((xy[0], 0.4))
        s = s0 + rng.uniform(0, 8)
        while s < s1:
            length = rng.uniform(10, 30)
            depth = rng.uniform(10, 16)
            setback = edge + road.sidewalk_m + rng.uniform(0.5, 5.0)
            xy, hd = road.path.pose(s + length / 2, side * (setback + depth / 2))
            corners_ok = not _on_other_road(xy[0], roads, road, depth / 2 + length / 2)
            if corners_ok and rng.uniform() < 0.85:
                height = rng.uniform(5, 22)
                tone = rng.uniform(0.6, 1.1)
                base = np.array([[170, 110, 90], [200, 195, 185], [150, 150, 160], [190, 170, 130]])
                rgb = np.clip(base[rng.integers(4)] * tone, 0, 255)
                b.part(xy[0], 0.0, length, depth, height, hd[0], rgb, "brick")
            s += length + rng.uniform(0.5, 8)


def _tree(b: _Builder, xy: np.ndarray) -> None:
    rng = b.rng
    h_trunk = rng.uniform(1.8, 3.0)
    crown = rng.uniform(2.0, 3.6)
    yaw = rng.uniform(0, np.pi)
    b.part(xy, 0.0, 0.3, 0.3, h_trunk + 0.3, yaw, (90, 65, 40), "wood")
    g = rng.uniform(0.7, 1.1)
    b.part(xy, h_trunk, crown, crown, crown * rng.uniform(0.8, 1.3), yaw, (50 * g, 105 * g, 45 * g),
           "foliage")


def _work_zone(b: _Builder, road: Road, s_w: float, d_cones: float) -> None:
    """A work zone beside the traffic: cones and barriers along the line ``d_cones`` (offset
    from ``road``'s centreline) from arc length ``s_w``, and beyond that line a construction
    vehicle, a trailer, a worker and a parked bicycle.
    """
    rng = b.rng
    sign = np.sign(d_cones)
    out = abs(d_cones)
    length = 28.0
    for k, s in enumerate(np.arange(s_w, s_w + length, 3.5)):
        xy, hd = road.path.pose(s, d_cones)
        if k in (0, 4, 7):
            b.add_static("barrier", xy[0], hd[0] + np.pi / 2 + rng.normal(0, 0.05), check=False)
        else:
            b.add_static("traffic_cone", xy[0], rng.uniform(-np.pi, np.pi), check=False)
    xy, hd = road.path.pose(s_w - 2.0, sign * (out + 1.4))
    b.add_static("barrier", xy[0], hd[0], check=False)
    cv = b.size("construction_vehicle")
    xy, hd = road.path.pose(s_w + 8.0, sign * (out + 0.5 + cv[0] / 2))
    b.add_static("construction_vehicle", xy[0], hd[0] + rng.choice([0.0, np.pi]), wlh=cv,
                 attrs=("vehicle.moving", "vehicle.stopped"), check=False)
    tr = b.size("trailer")
    s_tr = s_w + 8.0 + cv[1] / 2 + tr[1] / 2 + 1.5
    xy, hd = road.path.pose(s_tr, sign * (out + 0.5 + tr[0] / 2))
    b.add_static("trailer", xy[0], hd[0], wlh=tr, check=False)
    xy, hd = road.path.pose(s_w + 2.3, sign * (out + 0.6))
    b.add_static("pedestrian", xy[0], hd[0] + rng.uniform(-2, 2), check=False)
    xy, hd = road.path.pose(s_w - 0.8, sign * (out + 1.5))
    b.add_static("bicycle", xy[0], hd[0] + np.pi / 2, check=False)


def _platoon(
    b: _Builder, path: Path, offset: float, speed: float, s_anchor: float, s_lo: float,
    s_hi: float, pick, anchor_cls: str | None = None, gap: tuple[float, float] = (8.0, 35.0),
) -> None:
    """Vehicles in one lane, all at ``speed`` (signed: negative drives against ``path``), so
    they never run into each other; positions at t = 0 fill [s_lo, s_hi] outward from
    ``s_anchor`` (where ``anchor_cls``, if given, is placed).
    """
    rng = b.rng

    def add(cls: str, s_centre: float, wlh: np.ndarray) -> None:
        # Skip a vehicle that would meet an earlier agent (e.g. a pedestrian in the road).
        if b.clear_of_agents(_path_traj(path, s_centre, speed, offset), wlh, margin=0.2):
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


def _junction_traffic(
    b: _Builder, flows: list[tuple[Road, float, float]], ego: EgoMotion, s_stop: float,
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


def _ego_s_at(ego: EgoMotion, t: float) -> float:
    return float(ego.s_at(t)[0])


def _crossing_ok(ego: EgoMotion, road: Road, s_c: float, t0: float, t1: float) -> bool:
    """A pedestrian crossing ``road`` at arc length ``s_c`` during [t0, t1] keeps clear of the
    ego (who drives along ``road``).
    """
    tt = np.linspace(t0 - 1.0, t1 + 1.0, 40)
    xy, _ = road.path.pose(s_c)
    ego_xy, _ = ego.path.pose(ego.s_at(tt))
    return bool(np.all(np.hypot(*(ego_xy - xy[0]).T) > 14.0))


def _traffic(
    b: _Builder,
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
    s_b = s_ego0 + _ego_s_at(ego, duration)
    gap = (8.0 / scale, 35.0 / scale)

    def pick_vehicle() -> str:
        return str(rng.choice(["car"] * 7 + ["truck", "motorcycle"]))

    for k, d in enumerate(lane_centres_oncoming):
        v = rng.uniform(*speed_range)
        # Where a vehicle must be at t = 0 to meet the ego at time T/2 (25 m ahead of it).
        s_meet = s_ego0 + _ego_s_at(ego, duration / 2) + 25.0 + v * duration / 2
        _platoon(b, road.path, d, -v, s_meet if k == 0 else s_meet + rng.uniform(-30, 30),
                 s_a - 20.0, s_b + v * duration + 40.0, pick_vehicle,
                 "bus" if k == 0 else None, gap)
    for d in lane_centres_same:
        v = rng.uniform(*speed_range)
        s_mid = s_ego0 + _ego_s_at(ego, duration / 2) - v * duration / 2
        _platoon(b, road.path, d, v, s_mid + rng.uniform(-20, 20), s_mid - 90.0, s_mid + 90.0,
                 lambda: str(rng.choice(["car"] * 6 + ["truck", "bus", "motorcycle"])), None, gap)
    for side in bike_sides:
        if rng.uniform() < 0.3:
            continue
        v = rng.uniform(3.5, 6.0)
        direction = -side  # right-hand traffic: the right side (-) rides with the path
        s_mid = s_ego0 + _ego_s_at(ego, duration / 2) - direction * v * duration / 2
        _platoon(b, road.path, side * BIKE_LANE_D, direction * v, s_mid + rng.uniform(-20, 20),
                 s_mid - 50.0, s_mid + 50.0,
                 lambda: "bicycle" if rng.uniform() < 0.75 else "motorcycle", None, (6.0, 40.0))


def _urban_roadside(
    b: _Builder, road: Road, ego: EgoMotion, duration: float, s_lo: float, s_hi: float,
    s_mid: float, skip: tuple[float, float, float] | None,
) -> None:
    """Parked vehicles, pedestrians (walking, standing, crossing) along an urban road.

    Called after the moving traffic exists: pedestrians are only placed where they keep clear
    of every agent and of the ego for the whole scene.
    """
    rng = b.rng
    roads = _ALL_ROADS.get(id(b), [])

    def parked_d(side: float, wlh: np.ndarray) -> float:
        return side * (URBAN_HALF_M - PARK_KERB_GAP_M - wlh[0] / 2)

    def in_skip(s: float, side: float, pad: float) -> bool:
        return skip is not None and np.sign(skip[2]) == side and skip[0] - pad < s < skip[1] + pad

    # Guaranteed near-ego instances of the rarer classes at mid-scene.
    for cls, side, ds in (("truck", -1.0, 14.0), ("motorcycle", 1.0, 6.0),
                          ("bicycle", -1.0, -4.0), ("bus", 1.0, 32.0)):
        wlh = b.size(cls)
        for shift in (0.0, -12.0, 12.0, -24.0, 24.0, -36.0):
            sd = -side if in_skip(s_mid + ds + shift, side, 8.0) else side
            xy, hd = road.path.pose(s_mid + ds + shift, parked_d(sd, wlh))
            if _on_other_road(xy[0], roads, road, 1.0):
                continue
            if b.add_static(cls, xy[0], hd[0] + (np.pi if sd > 0 else 0.0), wlh=wlh):
                break
    for side in (-1.0, 1.0):
        s = s_lo + rng.uniform(0, 5)
        while s < s_hi:
            if in_skip(s, side, 8.0):
                s += 6
                continue
            if rng.uniform() < 0.7 * min(b.scale, 1.4):
                cls = str(rng.choice(["car"] * 12 + ["truck", "motorcycle", "bicycle"]))
                wlh = b.size(cls)
                xy, hd = road.path.pose(s + wlh[1] / 2, parked_d(side, wlh))
                if not _on_other_road(xy[0], roads, road, 1.0):
                    b.add_static(cls, xy[0], hd[0] + (np.pi if side > 0 else 0.0), wlh=wlh)
                s += wlh[1] + rng.uniform(0.8, 4.0)
            else:
                s += rng.uniform(3, 12)
    # Pedestrians on the sidewalks: walkers in two walking lines (one per direction, one speed
    # per line so that they never walk through each other), standing people further out.
    edge = URBAN_HALF_M + 0.3
    for side in (-1.0, 1.0):
        for direction, lane in ((1.0, 1.0), (-1.0, 1.8)):
            v = rng.uniform(1.0, 1.5) * direction
            d = side * (edge + lane)
            s = s_mid - 60.0 + rng.uniform(0, 10)
            while s < s_mid + 60.0:
                s0 = s - v * duration / 2
                if not in_skip(s, side, 8.0) and rng.uniform() < 0.5 * b.scale:
                    traj = _path_traj(road.path, s0, v, d)
                    if b.clear_of_agents(traj, PED_WLH):
                        b.add_agent("pedestrian", "path",
                                    {"path": road.path, "s0": s0, "speed": v, "offset": d})
                s += rng.uniform(4.0, 14.0)
        for _ in range(int(round(rng.integers(1, 4) * b.scale))):
            s = s_mid + rng.uniform(-50, 50)
            xy, hd = road.path.pose(s, side * (edge + rng.uniform(2.4, URBAN_SIDEWALK_M - 0.3)))
            if not in_skip(s, side, 5.0) and not _on_other_road(xy[0], roads, road, 0.5):
                b.add_static("pedestrian", xy[0], hd[0] + rng.uniform(-np.pi, np.pi))
    # A standing pedestrian near the ego at mid-scene.
    for ds in (8.0, 14.0, 20.0, 2.0, -6.0):
        xy, hd = road.path.pose(s_mid + ds, -(edge + 2.6))
        if not _on_other_road(xy[0], roads, road, 0.5) and b.add_static(
            "pedestrian", xy[0], hd[0] + np.pi / 2
        ):
            break
    # Pedestrians crossing the road, clear of the ego and of the traffic.
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(12):
            s_c = s_mid + rng.uniform(-30, 50)
            v = rng.uniform(1.1, 1.6)
            width = 2 * (edge + 0.8)
            t0 = rng.uniform(-2.0, duration)
            t1 = t0 + width / v
            side = rng.choice([-1.0, 1.0])
            a, _ = road.path.pose(s_c, side * (edge + 0.8))
            bb, _ = road.path.pose(s_c + rng.uniform(-2, 2), -side * (edge + 0.8))
            params = {"a": a[0], "b": bb[0], "t0": t0, "t1": t1}
            probe = Agent("pedestrian", np.zeros(3), (), "linear", "", "", params)
            if _on_other_road(a[0], roads, road, 0.5) or _on_other_road(bb[0], roads, road, 0.5):
                continue
            if b.clear_of_agents(lambda t, probe=probe: agent_pose(probe, t, None), PED_WLH,
                                 margin=0.8):
                b.add_agent("pedestrian", "linear", params)
                break


PED_WLH = np.array([0.8, 0.8, 1.8])  # conflict-check footprint of a pedestrian


def _circles(xy: np.ndarray, yaw: np.ndarray, length: float, width: float):
    """Cover a (length x width) footprint moving along ``xy`` (T, 2) / ``yaw`` (T,) with a
    chain of n equal circles: returns (n, T, 2) centres and their radius.
    """
    n = max(1, int(np.ceil(length / max(width, 1e-3))))
    seg = length / n
    offs = -length / 2 + seg / 2 + seg * np.arange(n)
    d = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)  # (T, 2)
    centres = xy[None, :, :] + offs[:, None, None] * d[None, :, :]
    return centres, float(np.hypot(seg / 2, width / 2))


def _path_traj(path: Path, s0: float, v: float, d: float):
    """(xy, yaw)(t) of an object moving along ``path`` at signed speed ``v``, lateral ``d``."""
    def traj(t: float) -> tuple[np.ndarray, float]:
        xy, hd = path.pose(s0 + v * t, d)
        return xy[0], float(hd[0] + (np.pi if v < 0 else 0.0))

    return traj


_ALL_ROADS: dict[int, list[Road]] = {}


def _rotate_waypoints(wps: list[tuple[float, float]], origin: np.ndarray, theta: float):
    c, s = np.cos(theta), np.sin(theta)
    return [(origin[0] + c * x - s * y, origin[1] + s * x + c * y) for x, y in wps]


def build_world(
    scenario: str, condition: str, rng: np.random.Generator, duration_s: float, scale: float = 1.0
) -> World:
    """Lay out one scene.

    Args:
        scenario: one of ``config.SCENARIO_KINDS``.
        condition: one of ``config.CONDITIONS``.
        rng: the scene's random generator (seeded from the dataset seed and scene index).
        duration_s: scene length, seconds.
        scale: multiplies the number of agents.

    Returns:
        The world, in global coordinates (scene origin a few hundred metres from the map
        origin, random heading, like nuScenes' map frames).

    """
    b = _Builder(rng, scale)
    origin = np.array([rng.uniform(300.0, 1800.0), rng.uniform(300.0, 1800.0)]).round(2)
    theta = float(rng.uniform(-np.pi, np.pi))
    events: list[str] = []

    def tf(wps):
        return Path.from_polyline(fillet_polyline(_rotate_waypoints(wps, origin, theta), [])) \
            if len(wps) == 2 else None

    def road_from(wps, radii, **kw) -> Road:
        pts = fillet_polyline(_rotate_waypoints(wps, origin, theta), radii)
        return Road(Path.from_polyline(pts), **kw)

    def lane_path(road: Road, s_start: float, d: float) -> Path:
        s = np.arange(s_start, road.path.length, 0.5)
        xy, _ = road.path.pose(s, d)
        return Path.from_polyline(xy)

    stops: list[tuple[float, float, float]] = []
    urban_kw = dict(half_width_m=URBAN_HALF_M, lane_width_m=URBAN_LANE_M, lanes_per_dir=1,
                    sidewalk_m=URBAN_SIDEWALK_M)
    roads: list[Road] = []
    work_side = 1.0
    if scenario in ("urban_straight", "urban_curve"):
        v_cruise = rng.uniform(8.0, 12.0)
        need = v_cruise * duration_s + 120.0
        if scenario == "urban_straight":
            road = road_from([(-80.0, 0.0), (need, 0.0)], [], **urban_kw)
        else:
            phi = np.radians(rng.uniform(45, 85)) * rng.choice([-1.0, 1.0])
            radius = rng.uniform(45, 90)
            lead = 20.0 + v_cruise * duration_s * 0.3 + radius * np.tan(abs(phi) / 2)
            far = (lead + need, 0.0)
            end = (80.0 + lead + need * np.cos(phi), need * np.sin(phi))
            road = road_from([(-80.0, 0.0), (80.0 + lead, 0.0), end], [radius], **urban_kw)
            del far
        roads = [road]
        ego_path = lane_path(road, 80.0, -URBAN_LANE_M / 2)
        # Emergency stops: a stopped car in the ego lane (straight road) or a pedestrian who
        # steps into the ego lane and stays there (curved road).
        brake = rng.uniform() < 0.85
        t_obs = duration_s * rng.uniform(0.45, 0.6)
        s_obs = v_cruise * t_obs + 25.0
        gap = 2.4 if scenario == "urban_straight" else 2.0
        half_len = 2.3 if scenario == "urban_straight" else 0.4
        if brake:
            stops.append((s_obs - gap - half_len - FRONT_OVERHANG_M, np.inf, 6.5))
            events.append("emergency_brake")
        ego = plan_speed(ego_path, duration_s, v_cruise, v_cruise * rng.uniform(0.6, 1.0), stops)
        if brake and scenario == "urban_straight":
            xy, hd = ego_path.pose(s_obs)
            b.add_static("car", xy[0], hd[0], attrs=("vehicle.moving", "vehicle.stopped"),
                         check=False)
        elif brake:
            # The pedestrian reaches the lane centre 0.3 s before the ego starts braking (the
            # reaction time), walking in from the right sidewalk at a brisk pace.
            t_brake = float(ego.t[ego.aeb][0]) if ego.aeb.any() else duration_s
            v_ped = rng.uniform(1.6, 2.2)
            end_xy, hd = ego_path.pose(s_obs)
            start_xy, _ = ego_path.pose(s_obs - 1.0, -(URBAN_HALF_M - URBAN_LANE_M / 2 + 1.0))
            t1 = t_brake - 0.3
            t0 = t1 - float(np.hypot(*(end_xy[0] - start_xy[0]))) / v_ped
            b.add_agent("pedestrian", "linear", {"a": start_xy[0], "b": end_xy[0], "t0": t0,
                                                 "t1": t1})
        else:
            b.add_agent("car", "ego_follow", {"gap": rng.uniform(18, 30)})
        s_ego0 = 80.0
    elif scenario == "intersection":
        v_cruise = rng.uniform(8.0, 11.0)
        xi = rng.uniform(35.0, 55.0)
        road = road_from([(-80.0, 0.0), (xi + 200.0, 0.0)], [], **urban_kw)
        cross = road_from([(xi, -200.0), (xi, 200.0)], [], **urban_kw)
        roads = [road, cross]
        turn = rng.choice(["left", "right", "straight"])
        h = URBAN_LANE_M / 2
        if turn == "right":
            wps, radii = [(0.0, -h), (xi - h, -h), (xi - h, -200.0)], [7.0]
        elif turn == "left":
            wps, radii = [(0.0, -h), (xi + h, -h), (xi + h, 200.0)], [12.0]
        else:
            wps, radii = [(0.0, -h), (xi + 200.0, -h)], []
        ego_path = Path.from_polyline(fillet_polyline(_rotate_waypoints(wps, origin, theta), radii))
        s_stop = xi - URBAN_HALF_M - 2.0 - FRONT_OVERHANG_M
        stops.append((s_stop, rng.uniform(1.5, 3.0), 2.5))  # stop sign: hold, go
        events.append(f"turn_{turn}")
        ego = plan_speed(ego_path, duration_s, v_cruise, v_cruise * 0.8, stops)
        s_ego0 = 80.0
    elif scenario == "highway":
        v_cruise = rng.uniform(22.0, 28.0)
        need = v_cruise * duration_s + 250.0
        phi = np.radians(rng.uniform(-12, 12))
        road = road_from([(-150.0, 0.0), (150.0 + need * 0.3, 0.0),
                          (150.0 + need * 0.3 + need * np.cos(phi), need * np.sin(phi))],
                         [1200.0], half_width_m=HIGHWAY_HALF_M, lane_width_m=HIGHWAY_LANE_M,
                         lanes_per_dir=3, sidewalk_m=0.0, kerbs=False, centre_line="barrier")
        roads = [road]
        ego_path = lane_path(road, 150.0, -HIGHWAY_LANE_M * 1.5)
        ego = plan_speed(ego_path, duration_s, v_cruise, v_cruise * rng.uniform(0.85, 1.0), stops)
        b.add_agent("car", "ego_follow", {"gap": rng.uniform(30, 45)})
        s_ego0 = 150.0
        work_side = -1.0
    elif scenario == "parking":
        v_cruise = rng.uniform(2.0, 3.2)
        aisle_len = v_cruise * duration_s + 60.0
        road = road_from([(-30.0, 0.0), (aisle_len, 0.0)], [], half_width_m=3.5,
                         lane_width_m=3.5, lanes_per_dir=1, sidewalk_m=0.0, kerbs=False,
                         centre_line="none")
        roads = [road]
        ego_path = lane_path(road, 30.0, -0.6)
        # Stop in front of a bollard line and a low wall at the end of the drive: s_end is
        # where the front bumper comes to rest (ego path arc length), placed so that the
        # stop happens at ~80% of the scene.
        free = plan_speed(ego_path, duration_s, v_cruise, 0.0, [], a_max=0.8,
                          comfort_decel=1.2)
        s_end = _ego_s_at(free, 0.6 * duration_s) + FRONT_OVERHANG_M
        stops.append((s_end - FRONT_OVERHANG_M + 0.2, np.inf, 1.2))
        events.append("parking_stop")
        ego = plan_speed(ego_path, duration_s, v_cruise, 0.0, stops, a_max=0.8, comfort_decel=1.2)
        s_ego0 = 30.0
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    _ALL_ROADS[id(b)] = roads
    b.set_times(ego, np.arange(-0.5, duration_s + 0.75, 0.5))

    s_mid_ego = _ego_s_at(ego, duration_s / 2)
    # Arc length on the main road of the ego at mid-scene (ego path starts at s_ego0 on it).
    s_mid = s_ego0 + s_mid_ego
    s_lo = s_ego0 - 50.0
    s_hi = s_ego0 + float(ego.s[-1]) + 90.0
    main = roads[0]
    if scenario == "intersection":
        s_mid = s_ego0 + min(s_mid_ego, xi - 10.0)

    if scenario in ("urban_straight", "urban_curve", "intersection"):
        # Work zone beside the road ahead of the ego at mid-scene (before the junction).
        s_w = s_mid + 6.0 if scenario != "intersection" else s_ego0 + xi - 45.0
        skip = (s_w, s_w + 30.0, work_side)
        _work_zone(b, main, s_w, work_side * (URBAN_LANE_M + 0.3))
        if scenario == "intersection":
            cross = roads[1]
            s_x = float(cross.path.project(main.path.pose(s_ego0 + xi)[0])[0][0])
            flows = [(cross, s_x, 1.0), (cross, s_x, -1.0), (main, s_ego0 + xi, -1.0)]
            order = rng.permutation(len(flows))
            _junction_traffic(b, [flows[i] for i in order], ego, s_stop, duration_s, v_cruise)
            _traffic(b, main, ego, duration_s, s_ego0, [], [], (7.0, 12.0), (-work_side,))
        else:
            _traffic(b, main, ego, duration_s, s_ego0, [], [URBAN_LANE_M / 2], (7.0, 12.0),
                     (-work_side,))
        _urban_roadside(b, main, ego, duration_s, s_lo, s_hi, s_mid, skip)
        if scenario == "intersection":
            _urban_roadside(b, cross, ego, duration_s, s_x - 120, s_x + 120, s_x + 25, None)
        for rd in roads:
            _road_scenery(b, rd, roads, (s_lo - 30, s_hi + 60) if rd is main else (0, 1e9))
    elif scenario == "highway":
        lanes = [-HIGHWAY_LANE_M * (k + 0.5) for k in range(3)]
        onc = [HIGHWAY_LANE_M * (k + 0.5) for k in range(3)]
        _traffic(b, main, ego, duration_s, s_ego0, [lanes[0]], onc, (20.0, 30.0), ())
        # Right lane: a tractor-trailer drifting past the ego, with traffic around it.
        v = rng.uniform(20.0, 25.0)
        s_anchor = s_mid - v * duration_s / 2 + rng.uniform(-10, 10)
        _platoon(b, main.path, lanes[2], v, s_anchor, s_anchor - 80.0, s_anchor + 80.0,
                 lambda: str(rng.choice(["car"] * 6 + ["truck", "bus"])), "trailer",
                 (10.0, 40.0))
        _work_zone(b, main, s_mid + 10.0, -(HIGHWAY_LANE_M * 3 + 0.4))
        _road_scenery(b, main, roads, (s_lo - 30, s_hi + 120))
    else:  # parking
        _parking_lot(b, main, ego, duration_s, s_ego0, s_end, s_mid)

    world_desc = {
        "urban_straight": "Urban road, parked cars, peds, cyclists, work zone",
        "urban_curve": "Curved urban road, parked cars, peds, cyclists, work zone",
        "intersection": "Intersection, cross traffic, peds crossing, work zone",
        "highway": "Highway, trucks, tractor-trailer, work zone on shoulder",
        "parking": "Parking lot, low speed, bollards near ego, peds",
    }[scenario]
    cond_word = {"clear": "Clear", "fog": "Fog", "rain": "Rain", "night": "Night"}[condition]
    description = (
        f"{cond_word}, {world_desc}. scenario={scenario}; condition={condition}; "
        f"events={','.join(events) or 'none'}"
    )
    ground = _ground_map(roads, ego, scenario, rng, theta)
    _ALL_ROADS.pop(id(b), None)
    return World(
        scenario=scenario,
        condition=condition,
        description=description,
        roads=tuple(roads),
        ego=ego,
        agents=tuple(b.agents),
        scenery=b.scenery(),
        ground=ground,
        duration_s=duration_s,
        map_name=MAP_NAMES[int(rng.integers(len(MAP_NAMES)))],
        lamps_xy=np.asarray(b.lamps, dtype=np.float64).reshape(-1, 2),
    )


def _parking_lot(
    b: _Builder, aisle: Road, ego: EgoMotion, duration: float, s_ego0: float, s_end: float,
    s_mid: float,
) -> None:
    """Stall rows with parked vehicles, bollards and cones near the ego's path, a wall at the
    end of the drive, walking pedestrians and a work corner.
    """
    rng = b.rng
    stall_w, stall_d = 2.7, 5.4
    row_d = 3.5 + stall_d / 2
    s_ego_end = s_ego0 + s_end
    for side in (-1.0, 1.0):
        for _k, s in enumerate(np.arange(s_ego0 - 25, s_ego_end + 30, stall_w)):
            # Stall lines are painted in the ground map; wheel stops are low scenery.
            xy, hd = aisle.path.pose(s + stall_w / 2, side * (row_d + stall_d / 2 - 0.4))
            b.part(xy[0], 0.0, 0.25, 1.8, 0.12, hd[0] + np.pi / 2, (200, 200, 60), "concrete")
            if abs(s - s_mid) < 6 and side < 0:
                continue  # an empty stall next to the ego at mid-scene
            r = rng.uniform()
            if r < 0.75 * min(b.scale, 1.3):
                cls = rng.choice(["car"] * 10 + ["truck", "motorcycle", "bicycle"])
                wlh = b.size(cls)
                if wlh[0] > stall_w - 0.2:
                    continue
                xy, hd = aisle.path.pose(s + stall_w / 2 + rng.normal(0, 0.1),
                                         side * (row_d + rng.normal(0, 0.15)))
                yaw = hd[0] + side * np.pi / 2 + rng.choice([0.0, np.pi]) + rng.normal(0, 0.04)
                b.add_static(cls, xy[0], yaw, wlh=wlh)
    # Larger vehicles parked along the far ends (bus, truck), guaranteed near mid-scene.
    for cls, side, ds in (("bus", 1.0, 10.0), ("truck", -1.0, -14.0), ("motorcycle", 1.0, -5.0)):
        wlh = b.size(cls)
        xy, hd = aisle.path.pose(s_mid + ds, side * (row_d + stall_d + 1.0 + wlh[0] / 2))
        b.add_static(cls, xy[0], hd[0], wlh=wlh, check=False)
    # Low obstacles close to the ego path: bollards and small cones at the aisle edges that
    # the roof LiDAR's near blind zone misses.
    for s in np.arange(s_ego0 + 4.0, s_ego_end, rng.uniform(5.0, 8.0)):
        side = rng.choice([-1.0, 1.0])
        d = -0.6 + side * rng.uniform(1.45, 2.0)
        xy, _ = aisle.path.pose(s, d)
        if b.free(xy[0], 0.3):
            h = rng.uniform(0.45, 0.75)
            b.part(xy[0], 0.0, 0.16, 0.16, h, 0.0, (230, 200, 30), "paint")
            b.occupied.append((xy[0], 0.2))
    # End wall ahead of the stop point and a bollard row in front of it.
    xy, hd = aisle.path.pose(s_ego_end + 1.0, 0.0)
    b.part(xy[0], 0.0, 0.3, 7.0, 0.6, hd[0], (170, 170, 165), "concrete")
    for d in (-2.5, -0.6, 1.3, 3.0):
        xy, _ = aisle.path.pose(s_ego_end + 0.55, d)
        b.part(xy[0], 0.0, 0.18, 0.18, 0.55, 0.0, (230, 200, 30), "paint")
    # Building and bushes beyond the lot.
    for side in (-1.0, 1.0):
        for s in np.arange(s_ego0 - 30, s_ego_end + 40, 12.0):
            xy, hd = aisle.path.pose(s, side * (row_d + stall_d + 6.0 + rng.uniform(0, 2)))
            b.part(xy[0], 0.0, rng.uniform(1.5, 3.0), 1.2, rng.uniform(0.8, 1.4), hd[0],
                   (55, 100, 50), "foliage")
        xy, hd = aisle.path.pose(s_mid + rng.uniform(-10, 10), side * (row_d + stall_d + 22.0))
        b.part(xy[0], 0.0, 60.0, 14.0, rng.uniform(8, 15), hd[0], (185, 180, 170), "concrete")
    for s in np.arange(s_ego0 - 20, s_ego_end + 30, 25.0):
        xy, hd = aisle.path.pose(s, row_d + stall_d / 2 + 0.2)
        b.part(xy[0], 0.0, 0.25, 0.25, 7.0, hd[0], (110, 110, 115), "metal")
        b.lamps.append(xy[0])
    # Pedestrians walking along the stall rows and standing by cars.
    for _ in range(int(rng.integers(3, 6))):
        side = rng.choice([-1.0, 1.0])
        d = side * rng.uniform(2.5, 2.8)
        v = rng.uniform(0.8, 1.4) * rng.choice([-1.0, 1.0])
        s0 = s_mid + rng.uniform(-25, 25) - v * duration / 2
        # Keep pedestrians clear of the ego: walk only at the far side of the aisle.
        d = abs(d) if d < 0 else d
        if b.clear_of_agents(_path_traj(aisle.path, s0, v, d), PED_WLH):
            b.add_agent("pedestrian", "path",
                        {"path": aisle.path, "s0": s0, "speed": v, "offset": d})
    xy, hd = aisle.path.pose(s_mid + 6.0, 2.7)
    b.add_static("pedestrian", xy[0], hd[0] - np.pi / 2, check=False)
    # Work corner: cones/barriers, construction vehicle, trailer beyond the far row.
    _work_zone(b, aisle, s_mid + 4.0, -(row_d + stall_d + 1.0))


def _ground_map(
    roads: list[Road], ego: EgoMotion, scenario: str, rng: np.random.Generator, yaw: float
) -> GroundMap:
    """Rasterise ground materials (grass, sidewalks, asphalt, markings) around the drive, in a
    raster frame rotated by ``yaw`` (the scene's base heading).
    """
    res = GROUND_RES_M
    c_y, s_y = np.cos(yaw), np.sin(yaw)
    rot_t = np.array([[c_y, s_y], [-s_y, c_y]])  # global -> raster axes
    ex = ego.path.xy @ rot_t.T
    margin = 90.0
    lo = ex.min(axis=0) - margin
    hi = ex.max(axis=0) + margin
    w = int(np.ceil((hi[0] - lo[0]) / res))
    h = int(np.ceil((hi[1] - lo[1]) / res))
    mat = np.full((h, w), GROUND_GRASS, dtype=np.uint8)
    origin = rot_t.T @ lo

    def px(xy: np.ndarray) -> np.ndarray:
        loc = np.asarray(xy) @ rot_t.T - lo
        return np.round(loc / res * 16).astype(np.int32)  # 4 fractional bits

    def band(path: Path, d0: float, d1: float, value: int, s0=0.0, s1=None) -> None:
        s1 = path.length if s1 is None else s1
        s = np.arange(s0, s1, 1.0)
        if len(s) < 2:
            return
        s = np.append(s, s1)
        left, _ = path.pose(s, d1)
        right, _ = path.pose(s, d0)
        # One polygon for the whole strip (left edge out, right edge back).
        cv2.fillPoly(mat, [px(np.concatenate([left, right[::-1]]))], int(value), cv2.LINE_8, 4)

    if scenario == "parking":
        rd = roads[0]
        band(rd.path, -20.0, 20.0, GROUND_LOT)
        stall_w, row_d0, depth = 2.7, 3.5, 5.4
        for side in (-1.0, 1.0):
            for s in np.arange(0.0, rd.path.length, stall_w):
                a, _ = rd.path.pose(s, side * row_d0)
                b2, _ = rd.path.pose(s, side * (row_d0 + depth))
                cv2.line(mat, px(a[0]), px(b2[0]), GROUND_MARKING, 1, cv2.LINE_8, 4)
    else:
        for rd in roads:
            if rd.sidewalk_m > 0:
                band(rd.path, -(rd.half_width_m + rd.sidewalk_m + 0.3),
                     rd.half_width_m + rd.sidewalk_m + 0.3, GROUND_SIDEWALK)
        for rd in roads:
            band(rd.path, -rd.half_width_m, rd.half_width_m, GROUND_ASPHALT)
        for rd in roads:
            hw = rd.half_width_m
            lw = rd.lane_width_m
            # Edge lines and lane lines (dashed), centre line (double solid) or median.
            lines: list[tuple[float, bool]] = []
            if rd.centre_line == "double":
                lines += [(-0.12, False), (0.12, False)]
            for k in range(1, rd.lanes_per_dir):
                lines += [(-lw * k, True), (lw * k, True)]
            lines += [(-(lw * rd.lanes_per_dir + 0.1), False), (lw * rd.lanes_per_dir + 0.1, False)]
            if rd.sidewalk_m == 0.0:
                lines += [(-(hw - 0.3), False), (hw - 0.3, False)]
            for d, dashed in lines:
                if dashed:
                    for s in np.arange(0.0, rd.path.length, 9.0):
                        band(rd.path, d - 0.075, d + 0.075, GROUND_MARKING, s, s + 3.0)
                else:
                    band(rd.path, d - 0.075, d + 0.075, GROUND_MARKING)
        if len(roads) > 1:
            # Clear the junction box of through-markings, add stop lines.
            main, cross = roads[0], roads[1]
            s_x = float(main.path.project(cross.path.xy[len(cross.path.xy) // 2][None])[0][0])
            band(main.path, -main.half_width_m, main.half_width_m, GROUND_ASPHALT,
                 s_x - cross.half_width_m, s_x + cross.half_width_m)
            s_c = float(cross.path.project(main.path.pose(s_x)[0])[0][0])
            band(cross.path, -cross.half_width_m, cross.half_width_m, GROUND_ASPHALT,
                 s_c - main.half_width_m, s_c + main.half_width_m)
            band(main.path, -main.lane_width_m, 0.0, GROUND_MARKING,
                 s_x - cross.half_width_m - 1.5, s_x - cross.half_width_m - 1.0)
            # Zebra crossings on the main road on both sides of the junction.
            for s_z in (s_x - cross.half_width_m - 4.0, s_x + cross.half_width_m + 1.0):
                for d in np.arange(-main.half_width_m + 0.5, main.half_width_m, 1.0):
                    band(main.path, d, d + 0.5, GROUND_MARKING, s_z, s_z + 3.0)
    # Camera colour: material colour with low-frequency tone and fine grain.
    coarse = rng.normal(0.0, 1.0, (max(h // 16, 2), max(w // 16, 2))).astype(np.float32)
    coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    # Fine grain from one tile repeated (a full-size draw costs more than it adds).
    tile = rng.normal(0.0, 1.0, (256, 256)).astype(np.float32)
    grain = np.tile(tile, (h // 256 + 1, w // 256 + 1))[:h, :w]
    tone = 1.0 + 0.06 * coarse + 0.05 * grain
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    for ch in range(3):
        rgb[..., ch] = np.clip(GROUND_RGB[mat, ch] * tone, 0, 255)
    return GroundMap(mat, rgb, origin, res, float(yaw))
