"""AEB branches a safety review asks for: reversing (rear cone), a short box within half a
metre of the bumper, and speeds near zero. Each case states the known answer."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.sample import Boxes3D
from calibration.ultrasonic_layout import FRONT_BUMPER_X_M, default_layout
from perception.control import ControlConfig, compute_control, stopping_distance_m
from sensors.types import DETECTION_CLASSES, UltrasonicScan

CFG = ControlConfig()
LAYOUT = default_layout()
FRONT_CENTRE, REAR_CENTRE = 2, 8  # boresights 5 deg and -175 deg
FRONT_CORNER, REAR_DIAGONAL, REAR_CORNER = 0, 7, 6  # 70, -145 and -110 deg


def path(speed: float, n: int = 6, dt: float = 0.5) -> np.ndarray:
    """Straight waypoints at ``speed`` (negative: backwards)."""
    return np.column_stack([np.arange(1, n + 1) * speed * dt, np.zeros(n)])


def echo(sensor: int, range_m: float) -> UltrasonicScan:
    r = np.full(12, np.nan, np.float32)
    r[sensor] = range_m
    return UltrasonicScan(r, 0)


def aeb_us(speed: float, sensor: int, range_m: float) -> bool:
    cmd = compute_control(path(speed), speed, ultrasonic=echo(sensor, range_m), layout=LAYOUT)
    assert cmd.aeb == bool(cmd.reason)
    return cmd.aeb


def box(x: float, y: float, wlh=(1.9, 4.5, 1.6), label: str = "car") -> Boxes3D:
    return Boxes3D([[x, y, 0.5]], [list(wlh)], [0.0], [[0.0, 0.0]],
                   [DETECTION_CLASSES.index(label)], [0.9])


def test_reversing_brakes_on_the_rear_cone_only():
    v = -1.0
    d_stop = stopping_distance_m(v, CFG)
    assert d_stop == pytest.approx(1.0 * 0.2 + 1.0 / 12.0 + 0.5)
    assert aeb_us(v, REAR_CENTRE, 0.5 * d_stop)
    assert aeb_us(v, REAR_DIAGONAL, 0.3)  # 35 deg off the backward axis, echo in the corridor
    assert not aeb_us(v, REAR_CENTRE, d_stop + 0.2)  # beyond the stopping distance
    assert not aeb_us(v, REAR_CORNER, 0.3)  # 70 deg off the backward axis: beside us
    assert not aeb_us(v, FRONT_CENTRE, 0.3)  # we move away from what is in front
    # Forwards the same echoes swap roles.
    assert aeb_us(1.0, FRONT_CENTRE, 0.3) and not aeb_us(1.0, REAR_CENTRE, 0.3)


def test_reversing_ignores_boxes_ahead():
    v = -1.0
    close_ahead = box(FRONT_BUMPER_X_M + 0.2 + 2.25, 0.0)  # rear face 0.2 m ahead
    assert not compute_control(path(v), v, detections=close_ahead).aeb
    # Still rolling back while the plan already points forwards: we move away from the box,
    # so it is not a reason to brake now (the forward case fires).
    assert not compute_control(path(0.5), v, detections=close_ahead).aeb
    assert compute_control(path(0.5), 0.5, detections=close_ahead).aeb


def test_speeds_near_zero():
    assert stopping_distance_m(0.0, CFG) == CFG.margin_m == 0.5
    # Standing still: only the margin is left to brake for.
    assert aeb_us(0.0, FRONT_CENTRE, 0.4) and not aeb_us(0.0, FRONT_CENTRE, 0.6)
    assert not aeb_us(0.0, REAR_CENTRE, 0.2)  # standing still counts as forwards
    # Creeping back slower than 0.1 m/s is still treated as standing (front cone).
    assert aeb_us(-0.05, FRONT_CENTRE, 0.4) and not aeb_us(-0.05, REAR_CENTRE, 0.2)
    assert aeb_us(-0.15, REAR_CENTRE, 0.2) and not aeb_us(-0.15, FRONT_CENTRE, 0.2)
    # A box 0.3 m ahead of a standing car is within the 0.5 m margin; 0.8 m is not.
    near, far = box(FRONT_BUMPER_X_M + 0.3 + 2.25, 0.0), box(FRONT_BUMPER_X_M + 0.8 + 2.25, 0.0)
    cmd = compute_control(path(0.0), 0.0, detections=near)
    assert cmd.aeb and cmd.reason == "box car in path at 0.3 m"
    assert not compute_control(path(0.0), 0.0, detections=far).aeb


def test_short_box_within_half_a_metre_of_the_bumper():
    v = 2.0
    # A traffic cone 0.3 m long whose whole footprint lies 0.1 .. 0.4 m behind the bumper
    # line (under the bonnet overhang in the box's own frame): it is touching us, brake.
    cone = box(FRONT_BUMPER_X_M - 0.25, 0.0, wlh=(0.3, 0.3, 0.7), label="traffic_cone")
    cmd = compute_control(path(v), v, detections=cone)
    assert cmd.aeb and cmd.reason == "box traffic_cone in path at 0.0 m"
    # The same cone 1 m behind the bumper line beside the front door is not in our way.
    beside = box(FRONT_BUMPER_X_M - 1.0, 1.0, wlh=(0.3, 0.3, 0.7), label="traffic_cone")
    assert not compute_control(path(v), v, detections=beside).aeb
