"""Composed faults (``eval.corruptions.compose``): parts applied in order, and a benchmark
cell that touches two sensors reuses no branch map that reads either of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_synth import make_sample, micro_config

from eval.corruptions import compose, corrupt, get_corruption, lidar_rings

HALF_BEAMS_ONE_CAMERA = compose((("camera_missing", 1), ("lidar_beam_missing", 4)))


def test_composed_fault_is_its_parts_in_order():
    assert HALF_BEAMS_ONE_CAMERA == "camera_missing@1+lidar_beam_missing@4"
    spec = get_corruption(HALF_BEAMS_ONE_CAMERA)
    assert spec.modalities == ("camera", "lidar") and spec.severities == (1,)
    clean = make_sample(seed=2, background_points=6000)
    got = corrupt(clean, HALF_BEAMS_ONE_CAMERA, 1, seed=3)
    ref = corrupt(corrupt(clean, "camera_missing", 1, 3), "lidar_beam_missing", 4, 3)
    assert np.array_equal(got.lidar.points, ref.lidar.points)
    def names(s):
        return [c and c.image.channel for c in s.cameras]

    assert names(got) == names(ref)
    assert sum(c is not None for c in got.cameras) == len(clean.cameras) - 1
    before = set(np.unique(lidar_rings(clean.lidar.points)))
    after = set(np.unique(lidar_rings(got.lidar.points)))
    assert after < before and len(after) <= 16  # 16 of the 32 rings dropped
    assert corrupt(clean, HALF_BEAMS_ONE_CAMERA, 0) is clean


@pytest.mark.parametrize(("name", "why"), [
    ("camera_missing+lidar_missing@1", "is not <corruption>@<severity>"),
    ("camera_missing@6+lidar_missing@1", "has severities"),
    ("lidar_missing@2+camera_missing@1", r"has severities \(1,\), not 2"),
    ("lidar_missing@1", "two or more different parts"),
    ("camera_missing@1+camera_missing@2", "two or more different parts"),
    ("radar_missing@1+lidar_missing@1", "unknown corruption 'radar_missing'"),
])
def test_bad_composed_names_are_refused(name, why):
    with pytest.raises(ValueError, match=why):
        get_corruption(name)


def test_benchmark_cell_of_a_composed_fault(tmp_path):
    sim = pytest.importorskip("sensors.sim")
    from eval.benchmark import BenchmarkSpec, run_benchmark
    from perception.checkpoint import save_checkpoint
    from perception.model import build_model

    data = sim.generate_dataset(
        sim.SimConfig(num_scenes=2, scene_duration_s=1.0, num_workers=1, seed=5),
        tmp_path / "data", progress=False,
    )
    ckpts = []
    for i, v in enumerate(("lidar_only", "camera_only", "concat_conv")):
        torch.manual_seed(i)
        cfg = micro_config(v)
        save_checkpoint(tmp_path / v, build_model(cfg), cfg, {})
        ckpts.append((v, str(tmp_path / v)))
    cam_us = compose((("camera_missing", 2), ("ultrasonic_missing", 1)))
    # verify_samples: the shared-branch result is checked equal to the whole model, which
    # fails if a map that read a touched sensor (here concat_conv's LiDAR map) were reused.
    spec = BenchmarkSpec(tuple(ckpts), str(data), "v1.0-mini", "mini_val",
                         corruptions=(HALF_BEAMS_ONE_CAMERA, cam_us), severities=(1,),
                         memory=False, verify_samples=1)
    result = run_benchmark(spec, tmp_path / "out", progress=False, log=lambda s: None)
    both = f"{HALF_BEAMS_ONE_CAMERA}_s1"
    for v in ("lidar_only", "camera_only", "concat_conv"):
        assert not result.cells[v][both].get("reused_clean"), v
    assert result.cells["lidar_only"][f"{cam_us}_s1"]["reused_clean"]
    assert not result.cells["camera_only"][f"{cam_us}_s1"].get("reused_clean")
    assert "camera or ultrasonic" in result.cells["lidar_only"][f"{cam_us}_s1"]["reason"]
