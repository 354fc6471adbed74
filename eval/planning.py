"""Open-loop planning and control metrics, over plain arrays.

Inputs are arrays so that any producer can feed them: our ``FrameResult.plan`` and
``SyncedSample.future_xy_ego_m``, or another stack's outputs.

Conventions (both are in use in the literature and give different numbers, so both are
reported, each under its own name):

- ``at``: the error at the horizon step only (UniAD's reporting).
- ``avg``: the mean over all steps up to and including the horizon of the per-step means
  (ST-P3's and VAD's reporting).

Collision: the planned ego footprint (a rectangle, heading along the planned path) at each
future step against the ground-truth boxes at that step's timestamp, in the current ego frame.

Ego-status ablation: planners that see the ego speed/acceleration reach low L2 by
extrapolation alone (AD-MLP, "Is Ego Status All You Need?"); evaluate the same model with and
without ego status and report both, named as such (:func:`ego_status_ablation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from perception.control import ControlConfig, stopping_distance_m
from sensors.types import DETECTION_CLASSES

if TYPE_CHECKING:
    from nuscenes import NuScenes

HORIZONS_S: tuple[float, ...] = (1.0, 2.0, 3.0)
# nuScenes ego vehicle (Renault Zoe) footprint used by ST-P3/VAD/UniAD collision checks.
EGO_WIDTH_M = 1.85
EGO_LENGTH_M = 4.084


def _horizon_steps(horizons_s: tuple[float, ...], dt_s: float, num_steps: int) -> list[int]:
    steps = []
    for h in horizons_s:
        k = int(round(h / dt_s)) - 1
        if k < 0 or k >= num_steps or abs((k + 1) * dt_s - h) > 1e-6:
            raise ValueError(f"horizon {h} s is not a waypoint time with dt {dt_s} s")
        steps.append(k)
    return steps


@dataclass(frozen=True)
class PlanningMetrics:
    """Open-loop planning metrics (horizon in seconds -> value).

    Attributes:
        l2_at_m: mean L2 error at the horizon step (UniAD convention), metres.
        l2_avg_m: mean over steps up to the horizon of the per-step mean L2 (ST-P3/VAD), m.
        collision_at: fraction of samples whose footprint hits a box at the horizon step.
        collision_avg: mean over steps up to the horizon of the per-step collision rate.
        collision_any: fraction of samples colliding at any step up to the horizon.
        num_samples: samples with at least one valid step.
        ego_status: whether the planner saw ego status (None: not stated).

    """

    l2_at_m: dict[float, float]
    l2_avg_m: dict[float, float]
    collision_at: dict[float, float] = field(default_factory=dict)
    collision_avg: dict[float, float] = field(default_factory=dict)
    collision_any: dict[float, float] = field(default_factory=dict)
    num_samples: int = 0
    ego_status: bool | None = None

    def to_dict(self) -> dict[str, float | int | bool | None]:
        """Flat, explicitly named metrics (``L2_at_1s_m``, ``collision_avg_3s``, ...)."""
        out: dict[str, float | int | bool | None] = {}
        for h, v in self.l2_at_m.items():
            out[f"L2_at_{h:g}s_m"] = v
        for h, v in self.l2_avg_m.items():
            out[f"L2_avg_{h:g}s_m"] = v
        for name, d in (
            ("collision_at", self.collision_at),
            ("collision_avg", self.collision_avg),
            ("collision_any", self.collision_any),
        ):
            for h, v in d.items():
                out[f"{name}_{h:g}s"] = v
        out["num_samples"] = self.num_samples
        out["ego_status"] = self.ego_status
        return out


def l2_errors(
    pred_xy: np.ndarray,
    gt_xy: np.ndarray,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """(N, T) L2 distance per sample and step, NaN where not valid.

    Args:
        pred_xy: (N, T, 2) planned positions, ego frame of each sample, metres.
        gt_xy: (N, T, 2) ground-truth future positions (NaN past the end of a scene).
        valid: (N, T) bool extra mask (e.g. the dataset's future mask); None = all.

    """
    pred = np.asarray(pred_xy, np.float64)
    gt = np.asarray(gt_xy, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ValueError(f"pred_xy {pred.shape} and gt_xy {gt.shape} must both be (N, T, 2)")
    d = np.hypot(pred[..., 0] - gt[..., 0], pred[..., 1] - gt[..., 1])
    ok = np.isfinite(d)
    if valid is not None:
        ok &= np.asarray(valid, bool).reshape(d.shape)
    return np.where(ok, d, np.nan)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def footprint_corners(
    xy: np.ndarray, yaw: np.ndarray, width: float | np.ndarray, length: float | np.ndarray
) -> np.ndarray:
    """(..., 4, 2) corners of rectangles centred at ``xy`` with heading ``yaw``."""
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    lx = np.array([1, -1, -1, 1]) * (np.asarray(length, np.float64)[..., None] / 2)
    ly = np.array([1, 1, -1, -1]) * (np.asarray(width, np.float64)[..., None] / 2)
    x = xy[..., 0:1] + lx * c - ly * s
    y = xy[..., 1:2] + lx * s + ly * c
    return np.stack([x, y], axis=-1)


def rectangles_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(...,) bool: convex quadrilaterals ``a`` (..., 4, 2) and ``b`` (..., 4, 2) intersect.

    Separating-axis test on the edge normals of both; touching counts as overlap.
    """
    overlap = np.ones(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), bool)
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=-2) - poly
        normals = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)  # (..., 4, 2)
        for k in range(4):
            n = normals[..., k, :][..., None, :]
            pa = (a * n).sum(-1)
            pb = (b * n).sum(-1)
            overlap &= (pa.max(-1) >= pb.min(-1)) & (pb.max(-1) >= pa.min(-1))
    return overlap


def path_headings(xy: np.ndarray) -> np.ndarray:
    """(N, T) heading of each planned step: direction from the previous point (origin first).

    Where the step is too short to define a direction (< 1 cm), the previous heading is kept.
    """
    prev = np.concatenate([np.zeros_like(xy[:, :1]), xy[:, :-1]], axis=1)
    d = xy - prev
    yaw = np.arctan2(d[..., 1], d[..., 0])
    short = np.hypot(d[..., 0], d[..., 1]) < 0.01
    for t in range(xy.shape[1]):
        fallback = yaw[:, t - 1] if t else np.zeros(xy.shape[0])
        yaw[:, t] = np.where(short[:, t], fallback, yaw[:, t])
    return yaw


def collisions(
    pred_xy: np.ndarray,
    future_boxes: list[list[np.ndarray | None]],
    ego_width_m: float = EGO_WIDTH_M,
    ego_length_m: float = EGO_LENGTH_M,
) -> np.ndarray:
    """(N, T) bool (float NaN where unknown): planned footprint hits a ground-truth box.

    Args:
        pred_xy: (N, T, 2) planned positions (the ego footprint is centred on them).
        future_boxes: per sample, per step, (M, 5) [x, y, width, length, yaw] ground-truth
            boxes at that step's timestamp in the sample's ego frame; None where unknown.
        ego_width_m: ego footprint width.
        ego_length_m: ego footprint length.

    """
    pred = np.asarray(pred_xy, np.float64)
    n, t = pred.shape[:2]
    out = np.full((n, t), np.nan)
    yaw = path_headings(pred)
    ego = footprint_corners(pred, yaw, ego_width_m, ego_length_m)  # (N, T, 4, 2)
    # Every (sample, step, box) pair in one separating-axis call: the benchmark scores a
    # split per cell, and a Python loop over steps was most of its planning time.
    steps, boxes = [], []
    for i in range(n):
        for k in range(t):
            b = future_boxes[i][k] if k < len(future_boxes[i]) else None
            if b is None or not np.all(np.isfinite(pred[i, k])):
                continue
            steps.append(i * t + k)
            boxes.append(np.asarray(b, np.float64).reshape(-1, 5))
    if not steps:
        return out
    counts = np.array([len(b) for b in boxes])
    flat = np.concatenate(boxes)
    corners = footprint_corners(flat[:, :2], flat[:, 4], flat[:, 2], flat[:, 3])
    pair_step = np.repeat(np.asarray(steps), counts)
    hit = rectangles_overlap(ego.reshape(n * t, 4, 2)[pair_step], corners)
    any_hit = np.bincount(pair_step[hit], minlength=n * t) > 0
    flat_out = out.reshape(-1)
    flat_out[steps] = any_hit[steps].astype(np.float64)  # steps without boxes stay 0.0
    return out


def planning_metrics(
    pred_xy: np.ndarray,
    gt_xy: np.ndarray,
    valid: np.ndarray | None = None,
    future_boxes: list[list[np.ndarray | None]] | None = None,
    dt_s: float = 0.5,
    horizons_s: tuple[float, ...] = HORIZONS_S,
    ego_status: bool | None = None,
) -> PlanningMetrics:
    """L2 (both conventions) and collision rates at each horizon.

    Args:
        pred_xy: (N, T, 2) planned waypoints at dt_s, 2 dt_s, .. in each sample's ego frame.
        gt_xy: (N, T, 2) ground-truth future ego positions (NaN where the scene ended).
        valid: (N, T) optional extra mask.
        future_boxes: see :func:`collisions`; None skips the collision metrics.
        dt_s: waypoint spacing, seconds.
        horizons_s: horizons to report.
        ego_status: whether the planner saw ego status (recorded in the result).

    """
    err = l2_errors(pred_xy, gt_xy, valid)
    steps = _horizon_steps(horizons_s, dt_s, err.shape[1])
    per_step = np.array([_nanmean(err[:, k]) for k in range(err.shape[1])])
    l2_at = {h: float(per_step[k]) for h, k in zip(horizons_s, steps)}
    l2_avg = {h: _nanmean(per_step[: k + 1]) for h, k in zip(horizons_s, steps)}
    col_at, col_avg, col_any = {}, {}, {}
    if future_boxes is not None:
        col = collisions(pred_xy, future_boxes)
        # Only steps with a valid ground-truth future are judged (the scene may have ended).
        col = np.where(np.isfinite(err), col, np.nan)
        col_step = np.array([_nanmean(col[:, k]) for k in range(col.shape[1])])
        for h, k in zip(horizons_s, steps):
            col_at[h] = float(col_step[k])
            col_avg[h] = _nanmean(col_step[: k + 1])
            window = col[:, : k + 1]
            judged = np.isfinite(window).any(axis=1)
            hit = np.nan_to_num(window, nan=0.0).max(axis=1) > 0
            col_any[h] = float(hit[judged].mean()) if judged.any() else float("nan")
    return PlanningMetrics(
        l2_at_m=l2_at,
        l2_avg_m=l2_avg,
        collision_at=col_at,
        collision_avg=col_avg,
        collision_any=col_any,
        num_samples=int(np.isfinite(err).any(axis=1).sum()),
        ego_status=ego_status,
    )


def ego_status_ablation(
    with_status: PlanningMetrics, without_status: PlanningMetrics
) -> dict[str, dict[str, float | int | bool | None]]:
    """The two runs side by side under explicit names, plus the difference (without - with)."""
    a, b = with_status.to_dict(), without_status.to_dict()
    delta: dict[str, float | int | bool | None] = {}
    for k, va in a.items():
        vb = b.get(k)
        if isinstance(va, float) and isinstance(vb, float):
            delta[k] = vb - va
    return {
        "with_ego_status": {**a, "ego_status": True},
        "without_ego_status (ablation)": {**b, "ego_status": False},
        "difference (without - with)": delta,
    }


# ------------------------------------------------------------------------------ control


@dataclass(frozen=True)
class ControlErrors:
    """Control outputs against what the CAN bus recorded.

    Attributes:
        steer_mae_rad / steer_rmse_rad: front-wheel angle error, radians.
        speed_mae_mps / speed_rmse_mps: speed error, m/s.
        steer_reference: what the steering was compared with (``"yaw_rate"`` for the
            front-wheel angle the measured yaw rate implies, ``"steering_wheel/ratio"``).
        num_steer / num_speed: samples that entered each error.

    """

    steer_mae_rad: float
    steer_rmse_rad: float
    speed_mae_mps: float
    speed_rmse_mps: float
    steer_reference: str
    num_steer: int
    num_speed: int


def front_wheel_angle_from_yaw_rate(
    yaw_rate_radps: np.ndarray, speed_mps: np.ndarray, wheelbase_m: float = 2.588
) -> np.ndarray:
    """Kinematic-bicycle front-wheel angle ``atan(L * yaw_rate / v)``; NaN below 1 m/s."""
    v = np.asarray(speed_mps, np.float64)
    w = np.asarray(yaw_rate_radps, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.arctan(wheelbase_m * w / v)
    return np.where(np.abs(v) >= 1.0, out, np.nan)


def control_errors(
    pred_steer_rad: np.ndarray,
    pred_speed_mps: np.ndarray,
    can_speed_mps: np.ndarray,
    can_yaw_rate_radps: np.ndarray | None = None,
    can_steering_wheel_rad: np.ndarray | None = None,
    steering_ratio: float | None = None,
    wheelbase_m: float = 2.588,
) -> ControlErrors:
    """Steering and speed errors against the CAN bus; NaN CAN entries are skipped.

    Steering is compared as a front-wheel angle: the steering-wheel angle divided by
    ``steering_ratio`` when both are given, else the angle the measured yaw rate implies at
    the measured speed (no vehicle-specific ratio needed; samples under 1 m/s are skipped).

    Args:
        pred_steer_rad: (N,) predicted front-wheel angle (``ControlCommand.steer_rad``).
        pred_speed_mps: (N,) predicted speed (e.g. :func:`planned_speed_mps`).
        can_speed_mps: (N,) measured speed (``CanBusState.speed_mps``).
        can_yaw_rate_radps: (N,) measured yaw rate.
        can_steering_wheel_rad: (N,) measured steering-wheel angle.
        steering_ratio: steering-wheel angle / front-wheel angle of the vehicle.
        wheelbase_m: for the yaw-rate reference.

    """
    ps = np.asarray(pred_steer_rad, np.float64)
    if can_steering_wheel_rad is not None and steering_ratio:
        ref = np.asarray(can_steering_wheel_rad, np.float64) / steering_ratio
        ref_name = "steering_wheel/ratio"
    elif can_yaw_rate_radps is not None:
        ref = front_wheel_angle_from_yaw_rate(can_yaw_rate_radps, can_speed_mps, wheelbase_m)
        ref_name = "yaw_rate"
    else:
        ref = np.full_like(ps, np.nan)
        ref_name = "none"
    ds = ps - ref
    dv = np.asarray(pred_speed_mps, np.float64) - np.asarray(can_speed_mps, np.float64)
    ds, dv = ds[np.isfinite(ds)], dv[np.isfinite(dv)]

    def mae(x: np.ndarray) -> float:
        return float(np.abs(x).mean()) if x.size else float("nan")

    def rmse(x: np.ndarray) -> float:
        return float(np.sqrt((x * x).mean())) if x.size else float("nan")

    return ControlErrors(mae(ds), rmse(ds), mae(dv), rmse(dv), ref_name, ds.size, dv.size)


def planned_speed_mps(waypoints_xy: np.ndarray, dt_s: float = 0.5) -> np.ndarray:
    """(N,) speed implied by the first planned step: ``|wp_1| / dt``."""
    wp = np.asarray(waypoints_xy, np.float64).reshape(-1, np.shape(waypoints_xy)[-2], 2)
    return np.hypot(wp[:, 0, 0], wp[:, 0, 1]) / dt_s


# ---------------------------------------------------------------------------------- AEB


def in_path_distance_m(
    boxes_xy_wl_yaw: np.ndarray,
    half_width_m: float = EGO_WIDTH_M / 2 + 0.25,
    front_overhang_m: float = EGO_LENGTH_M / 2,
) -> float:
    """Free distance ahead (straight corridor) to the nearest box, metres; inf if none.

    Args:
        boxes_xy_wl_yaw: (M, 5) [x, y, width, length, yaw] ground-truth boxes, ego frame.
        half_width_m: corridor half width (ego half width plus a margin).
        front_overhang_m: from the ego origin to the front bumper.

    """
    b = np.asarray(boxes_xy_wl_yaw, np.float64).reshape(-1, 5)
    if b.shape[0] == 0:
        return float("inf")
    corners = footprint_corners(b[:, :2], b[:, 4], b[:, 2], b[:, 3])  # (M, 4, 2)
    x, y = corners[..., 0], corners[..., 1]
    # A box is in the corridor when its y-extent overlaps [-half, half] and it lies ahead.
    in_lane = (y.max(-1) >= -half_width_m) & (y.min(-1) <= half_width_m) & (x.max(-1) > 0)
    if not in_lane.any():
        return float("inf")
    return float(max(0.0, x[in_lane].min(-1).min() - front_overhang_m))


@dataclass(frozen=True)
class AebMetrics:
    """Emergency braking against the moments an obstacle is inside stopping distance.

    Attributes:
        precision: fired and needed / fired (NaN if it never fired).
        recall: fired and needed / needed (NaN if it was never needed).
        false_alarm_rate: fired but not needed / not needed.
        num_needed / num_fired / num_samples: counts.

    """

    precision: float
    recall: float
    false_alarm_rate: float
    num_needed: int
    num_fired: int
    num_samples: int


def aeb_metrics(
    fired: np.ndarray,
    obstacle_distance_m: np.ndarray,
    speed_mps: np.ndarray,
    control: ControlConfig | None = None,
) -> AebMetrics:
    """AEB precision/recall: "needed" when the in-path obstacle is inside stopping distance.

    Args:
        fired: (N,) bool, AEB triggered at that sample.
        obstacle_distance_m: (N,) ground-truth free distance ahead (:func:`in_path_distance_m`).
        speed_mps: (N,) ego speed (CAN bus, or from ego poses).
        control: the controller's configuration (default ``ControlConfig()``): "needed" uses
            its stopping distance (``perception.control.stopping_distance_m``), so the metric
            and the controller agree on when braking is due.

    """
    f = np.asarray(fired, bool)
    stop_m = stopping_distance_m(
        np.asarray(speed_mps, np.float64), control if control is not None else ControlConfig()
    )
    need = np.asarray(obstacle_distance_m, np.float64) < stop_m
    tp = int((f & need).sum())
    fp = int((f & ~need).sum())
    n_need, n_fired, n_not = int(need.sum()), int(f.sum()), int((~need).sum())
    return AebMetrics(
        precision=tp / n_fired if n_fired else float("nan"),
        recall=tp / n_need if n_need else float("nan"),
        false_alarm_rate=fp / n_not if n_not else float("nan"),
        num_needed=n_need,
        num_fired=n_fired,
        num_samples=int(f.size),
    )


# --------------------------------------------------------------------- nuScenes helpers

# Classes whose boxes count as obstacles for collision and AEB (the agents, as ST-P3/VAD).
OBSTACLE_CLASSES: frozenset[str] = frozenset(DETECTION_CLASSES) - {"traffic_cone", "barrier"}


def nuscenes_future_boxes(
    nusc: NuScenes,
    sample_token: str,
    num_steps: int = 6,
    dt_s: float = 0.5,
    tolerance_s: float = 0.1,
) -> list[np.ndarray | None]:
    """Ground-truth obstacle boxes at +dt .. +num_steps*dt in this sample's ego frame.

    Uses the following keyframes of the scene (2 Hz); a step with no keyframe within
    ``tolerance_s`` of its time (scene ended, or a gap) is None.

    Returns:
        Per step, (M, 5) [x, y, width, length, yaw] or None.

    """
    from sensors.types import CATEGORY_TO_DETECTION_CLASS

    def ego_pose(sample: dict) -> tuple[np.ndarray, float]:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        w, x, y, z = pose["rotation"]
        yaw = np.arctan2(2 * (x * y + w * z), w * w + x * x - y * y - z * z)
        return np.asarray(pose["translation"], np.float64), float(yaw)

    sample = nusc.get("sample", sample_token)
    t0 = sample["timestamp"]
    origin, ego_yaw = ego_pose(sample)
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    out: list[np.ndarray | None] = [None] * num_steps
    nxt = sample["next"]
    while nxt:
        cur = nusc.get("sample", nxt)
        dt = (cur["timestamp"] - t0) * 1e-6
        k = int(round(dt / dt_s)) - 1
        if k >= num_steps:
            break
        if 0 <= k and abs(dt - (k + 1) * dt_s) <= tolerance_s:
            rows = []
            for ann_token in cur["anns"]:
                a = nusc.get("sample_annotation", ann_token)
                if CATEGORY_TO_DETECTION_CLASS.get(a["category_name"]) not in OBSTACLE_CLASSES:
                    continue
                d = np.asarray(a["translation"][:2]) - origin[:2]
                w, x, y, z = a["rotation"]
                yaw = np.arctan2(2 * (x * y + w * z), w * w + x * x - y * y - z * z)
                rows.append(
                    [
                        c * d[0] + s * d[1],
                        -s * d[0] + c * d[1],
                        a["size"][0],
                        a["size"][1],
                        yaw - ego_yaw,
                    ]
                )
            out[k] = np.asarray(rows, np.float64).reshape(-1, 5)
        nxt = cur["next"]
    return out
