"""Ego motion: the longitudinal speed plan along the driven path (stops, curves, emergency
brakes) and the interpolated ego state at any time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensors.sim.roads import Path


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


def ego_s_at(ego: EgoMotion, t: float) -> float:
    """Ego arc length at one time ``t``, metres."""
    return float(ego.s_at(t)[0])
