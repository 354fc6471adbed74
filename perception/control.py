"""Trajectory -> steering (pure pursuit) and acceleration; automatic emergency braking (AEB).

AEB fires when an obstacle in the direction of travel is closer than the stopping distance
``v * t_react + v^2 / (2 * a_brake) + margin``: either an ultrasonic echo from a forward-looking
sensor, or a confident predicted box that intersects the swept corridor of the planned path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import numpy as np

from calibration.sample import Boxes3D
from calibration.ultrasonic_layout import FRONT_BUMPER_X_M, HALF_WIDTH_M, UltrasonicLayout
from perception.types import ControlCommand
from sensors.types import UltrasonicScan


@dataclass(frozen=True)
class ControlConfig:
    """Controller and AEB parameters (nuScenes ego car: Renault Zoe).

    Attributes:
        wheelbase_m: axle distance (the ego origin is the rear axle).
        lookahead_min_m / lookahead_time_s: pure-pursuit lookahead ``max(min, v * time)``.
        max_steer_rad: front-wheel angle limit.
        speed_time_constant_s: the acceleration request closes the speed error in this time.
        accel_limits_mps2: (min, max) acceleration request outside AEB.
        aeb_decel_mps2: deceleration assumed (and requested) when braking hard.
        reaction_time_s: detection-to-brake latency folded into the stopping distance.
        margin_m: distance kept to the obstacle after stopping.
        corridor_margin_m: lateral margin added to the half width of the ego car.
        box_score_threshold: predicted boxes below this confidence do not trigger AEB.
        aeb_sensor_max_yaw_rad: only ultrasonic sensors looking within this angle of the
            direction of travel can trigger AEB (corner sensors see parked cars beside us).
        aeb_ultrasonic_max_speed_mps: ultrasonic AEB works at parking speeds only, as in
            production parking-brake assists: above ~10 km/h the stopping distance exceeds the
            5.5 m range, and a wide cone then mostly echoes off kerbs and parked cars.

    """

    wheelbase_m: float = 2.588
    lookahead_min_m: float = 3.0
    lookahead_time_s: float = 1.0
    max_steer_rad: float = 0.6
    speed_time_constant_s: float = 1.0
    accel_limits_mps2: tuple[float, float] = (-3.0, 2.0)
    aeb_decel_mps2: float = 6.0
    reaction_time_s: float = 0.2
    margin_m: float = 0.5
    corridor_margin_m: float = 0.25
    box_score_threshold: float = 0.3
    aeb_sensor_max_yaw_rad: float = math.radians(40.0)
    aeb_ultrasonic_max_speed_mps: float = 3.0


@overload
def stopping_distance_m(speed_mps: float, cfg: ControlConfig = ...) -> float: ...
@overload
def stopping_distance_m(speed_mps: np.ndarray, cfg: ControlConfig = ...) -> np.ndarray: ...


def stopping_distance_m(
    speed_mps: float | np.ndarray, cfg: ControlConfig = ControlConfig()  # noqa: B008 - frozen
) -> float | np.ndarray:
    """Distance needed to stop from ``speed_mps``, plus the safety margin, metres.

    ``v * t_react + v^2 / (2 * a_brake) + margin``: the one definition, used by the AEB
    controller and by the AEB metric (``eval.planning.aeb_metrics``), so the metric's
    "braking was needed" is the controller's own rule. Scalars give a float, arrays an array.
    """
    v = np.abs(np.asarray(speed_mps, np.float64))
    d = v * cfg.reaction_time_s + v * v / (2.0 * cfg.aeb_decel_mps2) + cfg.margin_m
    return float(d) if d.ndim == 0 else d


def _polyline(trajectory: np.ndarray, min_length_m: float) -> np.ndarray:
    """(0, 0) + waypoints, extended straight along the last heading to ``min_length_m``."""
    pts = np.vstack([np.zeros((1, 2)), np.asarray(trajectory, np.float64).reshape(-1, 2)])
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    seg = np.diff(pts, axis=0)
    lens = np.hypot(seg[:, 0], seg[:, 1])
    pts = np.vstack([pts[:1], pts[1:][lens > 1e-3]])
    total = float(np.hypot(*np.diff(pts, axis=0).T).sum()) if len(pts) > 1 else 0.0
    direction = pts[-1] - pts[-2] if len(pts) > 1 else np.array([1.0, 0.0])
    direction = direction / max(float(np.linalg.norm(direction)), 1e-9)
    if total < min_length_m:
        pts = np.vstack([pts, pts[-1] + direction * (min_length_m - total)])
    return pts


def _project_on_polyline(poly: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length along ``poly`` and unsigned lateral distance of each point in ``xy``."""
    a, b = poly[:-1], poly[1:]
    ab = b - a
    seg_len = np.hypot(ab[:, 0], ab[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])[:-1]
    ap = xy[:, None, :] - a[None]
    t = np.clip((ap * ab[None]).sum(-1) / np.maximum(seg_len**2, 1e-12), 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    dist = np.hypot(*(xy[:, None, :] - closest).transpose(2, 0, 1))
    best = dist.argmin(axis=1)
    rows = np.arange(len(xy))
    return cum[best] + t[rows, best] * seg_len[best], dist[rows, best]


def _point_at_arc_length(poly: np.ndarray, s: float) -> np.ndarray:
    seg = np.diff(poly, axis=0)
    lens = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(lens)])
    i = int(np.clip(np.searchsorted(cum, s) - 1, 0, len(lens) - 1))
    t = (s - cum[i]) / max(lens[i], 1e-9)
    return poly[i] + min(max(t, 0.0), 1.0) * seg[i]


def pure_pursuit_steer(
    trajectory: np.ndarray, speed_mps: float, cfg: ControlConfig
) -> float:
    """Front-wheel angle (positive = left) that arcs the rear axle onto the lookahead point."""
    lookahead = max(cfg.lookahead_min_m, abs(speed_mps) * cfg.lookahead_time_s)
    poly = _polyline(trajectory, lookahead)
    target = _point_at_arc_length(poly, lookahead)
    dist = float(np.hypot(*target))
    if dist < 1e-6:
        return 0.0
    alpha = math.atan2(target[1], target[0])
    steer = math.atan2(2.0 * cfg.wheelbase_m * math.sin(alpha), dist)
    return float(np.clip(steer, -cfg.max_steer_rad, cfg.max_steer_rad))


def compute_control(
    trajectory: np.ndarray,
    speed_mps: float | None = None,
    detections: Boxes3D | None = None,
    ultrasonic: UltrasonicScan | None = None,
    layout: UltrasonicLayout | None = None,
    cfg: ControlConfig | None = None,
    dt_s: float = 0.5,
) -> ControlCommand:
    """Steering, acceleration and AEB for one tick.

    Args:
        trajectory: (T, 2) planned positions at +dt .. +T*dt s, ego frame, metres.
        speed_mps: current forward speed (CAN bus); None -> estimated from the first waypoint.
        detections: predicted boxes in the ego frame (scores used), or None.
        ultrasonic: current ultrasonic ranges, or None.
        layout: ultrasonic sensor geometry (needed with ``ultrasonic``).
        cfg: controller parameters.
        dt_s: waypoint spacing, seconds.

    Returns:
        The ``ControlCommand``.

    """
    cfg = cfg or ControlConfig()
    traj = np.asarray(trajectory, np.float64).reshape(-1, 2)
    finite = traj[np.all(np.isfinite(traj), axis=1)]
    if speed_mps is None or not math.isfinite(speed_mps):
        speed_mps = float(np.hypot(*finite[0]) / dt_s) if len(finite) else 0.0
    steer = pure_pursuit_steer(finite, speed_mps, cfg) if len(finite) else 0.0
    if len(finite) >= 2:
        v_target = float(np.hypot(*(finite[1] - finite[0])) / dt_s)
    elif len(finite) == 1:
        v_target = float(np.hypot(*finite[0]) / dt_s)
    else:
        v_target = 0.0
    accel = (v_target - speed_mps) / cfg.speed_time_constant_s
    accel = float(np.clip(accel, *cfg.accel_limits_mps2))
    brake = float(np.clip(-accel / cfg.aeb_decel_mps2, 0.0, 1.0))

    reason = aeb_reason(finite, speed_mps, detections, ultrasonic, layout, cfg)
    if reason:
        return ControlCommand(steer, -cfg.aeb_decel_mps2, 1.0, traj, aeb=True, reason=reason)
    return ControlCommand(steer, accel, brake, traj)


def aeb_reason(
    trajectory: np.ndarray,
    speed_mps: float,
    detections: Boxes3D | None,
    ultrasonic: UltrasonicScan | None,
    layout: UltrasonicLayout | None,
    cfg: ControlConfig,
) -> str:
    """Why AEB must fire now (``""`` when it must not)."""
    d_stop = stopping_distance_m(speed_mps, cfg)
    slow = abs(speed_mps) <= cfg.aeb_ultrasonic_max_speed_mps
    if ultrasonic is not None and layout is not None and slow:
        r = np.asarray(ultrasonic.ranges_m, np.float64)
        forward = np.abs(np.asarray(layout.yaw_ego_rad)) <= cfg.aeb_sensor_max_yaw_rad
        if speed_mps < -0.1:  # reversing: the rear sensors look along the motion
            yaw = np.asarray(layout.yaw_ego_rad)
            forward = np.abs(np.arctan2(np.sin(yaw - np.pi), np.cos(yaw - np.pi)))
            forward = forward <= cfg.aeb_sensor_max_yaw_rad
        # An ultrasonic cone cannot say where across it the echo is: take the boresight
        # point, and only echoes whose point lies in the ego corridor count (a diagonal sensor
        # sees parked cars and kerbs beside the lane at a few metres all the time).
        yaw_b = np.asarray(layout.yaw_ego_rad)
        lat_m = np.asarray(layout.position_ego_m)[:, 1] + np.nan_to_num(r) * np.sin(yaw_b)
        in_corridor = np.abs(lat_m) <= HALF_WIDTH_M + cfg.corridor_margin_m
        hits = r[forward & in_corridor & np.isfinite(r)]
        if hits.size and float(hits.min()) <= d_stop:
            kind = "derived " if ultrasonic.derived else ""
            return f"{kind}ultrasonic {float(hits.min()):.2f} m"
    if detections is not None and len(detections) and speed_mps >= 0:
        conf = detections.scores >= cfg.box_score_threshold
        if conf.any():
            boxes = detections.subset(conf)
            poly = _polyline(trajectory, FRONT_BUMPER_X_M + d_stop + 5.0)
            bottom = boxes.corners()[:, :4, :2]  # (N, 4, 2)
            mids = (bottom + np.roll(bottom, -1, axis=1)) / 2
            probe = np.concatenate([bottom, mids, boxes.center_m[:, None, :2]], axis=1)
            n, k = probe.shape[:2]
            s, lat = _project_on_polyline(poly, probe.reshape(-1, 2))
            s, lat = s.reshape(n, k), lat.reshape(n, k)
            inside = lat <= HALF_WIDTH_M + cfg.corridor_margin_m
            ahead = s - FRONT_BUMPER_X_M
            # Probes beside or behind the front bumper (ahead < -0.5 m) are not in our way.
            ahead = np.where(inside & (ahead >= -0.5), ahead, np.inf).min(axis=1)
            i = int(np.argmin(ahead))
            if ahead[i] <= d_stop:
                name = boxes.class_names[i]
                return f"box {name} in path at {max(float(ahead[i]), 0.0):.1f} m"
    return ""
