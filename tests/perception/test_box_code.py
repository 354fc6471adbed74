"""The box code: a box encoded as a training target decodes back to itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.box_code import (
    NUM_REG,
    REG_CHANNELS,
    VELOCITY,
    VELOCITY_UNIT_MPS,
    decode_boxes,
    encode_box,
    output_to_target_units,
)
from perception.config import preset
from sensors.types import DrivingCommand


def test_encode_then_decode_gives_the_box_back():
    g = preset("tiny").grid
    ix, iy = 37, 52
    yaw = 2.5  # beyond pi/2: catches a swapped sin/cos or a wrong atan2 order
    target = np.array(encode_box((0.25, 0.75), 0.9, (1.9, 4.6, 1.7), yaw, (12.0, -3.0)))
    assert target.shape == (NUM_REG,) == (len(REG_CHANNELS),)
    # A perfect network outputs the target in output units (velocity / VELOCITY_UNIT_MPS).
    out = target / output_to_target_units("cpu").numpy()
    x, y, z, wlh, yaw_dec, vel = decode_boxes(out[None], np.array([ix]), np.array([iy]), g)
    assert x[0] == pytest.approx((ix + 0.25) * g.cell_m + g.x_range_m[0])
    assert y[0] == pytest.approx((iy + 0.75) * g.cell_m + g.y_range_m[0])
    assert z[0] == pytest.approx(0.9)
    np.testing.assert_allclose(wlh[0], (1.9, 4.6, 1.7), rtol=1e-12)
    assert yaw_dec[0] == pytest.approx(yaw)
    np.testing.assert_allclose(vel[0], (12.0, -3.0), rtol=1e-12)


def test_unknown_velocity_encodes_as_zero_and_units_scale_only_velocity():
    t = encode_box((0.0, 0.0), 0.0, (1.0, 1.0, 1.0), 0.0, None)
    assert t[VELOCITY] == (0.0, 0.0)
    assert t[REG_CHANNELS.index("cos_yaw")] == math.cos(0.0)
    unit = output_to_target_units("cpu").numpy()
    assert list(np.flatnonzero(unit != 1.0)) == [8, 9]
    assert unit[VELOCITY].tolist() == [VELOCITY_UNIT_MPS] * 2


def test_driving_command_values_are_the_trained_one_hot_positions():
    # Checkpoints were trained with 0 right, 1 left, 2 straight; a reorder would silently
    # swap turns.
    assert [int(c) for c in (DrivingCommand.RIGHT, DrivingCommand.LEFT,
                             DrivingCommand.STRAIGHT)] == [0, 1, 2]
