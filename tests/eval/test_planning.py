"""Planning/control metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.planning import (
    aeb_metrics,
    collisions,
    control_errors,
    ego_status_ablation,
    footprint_corners,
    front_wheel_angle_from_yaw_rate,
    in_path_distance_m,
    nuscenes_future_boxes,
    planned_speed_mps,
    planning_metrics,
    rectangles_overlap,
)
from perception.control import ControlConfig, stopping_distance_m


def test_l2_both_conventions_by_hand():
    gt = np.zeros((2, 6, 2))
    pred = np.zeros((2, 6, 2))
    pred[0, :, 0] = [1, 2, 3, 4, 5, 6]  # error grows by 1 m per step
    pred[1, :, 1] = 2.0  # constant 2 m
    gt[1, 4:] = np.nan  # the second scene ends after 2 s
    m = planning_metrics(pred, gt)
    # at 1 s (step 1): mean(2, 2) = 2; at 3 s (step 5): only sample 0 -> 6.
    assert m.l2_at_m == {1.0: 2.0, 2.0: 3.0, 3.0: 6.0}
    # avg: per-step means are 1.5, 2, 2.5, 3, 5, 6
    assert m.l2_avg_m[1.0] == pytest.approx((1.5 + 2.0) / 2)
    assert m.l2_avg_m[2.0] == pytest.approx((1.5 + 2 + 2.5 + 3) / 4)
    assert m.l2_avg_m[3.0] == pytest.approx((1.5 + 2 + 2.5 + 3 + 5 + 6) / 6)
    assert m.num_samples == 2
    d = m.to_dict()
    assert d["L2_at_3s_m"] == 6.0 and "L2_avg_1s_m" in d


def test_rectangle_overlap_and_collision_rates():
    a = footprint_corners(np.zeros((1, 2)), np.zeros(1), 2.0, 4.0)
    b_touch = footprint_corners(np.array([[4.0, 0.0]]), np.zeros(1), 2.0, 4.0)  # edge contact
    b_apart = footprint_corners(np.array([[4.01, 0.0]]), np.zeros(1), 2.0, 4.0)
    b_rot = footprint_corners(np.array([[3.3, 0.0]]), np.array([math.pi / 4]), 1.0, 1.0)
    assert rectangles_overlap(a, b_touch)[0]
    assert not rectangles_overlap(a, b_apart)[0]
    # Rotated square: its corner reaches 3.3 - 0.707 = 2.59 > 2 -> clear; at 2.6 it hits.
    assert not rectangles_overlap(a, b_rot)[0]
    b_hit = footprint_corners(np.array([[2.6, 0.0]]), np.array([math.pi / 4]), 1.0, 1.0)
    assert rectangles_overlap(a, b_hit)[0]

    pred = np.zeros((2, 6, 2))
    pred[:, :, 0] = np.arange(1, 7) * 2.0  # straight ahead, 2 m per step
    gt = pred.copy()
    obstacle = np.array([[8.0, 0.0, 1.8, 4.0, 0.0]])  # in the path at x = 8
    far = np.array([[8.0, 10.0, 1.8, 4.0, 0.0]])
    boxes = [[far, far, obstacle, far, far, None], [far] * 6]
    col = collisions(pred, boxes)
    assert col[0, 2] == 1 and col[0, 1] == 0 and math.isnan(col[0, 5]) and col[1].sum() == 0
    m = planning_metrics(pred, gt, future_boxes=boxes)
    assert m.collision_at[1.0] == 0.0
    assert m.collision_at[2.0] == 0.0  # step 3 (x = 8, box moved away)
    assert m.collision_any[2.0] == 0.5
    assert m.collision_avg[2.0] == pytest.approx((0 + 0 + 0.5 + 0) / 4)


def test_collisions_match_opencv_rotated_rectangle_intersection():
    # Independent oracle: OpenCV's rotated-rectangle intersection, per (sample, step), on
    # random plans and boxes, with unknown steps (None), empty steps and a NaN plan point.
    import cv2

    rng = np.random.default_rng(4)
    n, t = 7, 6
    pred = np.cumsum(rng.uniform(0.5, 3.0, (n, t, 2)) * [1.0, 0.3], axis=1)
    pred[3, 5] = np.nan  # a scene that ends before the horizon
    boxes = []
    for i in range(n):
        row = []
        for k in range(t):
            m = int(rng.integers(0, 4))
            if (i + k) % 5 == 4:
                row.append(None)
                continue
            xy = pred[i, k] + rng.normal(0, 3.0, (m, 2)) if np.isfinite(pred[i, k]).all() \
                else rng.normal(0, 3.0, (m, 2))
            row.append(np.column_stack([xy, rng.uniform(0.5, 2.5, (m, 2)),
                                        rng.uniform(-np.pi, np.pi, m)]))
        boxes.append(row)
    got = collisions(pred, boxes, ego_width_m=1.9, ego_length_m=4.6)
    yaw = np.arctan2(*np.flip(np.diff(np.concatenate([np.zeros((n, 1, 2)), pred], 1), axis=1),
                              axis=-1).transpose(2, 0, 1))
    hits = 0
    for i in range(n):
        for k in range(t):
            b = boxes[i][k]
            if b is None or not np.isfinite(pred[i, k]).all():
                assert math.isnan(got[i, k])
                continue
            ego = ((float(pred[i, k, 0]), float(pred[i, k, 1])), (4.6, 1.9),
                   math.degrees(float(yaw[i, k])))
            want = any(
                cv2.rotatedRectangleIntersection(
                    ego, ((float(x), float(y)), (float(ln), float(w)), math.degrees(float(a)))
                )[0] != cv2.INTERSECT_NONE
                for x, y, w, ln, a in b
            )
            hits += want
            assert got[i, k] == float(want), (i, k)
    assert hits >= 3  # the case exercises both outcomes


def test_ego_status_ablation_names_both_runs():
    pred = np.zeros((1, 6, 2))
    a = planning_metrics(pred + 0.5, pred, ego_status=True)
    b = planning_metrics(pred + 1.0, pred, ego_status=False)
    out = ego_status_ablation(a, b)
    assert set(out) == {
        "with_ego_status",
        "without_ego_status (ablation)",
        "difference (without - with)",
    }
    assert out["difference (without - with)"]["L2_at_1s_m"] == pytest.approx(math.sqrt(2) / 2)


def test_control_errors():
    v = np.array([10.0, 10.0, 0.5, np.nan])
    yaw_rate = np.array([0.0, 0.1, 0.1, 0.1])
    ref = front_wheel_angle_from_yaw_rate(yaw_rate, v)
    assert ref[0] == 0 and ref[1] == pytest.approx(math.atan(2.588 * 0.1 / 10)) and np.isnan(ref[2])
    e = control_errors(
        np.array([0.01, ref[1], 0.3, 0.0]),
        np.array([11.0, 9.0, 0.5, 1.0]),
        v,
        can_yaw_rate_radps=yaw_rate,
    )
    assert e.num_steer == 2 and e.steer_mae_rad == pytest.approx(0.005)
    assert e.num_speed == 3 and e.speed_mae_mps == pytest.approx(2 / 3)
    e2 = control_errors(
        np.array([0.1]),
        np.array([1.0]),
        np.array([1.0]),
        can_steering_wheel_rad=np.array([1.5]),
        steering_ratio=15.0,
    )
    assert e2.steer_reference == "steering_wheel/ratio" and e2.steer_mae_rad == pytest.approx(0)
    wp = np.zeros((1, 6, 2))
    wp[0, 0] = [3.0, 4.0]
    assert planned_speed_mps(wp)[0] == 10.0


def test_aeb_precision_recall():
    speed = np.array([10.0, 10.0, 10.0, 0.0])
    stop = stopping_distance_m(speed)
    assert stop[0] == pytest.approx(10 * 0.2 + 100 / 12 + 0.5)
    dist = np.array([5.0, 50.0, 5.0, np.inf])
    fired = np.array([True, True, False, False])
    m = aeb_metrics(fired, dist, speed)
    assert (m.precision, m.recall, m.num_needed, m.num_fired) == (0.5, 0.5, 2, 2)
    assert m.false_alarm_rate == 0.5
    boxes = np.array([[12.0, 0.5, 1.8, 4.0, 0.0], [5.0, 6.0, 1.8, 4.0, 0.0]])
    assert in_path_distance_m(boxes) == pytest.approx(10.0 - 4.084 / 2)
    assert in_path_distance_m(boxes[1:]) == math.inf


def test_aeb_metric_uses_the_controllers_stopping_distance():
    # 12 m ahead at 10 m/s: inside the stopping distance of a 3 m/s^2 brake (19.2 m), not of
    # the default 6 m/s^2 one (10.8 m). The metric must follow the controller's config.
    speed, dist, fired = np.array([10.0]), np.array([12.0]), np.array([True])
    assert aeb_metrics(fired, dist, speed).num_needed == 0
    soft = ControlConfig(aeb_decel_mps2=3.0)
    assert aeb_metrics(fired, dist, speed, control=soft).num_needed == 1
    assert stopping_distance_m(10.0, soft) == pytest.approx(2.0 + 100 / 6 + 0.5)
    assert isinstance(stopping_distance_m(10.0), float)


def test_future_boxes_from_nuscenes(nusc):
    first = next(s for s in nusc.sample if not s["prev"])
    steps = nuscenes_future_boxes(nusc, first["token"])
    assert len(steps) == 6 and all(b is not None for b in steps)
    # The step-1 boxes are the next keyframe's agent annotations, moved to this ego frame.
    nxt = nusc.get("sample", first["next"])
    n_agents = sum(
        nusc.get("sample_annotation", t)["category_name"].split(".")[0] in ("vehicle", "human")
        and nusc.get("sample_annotation", t)["category_name"] != "vehicle.emergency.police"
        for t in nxt["anns"]
    )
    assert steps[0].shape == (n_agents, 5)
    last = next(s for s in nusc.sample if not s["next"])
    assert all(b is None for b in nuscenes_future_boxes(nusc, last["token"]))
