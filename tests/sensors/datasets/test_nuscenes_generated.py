"""The adapter on a tiny dataset from the synthetic generator (engineer B's sensors.sim)."""

import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from sensors.datasets.nuscenes import NuScenesDataset
from sensors.virtual_ultrasonic import virtual_ultrasonic

sim = pytest.importorskip("sensors.sim")


@pytest.fixture(scope="session")
def gen_root(tmp_path_factory):
    cfg = sim.SimConfig(num_scenes=1, scene_duration_s=2.0, num_workers=1, seed=3)
    return sim.generate_dataset(cfg, tmp_path_factory.mktemp("gen"), progress=False)


@pytest.fixture(scope="session")
def gen(gen_root):
    return NuScenesDataset(gen_root, num_sweeps=10)


@pytest.fixture(scope="session")
def gen_samples(gen):
    tokens = [t for s in gen.scene_tokens for t in gen.scene_sample_tokens(s)]
    return [gen.load_sample(t) for t in tokens]


def test_loads_every_keyframe_with_all_modalities(gen, gen_samples):
    assert gen.has_ultrasonic and gen.can_bus is not None
    assert len(gen_samples) == 4
    for s in gen_samples:
        assert s.camera_mask.all() and s.lidar.num_points > 1000
        assert s.ultrasonic is not None and not s.ultrasonic.derived
        assert s.can_bus is not None and len(s.boxes) > 0
        assert s.future_xy_ego_m.shape == (6, 2)
    assert gen.missing_files == []


def test_points_in_boxes_equal_num_lidar_pts(gen_samples):
    for s in gen_samples:
        ref = s.lidar.points[s.lidar.points[:, 4] == 0, :3]
        np.testing.assert_array_equal(s.boxes.points_in_boxes(ref).sum(1), s.boxes.num_lidar_pts)


def test_accumulation_matches_devkit(gen, gen_samples):
    nusc = gen.nusc
    s = gen_samples[-1]
    sample = nusc.get("sample", s.token)
    pc, times = LidarPointCloud.from_file_multisweep(nusc, sample, "LIDAR_TOP", "LIDAR_TOP", 10)
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pc.transform(transform_matrix(cs["translation"], Quaternion(cs["rotation"])))
    np.testing.assert_allclose(s.lidar.points[:, :3], pc.points[:3].T, atol=1e-4)
    np.testing.assert_allclose(s.lidar.points[:, 4], times[0], atol=1e-6)


def test_can_bus_speed_matches_ego_poses(gen, gen_samples):
    for s in gen_samples:
        track = gen._scene(s.scene_token).ego_track
        t0 = max(track.start_us, s.timestamp_us - 100_000)
        t1 = min(track.end_us, s.timestamp_us + 100_000)
        d = np.linalg.norm(track.at(t1).translation - track.at(t0).translation)
        v = d / ((t1 - t0) * 1e-6)
        assert abs(s.can_bus.speed_mps - v) < 0.1 + 0.02 * v


def test_virtual_ultrasonic_agrees_with_measured(gen_samples):
    """Virtual ranges from the LiDAR agree with the generator's ray-cast ultrasonic where both
    see an echo (they differ where the roof LiDAR's blind zone hides low obstacles)."""
    diffs = []
    for s in gen_samples:
        ref = s.lidar.points[s.lidar.points[:, 4] == 0, :3]
        virt = virtual_ultrasonic(ref, s.ultrasonic_layout, s.timestamp_us).ranges_m
        both = np.isfinite(virt) & np.isfinite(s.ultrasonic.ranges_m)
        diffs.extend(np.abs(virt[both] - s.ultrasonic.ranges_m[both]))
    assert len(diffs) >= 5
    assert np.median(diffs) < 0.25


def test_non_key_sweep_and_reduced_decode(gen_root, gen):
    lidar = gen.scene_lidar_tokens(gen.scene_tokens[0])
    s = gen.load_sweep(lidar[3])
    assert not s.is_keyframe and s.boxes is None and s.lidar is not None
    assert s.ultrasonic is not None  # measured at 20 Hz, like the LiDAR
    small = NuScenesDataset(gen_root, num_sweeps=1, image_reduction=2)
    view = small.load_sample(small.scene_sample_tokens(small.scene_tokens[0])[0]).cameras[0]
    full = gen.load_sample(gen.scene_sample_tokens(gen.scene_tokens[0])[0]).cameras[0]
    assert view.image.image.shape[:2] == (-(-full.image.height // 2), -(-full.image.width // 2))
    assert view.image.intrinsics[0, 0] == pytest.approx(full.image.intrinsics[0, 0] / 2)
