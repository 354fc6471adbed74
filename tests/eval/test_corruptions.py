"""eval.corruptions: each corruption changes its input as its table says; severity 0 is the
identity; draws depend only on (seed, sample token, corruption)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from model_synth import make_sample

from calibration.se3 import SE3
from eval.corruptions import (
    CORRUPTION_NAMES,
    CameraFrameRef,
    SampleContext,
    corrupt,
    fog_margin,
    get_corruption,
    lidar_rings,
    plasma_fractal,
)
from sensors.lidar_rings import NUM_RINGS, RING_ELEVATION_MAX_DEG, RING_ELEVATION_MIN_DEG
from sensors.types import ACCUMULATED_COLUMNS, LidarSweep, UltrasonicScan

ORIGIN = np.array([0.5, 0.0, 1.8])
CTX = SampleContext(sweep_origins=((0.0, ORIGIN), (0.05, ORIGIN + [-0.5, 0, 0])))


def ring_sweep(range_m: float = 20.0, per_ring: int = 360, lag_s: float = 0.0) -> np.ndarray:
    """Points on all 32 HDL-32E rings, ``per_ring`` azimuths, at one range from ORIGIN."""
    elev = np.radians(np.linspace(RING_ELEVATION_MIN_DEG, RING_ELEVATION_MAX_DEG, NUM_RINGS))
    az = np.radians(np.arange(per_ring) * 360.0 / per_ring - 180.0 + 0.5)
    e, a = np.meshgrid(elev, az, indexing="ij")
    d = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)
    origin = ORIGIN + ([-0.5, 0, 0] if lag_s else 0)
    xyz = origin + range_m * d
    n = len(xyz)
    return np.c_[xyz, np.full(n, 80.0), np.full(n, lag_s)].astype(np.float32)


@pytest.fixture(scope="module")
def sample():
    s = make_sample(seed=1, image_hw=(90, 160))
    pts = np.concatenate([ring_sweep(), ring_sweep(25.0, lag_s=0.05)])
    return replace(s, lidar=LidarSweep(pts, ACCUMULATED_COLUMNS, s.timestamp_us, frame="ego"))


def gray_sample(sample, value: int = 128):
    cams = tuple(replace(c, image=replace(c.image, image=np.full_like(c.image.image, value)))
                 for c in sample.cameras)
    return replace(sample, cameras=cams)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_severity_zero_is_identity_and_seed_fixes_output(sample, name):
    assert corrupt(sample, name, 0, seed=3, context=CTX) is sample
    a = corrupt(sample, name, 2, seed=3, context=CTX)
    b = corrupt(sample, name, 2, seed=3, context=CTX)
    for x, y in ((a.lidar, b.lidar), (a.ultrasonic, b.ultrasonic)):
        assert (x is None) == (y is None)
    if a.lidar is not None:
        np.testing.assert_array_equal(a.lidar.points, b.lidar.points)
    for ca, cb in zip(a.cameras, b.cameras):
        assert (ca is None) == (cb is None)
        if ca is not None:
            np.testing.assert_array_equal(ca.image.image, cb.image.image)
            np.testing.assert_array_equal(ca.ref_SE3_cam.as_matrix(), cb.ref_SE3_cam.as_matrix())
    if a.ultrasonic is not None:
        np.testing.assert_array_equal(a.ultrasonic.ranges_m, b.ultrasonic.ranges_m)


def test_draws_do_not_depend_on_order_and_do_depend_on_seed(sample):
    first = corrupt(sample, "lidar_density", 3, seed=0, context=CTX).lidar.points
    corrupt(sample, "lidar_gaussian", 3, seed=0, context=CTX)  # another draw in between
    again = corrupt(sample, "lidar_density", 3, seed=0, context=CTX).lidar.points
    np.testing.assert_array_equal(first, again)
    other = corrupt(sample, "lidar_density", 3, seed=1, context=CTX).lidar.points
    assert len(other) != len(first) or not np.array_equal(other, first)


def test_rings_of_the_fixture_sweep(sample):
    rings = lidar_rings(sample.lidar.points, CTX)
    # Each sweep measured from its own origin: every ring holds 360 points of each sweep.
    np.testing.assert_array_equal(np.bincount(rings, minlength=NUM_RINGS), 720)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_beam_missing_drops_k_rings(sample, severity):
    k = get_corruption("lidar_beam_missing").level(severity)
    out = corrupt(sample, "lidar_beam_missing", severity, context=CTX).lidar.points
    kept = np.unique(lidar_rings(out, CTX))
    assert len(kept) == NUM_RINGS - k
    assert len(out) == (NUM_RINGS - k) * 720


def test_cross_sensor_keeps_rings_and_every_second_point(sample):
    out = corrupt(sample, "lidar_cross_sensor", 3, context=CTX).lidar.points
    rings = lidar_rings(out, CTX)
    assert len(np.unique(rings)) == 16
    np.testing.assert_array_equal(np.bincount(rings)[np.unique(rings)], 360)  # half of 720


@pytest.mark.parametrize("severity", [1, 5])
def test_density_share_kept(sample, severity):
    drop = get_corruption("lidar_density").level(severity)
    out = corrupt(sample, "lidar_density", severity, context=CTX).lidar
    assert out.num_points / sample.lidar.num_points == pytest.approx(1 - drop, abs=0.02)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_fov_lost_bounds(sample, severity):
    half = get_corruption("lidar_fov_lost").level(severity)
    pts = sample.lidar.points
    out = corrupt(sample, "lidar_fov_lost", severity, context=CTX).lidar.points
    ox = ORIGIN[0] - 0.5 * (out[:, 4] > 0)  # the earlier sweep's origin sits 0.5 m behind
    az = np.degrees(np.arctan2(out[:, 1] - ORIGIN[1], out[:, 0] - ox))
    assert np.abs(az).max() <= half + 1e-6
    az_in = np.degrees(np.arctan2(pts[:, 1], pts[:, 0] - (ORIGIN[0] - 0.5 * (pts[:, 4] > 0))))
    assert len(out) == int(np.count_nonzero(np.abs(az_in) <= half))


def test_gaussian_noise_statistics(sample):
    sigma = get_corruption("lidar_gaussian").level(4)
    out = corrupt(sample, "lidar_gaussian", 4, context=CTX).lidar.points
    d = (out[:, :3] - sample.lidar.points[:, :3]).ravel()
    assert d.std() == pytest.approx(sigma, rel=0.03)
    assert abs(d.mean()) < 0.01
    np.testing.assert_array_equal(out[:, 3:], sample.lidar.points[:, 3:])


def test_crosstalk_adds_points_on_existing_rays(sample):
    share = get_corruption("lidar_crosstalk").level(5)
    pts = sample.lidar.points
    out = corrupt(sample, "lidar_crosstalk", 5, context=CTX).lidar.points
    n = len(pts)
    assert len(out) - n == round(share * n)
    np.testing.assert_array_equal(out[:n], pts)
    new = out[n:]
    origin = np.where((new[:, 4] > 0)[:, None], ORIGIN + [-0.5, 0, 0], ORIGIN)
    # Each false return's direction from its origin is one of the fixture's beam directions.
    elev = np.degrees(np.arctan2(new[:, 2] - origin[:, 2],
                                 np.hypot(*(new[:, :2] - origin[:, :2]).T)))
    step = (RING_ELEVATION_MAX_DEG - RING_ELEVATION_MIN_DEG) / (NUM_RINGS - 1)
    frac = (elev - RING_ELEVATION_MIN_DEG) / step
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-3)


def test_motion_compensation_error_moves_only_earlier_sweeps(sample):
    v, _ = get_corruption("lidar_motion_comp").level(5)
    pts = np.array([[0, 0, 1, 50, 0.0], [0, 0, 1, 50, 0.05], [0, 0, 1, 50, 0.45]], np.float32)
    s = replace(sample, lidar=LidarSweep(pts, ACCUMULATED_COLUMNS, 0, frame="ego"))
    out = corrupt(s, "lidar_motion_comp", 5, context=CTX).lidar.points
    shift = np.linalg.norm(out[:, :3] - pts[:, :3], axis=1)
    # A point on the rotation axis moves by exactly the velocity error times its lag.
    np.testing.assert_allclose(shift, [0.0, v * 0.05, v * 0.45], atol=1e-5)


def test_object_failure_removes_whole_objects(sample):
    s = make_sample(seed=2, num_boxes=6, background_points=500)
    s = replace(s, lidar=replace(s.lidar, points=np.c_[s.lidar.points[:, :4],
                                                       np.zeros(s.lidar.num_points)]))
    inside = s.boxes.points_in_boxes(s.lidar.xyz)
    out = corrupt(s, "lidar_object_failure", 5, context=CTX).lidar.points
    after = s.boxes.points_in_boxes(out[:, :3])
    before_n, after_n = inside.sum(1), after.sum(1)
    assert np.all((after_n == 0) | (after_n == before_n))  # an object keeps all or nothing
    assert (after_n == 0).sum() >= 1
    outside = ~inside.any(0)
    assert (~after.any(0)).sum() == outside.sum()  # nothing outside the boxes is touched


def test_fog_attenuation_and_backscatter(sample):
    assert np.all(fog_margin(np.array([1.0, 50.0, 100.0]), np.array([1.0, 1.0, 1.0]), 0.0) >= 1)
    far = ring_sweep(range_m=60.0)
    s = replace(sample, lidar=LidarSweep(far, ACCUMULATED_COLUMNS, 0, frame="ego"))
    light = corrupt(s, "lidar_fog", 1, context=CTX).lidar.points
    heavy = corrupt(s, "lidar_fog", 5, context=CTX).lidar.points

    def ranges(p):
        return np.linalg.norm(p[:, :3] - ORIGIN, axis=1)

    # alpha 0.005: margin (1 + 0.31 * 4) * exp(-0.6) = 1.23 at 60 m: every hard return survives.
    assert np.count_nonzero(np.isclose(ranges(light), 60.0, atol=1e-3)) == len(far)
    # alpha 0.06: exp(-7.2) kills every hard return; what is left is backscatter near the car.
    assert np.count_nonzero(np.isclose(ranges(heavy), 60.0, atol=1e-3)) == 0
    assert len(heavy) > 0.5 * len(far)
    assert ranges(heavy).max() < 20.0 and ranges(heavy).min() >= 1.5


@pytest.mark.parametrize("severity", [1, 3])
def test_camera_gaussian_noise_sigma(sample, severity):
    sigma = get_corruption("camera_gaussian").level(severity)
    g = gray_sample(sample)
    out = corrupt(g, "camera_gaussian", severity)
    d = np.concatenate([(c.image.image.astype(float) - 128).ravel() for c in out.cameras]) / 255
    assert d.std() == pytest.approx(sigma, rel=0.05)


def test_camera_impulse_amount(sample):
    amount = get_corruption("camera_impulse").level(4)
    out = corrupt(gray_sample(sample), "camera_impulse", 4)
    vals = np.concatenate([c.image.image.ravel() for c in out.cameras])
    assert np.isin(vals, (0, 255)).mean() == pytest.approx(amount, abs=0.01)
    assert (vals == 0).mean() == pytest.approx(amount / 2, abs=0.01)


def test_camera_brightness_adds_to_hsv_value(sample):
    c = get_corruption("camera_brightness").level(2)
    out = corrupt(gray_sample(sample), "camera_brightness", 2)
    assert np.all(out.cameras[0].image.image == int((128 / 255 + c) * 255))


def test_low_light_darkens_with_severity(sample):
    means = [np.mean([c.image.image.mean() for c in corrupt(sample, "camera_low_light", s).cameras])
             for s in (1, 3, 5)]
    assert means[0] > means[1] > means[2]
    assert means[2] < 0.5 * np.mean([c.image.image.mean() for c in sample.cameras])


def test_motion_blur_keeps_mean_and_smooths(sample):
    out = corrupt(sample, "camera_motion_blur", 5)
    a, b = sample.cameras[0].image.image.astype(float), out.cameras[0].image.image.astype(float)
    assert b.mean() == pytest.approx(a.mean(), rel=0.02)
    assert np.abs(cv2.Laplacian(b, cv2.CV_64F)).mean() < 0.3 * np.abs(
        cv2.Laplacian(a, cv2.CV_64F)).mean()


def test_plasma_fractal_range():
    f = plasma_fractal(64, 2.0, np.random.default_rng(0))
    assert f.shape == (64, 64) and f.min() == 0.0 and f.max() == 1.0


def test_occlusion_covers_about_the_share(sample):
    share = get_corruption("camera_occlusion").level(4)
    out = corrupt(sample, "camera_occlusion", 4)
    mud = np.array([60, 45, 30])
    cover = np.mean([np.all(np.abs(c.image.image.astype(int) - mud) <= 2, -1).mean()
                     for c in out.cameras])
    assert share * 0.6 <= cover <= share * 1.6


@pytest.mark.parametrize("severity", [1, 4])
def test_cameras_missing(sample, severity):
    out = corrupt(sample, "camera_missing", severity)
    assert sum(c is None for c in out.cameras) == severity
    assert all(c is None for c in corrupt(sample, "camera_all_missing", 1).cameras)


def _angle_deg(a: SE3, b: SE3) -> float:
    r = a.rotation.T @ b.rotation
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


@pytest.mark.parametrize("severity", [1, 5])
def test_extrinsic_error_angle(sample, severity):
    theta = get_corruption("camera_extrinsic_one").level(severity)
    one = corrupt(sample, "camera_extrinsic_one", severity)
    angles = [_angle_deg(a.ref_SE3_cam, b.ref_SE3_cam) for a, b in zip(sample.cameras, one.cameras)]
    assert sorted(angles)[-1] == pytest.approx(theta, abs=1e-6)
    assert sorted(angles)[-2] == pytest.approx(0.0, abs=1e-6)
    every = corrupt(sample, "camera_extrinsic_all", severity)
    angles = [_angle_deg(a.ref_SE3_cam, b.ref_SE3_cam)
              for a, b in zip(sample.cameras, every.cameras)]
    np.testing.assert_allclose(angles, theta, atol=1e-6)
    for a, b in zip(sample.cameras, every.cameras):  # the camera position is not moved
        np.testing.assert_allclose(a.ref_SE3_cam.translation, b.ref_SE3_cam.translation)


def test_stale_camera_reads_the_recorded_earlier_frame(sample, tmp_path):
    cam = sample.cameras[0]
    old = np.full_like(cam.image.image, 7)
    path = tmp_path / "old.png"
    cv2.imwrite(str(path), old)
    t = cam.image.timestamp_us
    history = ((CameraFrameRef(t - 90_000, str(path), cam.image.intrinsics),),) + ((),) * 5
    out = corrupt(sample, "camera_stale", 2, context=SampleContext(camera_history=history))
    np.testing.assert_array_equal(out.cameras[0].image.image, old)
    assert out.cameras[0].image.timestamp_us == t  # delivered as if it were current
    np.testing.assert_array_equal(out.cameras[0].ref_SE3_cam.as_matrix(),
                                  cam.ref_SE3_cam.as_matrix())


def test_stale_camera_fallback_shifts_by_the_ego_motion(sample):
    t0 = sample.timestamp_us
    speed = 10.0
    poses = tuple((t0 + k * 50_000, SE3(np.eye(3), [speed * k * 0.05, 0, 0]))
                  for k in range(-2, 21))
    s = replace(sample, global_SE3_ego=SE3.identity())
    stale = get_corruption("camera_stale").level(5)
    out = corrupt(s, "camera_stale", 5, context=SampleContext(ego_poses=poses))
    for a, b in zip(s.cameras, out.cameras):
        np.testing.assert_array_equal(a.image.image, b.image.image)
        d = b.ref_SE3_cam.translation - a.ref_SE3_cam.translation
        np.testing.assert_allclose(d, [speed * stale * 1e-6, 0, 0], atol=1e-9)


def test_ultrasonic_failures(sample):
    full = replace(sample, ultrasonic=UltrasonicScan(np.full(12, 3.0), 0))
    out = corrupt(full, "ultrasonic_some_failed", 3).ultrasonic.ranges_m
    assert np.isnan(out).sum() == get_corruption("ultrasonic_some_failed").level(3)
    echo = corrupt(full, "ultrasonic_false_echo", 5).ultrasonic.ranges_m
    k = get_corruption("ultrasonic_false_echo").level(5)
    assert (echo <= 0.8).sum() == k and (echo >= 0.2).all() and (echo == 3.0).sum() == 12 - k
    assert corrupt(full, "ultrasonic_missing", 1).ultrasonic is None


def test_unknown_corruption_and_bad_severity(sample):
    with pytest.raises(ValueError, match="known:"):
        corrupt(sample, "lidar_snow", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(sample, "lidar_density", 6)


@pytest.mark.parametrize("name", ["camera_gaussian", "camera_fog", "camera_occlusion"])
def test_corrupted_image_forgets_its_file(sample, name):
    # Pipeline re-decodes a camera from CameraImage.source when it was read at another
    # reduction than training's: a corrupted image must not point at the clean file.
    cams = tuple(replace(c, image=replace(c.image, source="/data/cam.jpg")) for c in sample.cameras)
    with_files = replace(sample, cameras=cams)
    assert all(c.image.source == "" for c in corrupt(with_files, name, 3).cameras)
    assert corrupt(with_files, name, 0).cameras[0].image.source == "/data/cam.jpg"
