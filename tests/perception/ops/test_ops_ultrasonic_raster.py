import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.ops.ultrasonic_raster import ultrasonic_raster, ultrasonic_raster_reference
from sensors.ultrasonic_layout import default_layout

BEV = (-8.0, -8.0, 8.0, 8.0)


def both(*args):
    got = ultrasonic_raster(*args)
    assert got.tobytes() == ultrasonic_raster_reference(*args).tobytes()
    return got


def test_single_sensor_known_answer():
    # One sensor at the origin looking +x, 30 deg half-FOV, echo at 2 m, 0.1 m cells.
    out = both([2.0], [[0.0, 0.0, 0.5]], [0.0], np.radians(30), 5.0, (-1, -1, 4, 1), (20, 50))
    free, occ = out
    xs = -1 + (np.arange(50) + 0.5) * 0.1
    t = 0.5 * np.hypot(0.1, 0.1)
    row = 10  # y = 0.05: on the axis, nearly
    in_cone = np.degrees(np.arctan2(0.05, xs)) <= 30
    np.testing.assert_array_equal(occ[row], (np.abs(np.hypot(xs, 0.05) - 2) <= t) & in_cone)
    np.testing.assert_array_equal(free[row], (np.hypot(xs, 0.05) < 2 - t) & in_cone)
    assert occ[:, xs < 0].sum() == 0 and free[:, xs < 0].sum() == 0  # nothing behind
    assert not np.any(free.astype(bool) & occ.astype(bool))
    # Cone edge: y/x = tan(30 deg) line; a cell at 40 deg bearing is out, at 20 deg is in.
    ys = -1 + (np.arange(20) + 0.5) * 0.1
    j, i = 14, np.argmin(np.abs(ys - 0.05))  # x = 0.45
    assert free[i, j] == 1
    bearing = np.degrees(np.arctan2(ys[:, None], xs[None, :]))
    assert np.all(free[np.abs(bearing) > 30.01] == 0)


def test_no_echo_is_free_to_max_range_and_nan_sensor():
    out = both([np.nan, np.inf, 9.0], [[0, 0, 0], [0, 0, 0], [0, 0, 0]], [0.0, np.pi, np.pi / 2],
               0.3, 3.0, BEV, (64, 64))
    assert out[1].sum() == 0  # no echo anywhere (9 m > max range 3 m)
    xs = -8 + (np.arange(64) + 0.5) * 0.25
    rho = np.hypot(xs[None, :], xs[:, None])
    assert np.all(out[0][rho > 3.0] == 0) and out[0][rho < 2.5].sum() > 0


def test_default_layout_real_geometry():
    lay = default_layout()
    rng = np.random.default_rng(0)
    ranges = rng.uniform(0.2, 5.0, 12)
    ranges[[2, 7]] = np.nan
    out = both(ranges, lay.position_ego_m, lay.yaw_ego_rad, lay.half_fov_rad, lay.max_range_m,
               (-10, -10, 10, 10), (200, 200))
    assert out.shape == (2, 200, 200) and out.dtype == np.float32
    assert out[1].sum() > 10 and out[0].sum() > out[1].sum()
    # Nothing inside the car's footprint between the bumpers (cones point outward).
    xs = -10 + (np.arange(200) + 0.5) * 0.1
    inner = (xs > -0.5) & (xs < 3.0)
    lateral = np.abs(xs) < 0.5
    assert out[:, lateral][:, :, inner].sum() == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), s=st.integers(1, 12),
       hw=st.tuples(st.integers(1, 40), st.integers(1, 40)))
def test_random_matches_reference(seed, s, hw):
    rng = np.random.default_rng(seed)
    ranges = rng.uniform(0, 6, s)
    ranges[rng.random(s) < 0.3] = np.nan
    if seed % 2:  # cell-aligned geometry: exact ties at band and cone edges
        ranges = np.round(ranges * 4) / 4
    pos = rng.uniform(-3, 3, (s, 3))
    if seed % 2:
        pos = np.round(pos * 2) / 2
    yaw = rng.uniform(-np.pi, np.pi, s)
    both(ranges, pos, yaw, rng.uniform(0.1, 1.2), 5.0, (-5, -4, 5, 4), hw)


def test_errors():
    lay = default_layout()
    with pytest.raises(ValueError, match="ranges"):
        ultrasonic_raster(-np.ones(12), lay.position_ego_m, lay.yaw_ego_rad, 0.5, 5, BEV, (8, 8))
    with pytest.raises(ValueError, match="must agree"):
        ultrasonic_raster(np.ones(11), lay.position_ego_m, lay.yaw_ego_rad, 0.5, 5, BEV, (8, 8))
    with pytest.raises(ValueError, match="half_fov_rad"):
        ultrasonic_raster(np.ones(12), lay.position_ego_m, lay.yaw_ego_rad, 2.0, 5, BEV, (8, 8))
