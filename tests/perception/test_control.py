import math

import numpy as np
import pytest

from calibration.sample import Boxes3D
from perception.control import (
    ControlConfig,
    compute_control,
    pure_pursuit_steer,
    stopping_distance_m,
)
from sensors.types import UltrasonicScan
from sensors.ultrasonic_layout import FRONT_BUMPER_X_M, default_layout

CFG = ControlConfig()


def straight(speed, n=6, dt=0.5):
    return np.column_stack([np.arange(1, n + 1) * speed * dt, np.zeros(n)])


def arc(radius, speed, left=True, n=6, dt=0.5):
    s = np.arange(1, n + 1) * speed * dt
    th = s / radius
    y = radius * (1 - np.cos(th))
    return np.column_stack([radius * np.sin(th), y if left else -y])


def box_at(x, y, label=0, score=0.9):
    return Boxes3D([[x, y, 0.8]], [[1.9, 4.5, 1.6]], [0.0], [[0.0, 0.0]], [label], [score])


def test_pure_pursuit_steers_left_for_left_curve_and_right_for_right_curve():
    left = pure_pursuit_steer(arc(20.0, 5.0, left=True), 5.0, CFG)
    right = pure_pursuit_steer(arc(20.0, 5.0, left=False), 5.0, CFG)
    assert left > 0.05 and right < -0.05
    assert left == pytest.approx(-right, rel=1e-9)
    # On a circle of radius R, pure pursuit's steering is the Ackermann angle atan(L / R).
    assert left == pytest.approx(math.atan(CFG.wheelbase_m / 20.0), rel=0.05)
    assert abs(pure_pursuit_steer(straight(5.0), 5.0, CFG)) < 1e-9


def test_speed_tracking_accelerates_and_brakes():
    faster = compute_control(straight(10.0), speed_mps=5.0)
    slower = compute_control(straight(2.0), speed_mps=8.0)
    assert faster.accel_mps2 > 0 and faster.brake == 0 and not faster.aeb
    assert slower.accel_mps2 < 0 and slower.brake > 0 and not slower.aeb


def test_aeb_fires_for_box_in_path_within_stopping_distance_only():
    v = 10.0
    d_stop = stopping_distance_m(v, CFG)
    near_x = FRONT_BUMPER_X_M + 0.5 * d_stop + 2.25  # rear face of the box at half d_stop
    cmd = compute_control(straight(v), v, detections=box_at(near_x, 0.0))
    assert cmd.aeb and cmd.brake == 1.0 and cmd.accel_mps2 == -CFG.aeb_decel_mps2
    assert "box car in path" in cmd.reason
    far = compute_control(straight(v), v, detections=box_at(FRONT_BUMPER_X_M + d_stop + 10, 0.0))
    beside = compute_control(straight(v), v, detections=box_at(near_x, 4.0))
    unsure = compute_control(straight(v), v, detections=box_at(near_x, 0.0, score=0.1))
    assert not far.aeb and not beside.aeb and not unsure.aeb


def test_aeb_follows_the_curved_path():
    v = 6.0
    traj = arc(15.0, v, left=True)
    # A box on the curve ahead (left of the straight line), close: in path.
    th = (FRONT_BUMPER_X_M + 3.0) / 15.0
    on_curve = box_at(15.0 * math.sin(th), 15.0 * (1 - math.cos(th)))
    assert compute_control(traj, v, detections=on_curve).aeb
    # The same distance straight ahead is off the curved path at that range? Use the mirror side.
    mirror = box_at(15.0 * math.sin(th), -15.0 * (1 - math.cos(th)) - 1.5)
    assert not compute_control(traj, v, detections=mirror).aeb


def test_aeb_from_forward_ultrasonic_not_from_corner_or_far_echo():
    layout = default_layout()
    v = 2.0
    d_stop = stopping_distance_m(v, CFG)
    ranges = np.full(12, np.nan, np.float32)
    ranges[2] = 0.5 * d_stop  # front centre-left sensor
    cmd = compute_control(straight(v), v, ultrasonic=UltrasonicScan(ranges, 0), layout=layout)
    assert cmd.aeb and cmd.reason.startswith("ultrasonic")
    corner = np.full(12, np.nan, np.float32)
    corner[0] = 0.3  # front-left corner sensor, looking 70 deg sideways
    us = UltrasonicScan(corner, 0)
    assert not compute_control(straight(v), v, ultrasonic=us, layout=layout).aeb
    far = np.full(12, np.nan, np.float32)
    far[2] = d_stop + 1.0
    us = UltrasonicScan(far, 0)
    assert not compute_control(straight(v), v, ultrasonic=us, layout=layout).aeb
    diagonal = np.full(12, np.nan, np.float32)
    diagonal[1] = 1.0  # 35 deg sensor: 1.0 m along its axis is 1.17 m left, beside the car
    us = UltrasonicScan(diagonal, 0)
    assert 1.0 < d_stop
    assert not compute_control(straight(v), v, ultrasonic=us, layout=layout).aeb
    diagonal[1] = 0.3  # the same sensor 0.3 m from an obstacle: in the corridor, brake
    us = UltrasonicScan(diagonal, 0)
    assert compute_control(straight(v), v, ultrasonic=us, layout=layout).aeb
    fast = 10.0  # above parking speed the 5.5 m ultrasonic cannot stop the car: no AEB from it
    assert not compute_control(straight(fast), fast, ultrasonic=us, layout=layout).aeb
    rear = np.full(12, np.nan, np.float32)
    rear[8] = 0.3  # a rear sensor does not stop forward motion
    us = UltrasonicScan(rear, 0)
    assert not compute_control(straight(v), v, ultrasonic=us, layout=layout).aeb
