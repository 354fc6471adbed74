import numpy as np

from calibration.se3 import SE3
from sensors.ultrasonic_layout import default_layout
from sensors.virtual_ultrasonic import GROUND_HEIGHT_M, virtual_ultrasonic


def _wall(x, y_range=(-3, 3), z_range=(0.0, 1.5), step=0.02):
    y, z = np.meshgrid(np.arange(*y_range, step), np.arange(*z_range, step))
    return np.c_[np.full(y.size, x), y.ravel(), z.ravel()]


def test_wall_ahead_seen_by_front_sensors_only():
    lay = default_layout()
    scan = virtual_ultrasonic(_wall(lay.position_ego_m[2, 0] + 2.0), lay, 5)
    assert scan.derived and scan.timestamp_us == 5
    front = scan.ranges_m[:6]
    # Centre sensors look straight at the wall 2 m (centre) / 2.25 m (corner) ahead.
    np.testing.assert_allclose(front[2:4], 2.0, atol=0.02)
    assert np.all(np.isfinite(front))
    assert np.all(np.isnan(scan.ranges_m[6:]))


def test_ground_below_threshold_and_out_of_range_ignored():
    lay = default_layout()
    x0 = lay.position_ego_m[2, 0]
    ground = np.c_[np.linspace(x0 + 0.3, x0 + 5, 200), np.zeros(200), np.full(200, 0.05)]
    too_close = np.array([[x0 + 0.1, lay.position_ego_m[2, 1], 0.5]])
    too_far = np.array([[x0 + 6.0, lay.position_ego_m[2, 1], 0.5]])
    low = np.array([[x0 + 1.0, lay.position_ego_m[2, 1], GROUND_HEIGHT_M]])
    scan = virtual_ultrasonic(np.concatenate([ground, too_close, too_far, low]), lay)
    assert np.all(np.isnan(scan.ranges_m))
    ok = np.array([[x0 + 1.0, lay.position_ego_m[2, 1], GROUND_HEIGHT_M + 0.05]])
    scan = virtual_ultrasonic(np.concatenate([ground, ok]), lay)
    assert scan.ranges_m[2] == np.float32(np.linalg.norm(ok[0] - lay.position_ego_m[2]))


def test_cone_half_angle():
    lay = default_layout()
    pos, yaw = lay.position_ego_m[7], lay.yaw_ego_rad[7]
    for ang, seen in ((lay.half_fov_rad - 0.01, True), (lay.half_fov_rad + 0.01, False)):
        d = np.array([np.cos(yaw + ang), np.sin(yaw + ang), 0.0]) * 2.0
        scan = virtual_ultrasonic((pos + d)[None], lay)
        assert np.isfinite(scan.ranges_m[7]) == seen


def test_real_frame_ranges_valid(frame, frame_lidar):
    pts = SE3.from_matrix(np.array(frame["lidar"]["lidar2ego"])).transform_points(
        frame_lidar.xyz.astype(np.float64)
    )
    scan = virtual_ultrasonic(pts)
    r = scan.ranges_m[np.isfinite(scan.ranges_m)]
    assert np.all((r >= 0.15) & (r <= 5.5))
    # The ego-body returns (within 1 m of the roof LiDAR) never reach a bumper cone.
    body = pts[np.linalg.norm(frame_lidar.xyz, axis=1) < 1.0]
    assert np.all(np.isnan(virtual_ultrasonic(body).ranges_m))


def test_empty_input():
    assert np.all(np.isnan(virtual_ultrasonic(np.zeros((0, 3))).ranges_m))
