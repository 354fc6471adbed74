"""Voxelization range edges, one axis at a time on both sides, with known answers (no data
files needed): ``[min, max)`` per axis, and floor (not truncation toward zero) below ``min``."""

from __future__ import annotations

import numpy as np
import pytest

from perception.ops.voxelize import (
    dynamic_voxelize,
    dynamic_voxelize_reference,
    hard_voxelize,
    hard_voxelize_reference,
)

SIZE = (0.5, 0.25, 1.0)
RANGE = (-2.0, -1.0, -3.0, 2.0, 1.0, 1.0)  # grid 8 x 8 x 4, every minimum negative
GRID_XYZ = (8, 8, 4)
INSIDE = (0.1, 0.1, -0.5)  # voxel x 4, y 4, z 2


def _probe(axis: int, value: float) -> np.ndarray:
    p = np.array([[*INSIDE, 7.0]], np.float32)
    p[0, axis] = value
    return p


def _cases():
    for axis, name in enumerate("xyz"):
        lo, hi, size = RANGE[axis], RANGE[axis + 3], SIZE[axis]
        yield name, axis, lo, 0  # exactly on the minimum: first voxel
        yield name, axis, lo + 0.3 * size, 0
        # Below the minimum by less than a voxel: (p - min) / size is in (-1, 0); floor gives
        # -1 (outside), truncation toward zero would wrongly give voxel 0.
        yield name, axis, lo - 0.3 * size, -1
        yield name, axis, lo - 1.7 * size, -1
        yield name, axis, hi - 0.3 * size, GRID_XYZ[axis] - 1  # last voxel
        yield name, axis, hi, -1  # the maximum itself is outside ([min, max))
        yield name, axis, hi + 0.3 * size, -1


@pytest.mark.parametrize(("name", "axis", "value", "index"), list(_cases()))
def test_range_edges_per_axis(name, axis, value, index):
    pts = _probe(axis, value)
    expected = [2, 4, 4]  # (z, y, x) of INSIDE
    if index < 0:
        expected = [-1, -1, -1]
    else:
        expected[2 - axis] = index
    np.testing.assert_array_equal(dynamic_voxelize(pts, SIZE, RANGE), [expected])
    np.testing.assert_array_equal(dynamic_voxelize_reference(pts, SIZE, RANGE), [expected])
    for fn in (hard_voxelize, hard_voxelize_reference):
        voxels, coords, counts = fn(pts, SIZE, RANGE, 4, 10)
        if index < 0:
            assert coords.shape == (0, 3) and voxels.shape[0] == 0
        else:
            assert coords.tolist() == [expected] and counts.tolist() == [1]
            assert voxels[0, 0].tolist() == pts[0].tolist()


def test_negative_coordinates_floor_inside_the_range():
    # Every point below zero on every axis: voxel = floor((p - min) / size).
    pts = np.array([[-1.99, -0.99, -2.99, 0], [-0.01, -0.01, -0.01, 0], [-1.5, -0.5, -2.0, 0]],
                   np.float32)
    want = [[0, 0, 0], [2, 3, 3], [1, 2, 1]]
    np.testing.assert_array_equal(dynamic_voxelize(pts, SIZE, RANGE), want)
    _, coords, _ = hard_voxelize(pts, SIZE, RANGE, 4, 10)
    assert coords.tolist() == want
