"""The training cache: a LiDAR-only job and a camera job on the same data (the two stage-1
jobs of ``tools/train_shipped.sh``, run at once) must not read each other's entries."""

from __future__ import annotations

import pytest
from model_synth import micro_config

from perception.sample_arrays import SampleArrays
from perception.train import cache_key, cache_split

sim = pytest.importorskip("sensors.sim")


def test_camera_and_camera_less_models_cache_apart():
    assert cache_key(micro_config("lidar_only"), "d", "v") != cache_key(
        micro_config("camera_only"), "d", "v")
    # Models that prepare alike keep sharing one cache.
    assert cache_key(micro_config("camera_only"), "d", "v") == cache_key(
        micro_config("gated"), "d", "v")
    assert cache_key(micro_config("lidar_only"), "d", "v") == cache_key(
        micro_config("lidar_ultrasonic"), "d", "v")


def test_a_camera_model_after_a_lidar_only_job_gets_its_pixels(tmp_path):
    data = sim.generate_dataset(
        sim.SimConfig(num_scenes=1, scene_duration_s=1.0, num_workers=1, seed=2),
        tmp_path / "data", progress=False,
    )
    cache = str(tmp_path / "cache")
    lidar = cache_split(str(data), "v1.0-mini", "mini_train", micro_config("lidar_only"), cache,
                        progress=False)
    camera = cache_split(str(data), "v1.0-mini", "mini_train", micro_config("camera_only"),
                         cache, progress=False)
    assert SampleArrays.load(lidar[0]).images.size == 0  # why the keys must differ
    hw = micro_config("camera_only").camera.image_hw
    for f in camera:
        assert SampleArrays.load(f).images.shape == (6, *hw, 3)
