"""Road geometry: arc-length paths, filleted polylines, road cross-sections (global frame, m)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Urban cross-section: asphalt half width, lane width, sidewalk width, metres.
URBAN_HALF_M, URBAN_LANE_M, URBAN_SIDEWALK_M = 7.4, 3.5, 3.4
# Bike lane centre; parked vehicles keep PARK_KERB_GAP_M from the kerb (7.4 m) so that even
# a bus (2.94 m) clears a motorcycle (0.77 m) in the bike lane.
BIKE_LANE_D, PARK_KERB_GAP_M = 3.85, 0.15
HIGHWAY_LANE_M, HIGHWAY_HALF_M = 3.7, 15.6  # 3 lanes + a 4.5 m shoulder (work zones)

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


def rotate_waypoints(
    wps: list[tuple[float, float]], origin: np.ndarray, theta: float
) -> list[tuple[float, float]]:
    """Scene-frame waypoints rotated by ``theta`` and moved to ``origin`` (global frame)."""
    c, s = np.cos(theta), np.sin(theta)
    return [(origin[0] + c * x - s * y, origin[1] + s * x + c * y) for x, y in wps]
