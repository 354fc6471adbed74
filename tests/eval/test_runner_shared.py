"""Shared-branch inference (``Pipeline.run_with_maps``) equals the full model exactly, and
``run_model`` takes a Pipeline, preloaded samples and a per-sample transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_synth import make_sample, micro_config

from eval.corruptions import corrupt
from perception import Pipeline
from perception.prepare import prepare_sample


def _same(a, b) -> bool:
    da, db = a.detections, b.detections
    return (
        len(da) == len(db)
        and np.array_equal(da.center_m, db.center_m)
        and np.array_equal(da.scores, db.scores)
        and np.array_equal(da.labels, db.labels)
        and np.array_equal(a.plan.waypoints_xy_ego_m, b.plan.waypoints_xy_ego_m)
    )


@pytest.fixture(scope="module")
def pipes():
    torch.manual_seed(0)
    return {v: Pipeline.from_config(micro_config(v), device="cpu")
            for v in ("concat_conv", "serial", "late", "gated", "lidar_only")}


@pytest.mark.parametrize("variant", ["concat_conv", "serial", "late", "gated", "lidar_only"])
@pytest.mark.parametrize("corruption", ["camera_gaussian", "lidar_density", "ultrasonic_false_echo",
                                        "camera_all_missing", "lidar_missing"])
def test_shared_branch_equals_full_model(pipes, variant, corruption):
    pipe = pipes[variant]
    clean = make_sample(seed=4, image_hw=(90, 160))
    _, maps = pipe.run_with_maps(clean)
    assert set(maps) == set(pipe.model.fused_modalities)
    bad = corrupt(clean, corruption, 3)
    touched = corruption.split("_")[0]
    inputs = pipe.model.map_inputs()
    reuse = {m: x for m, x in maps.items() if touched not in inputs[m]}
    if variant == "serial" and touched == "camera":
        assert "lidar" not in reuse  # the painted LiDAR map reads the cameras
    full = pipe.run(bad)
    shared, _ = pipe.run_with_maps(bad, prepare_sample(bad, pipe.cfg, targets=False), reuse)
    assert _same(full, shared)


def test_reusing_a_branch_that_read_the_corruption_is_caught(pipes):
    # The guard the benchmark relies on: a stale camera map gives different outputs.
    pipe = pipes["concat_conv"]
    clean = make_sample(seed=4, image_hw=(90, 160))
    _, maps = pipe.run_with_maps(clean)
    bad = corrupt(clean, "camera_gaussian", 5)
    assert not _same(pipe.run(bad), pipe.run_with_maps(bad, reuse={"camera": maps["camera"]})[0])


def test_forward_equals_branch_maps_then_fuse(pipes):
    from perception.batch import collate

    pipe = pipes["late"]
    batch = collate([prepare_sample(make_sample(seed=5), pipe.cfg, targets=False)], pipe.cfg)
    with torch.inference_mode():
        whole = pipe.model(batch)
        maps = pipe.model.branch_maps(batch, pipe.model.fused_modalities)
        split = pipe.model.fuse_and_heads(maps, batch)
    assert torch.equal(whole.heatmap, split.heatmap)
    assert torch.equal(whole.waypoints, split.waypoints)
    with pytest.raises(ValueError, match="no fused branch"):
        pipe.model.branch_maps(batch, ("radar",))


def test_run_model_with_a_pipeline_preloaded_samples_and_transform(pipes):
    from eval.runner import run_model

    class FakeDataset:  # run_model needs only poses, loading and the fault list from it
        sensor_faults = ["recorded before the run"]

        def global_SE3_ego(self, token):  # noqa: N802 - the dataset's method name
            from calibration.se3 import SE3

            return SE3.identity()

        def load_sample(self, token):
            self.sensor_faults.append(f"{token}: masked")
            raise FileNotFoundError(f"{token}: no such sample")

    samples = {s.token: s for s in (make_sample(seed=i) for i in range(2))}
    tokens = [*samples, "missing"]
    run = run_model(pipes["lidar_only"], FakeDataset(), tokens, samples, progress=False,
                    transform=lambda s: corrupt(s, "lidar_missing", 1))
    assert set(run.detections) == set(tokens)
    assert [f.sample_token for f in run.failures] == ["missing"]
    assert run.sensor_faults == ["missing: masked"]  # only the faults this run added
    assert all(len(run.detections[t]) == 0 for t in samples)  # no LiDAR: no detections
    direct = pipes["lidar_only"].run(corrupt(samples["tok0"], "lidar_missing", 1))
    np.testing.assert_array_equal(run.plans["tok0"], direct.plan.waypoints_xy_ego_m)


def test_shared_collated_batch_equals_own_batch(pipes):
    # concat_conv and gated read the same inputs: one collated batch serves both.
    clean = make_sample(seed=6, image_hw=(90, 160))
    bad = corrupt(clean, "lidar_gaussian", 4)
    cache: dict = {}
    arrays = prepare_sample(bad, pipes["concat_conv"].cfg, targets=False)
    for v in ("concat_conv", "gated"):
        shared, _ = pipes[v].run_with_maps(bad, arrays, batch_cache=cache)
        assert _same(shared, pipes[v].run(bad))
    assert len(cache) == 1


def test_peak_memory_of_a_child_process(tmp_path, pipes):
    from eval.benchmark import peak_memory_mb
    from perception.checkpoint import save_checkpoint

    pipe = pipes["concat_conv"]
    save_checkpoint(tmp_path / "ck", pipe.model, pipe.cfg, {})
    mb = peak_memory_mb(str(tmp_path / "ck"), make_sample(seed=7, image_hw=(90, 160)))
    params_mb = sum(p.numel() for p in pipe.model.parameters()) * 4 / 2**20
    assert params_mb < mb < 2000


@pytest.fixture(scope="module")
def twins():
    # camera_only, concat_conv and late with one camera branch, tensor for tensor (as shipped),
    # lidar_only and lidar_ultrasonic with their own LiDAR branches.
    torch.manual_seed(1)
    out = {v: Pipeline.from_config(micro_config(v), device="cpu")
           for v in ("camera_only", "concat_conv", "late", "lidar_only", "lidar_ultrasonic")}
    for v in ("concat_conv", "late"):
        out[v].model.camera.load_state_dict(out["camera_only"].model.camera.state_dict())
    return out


def test_branch_keys_are_equal_exactly_for_equal_tensors(twins, pipes):
    keys = {v: p.branch_keys() for v, p in twins.items()}
    assert keys["camera_only"]["camera"] == keys["concat_conv"]["camera"] == keys["late"]["camera"]
    assert keys["lidar_only"]["lidar"] != keys["lidar_ultrasonic"]["lidar"]  # own weights
    assert keys["concat_conv"]["lidar"] != keys["lidar_only"]["lidar"]
    assert pipes["serial"].branch_keys()["lidar"] is None  # the painted map reads the cameras
    # One changed number, or another input size, is another map.
    changed = Pipeline.from_config(micro_config("camera_only"), device="cpu")
    changed.model.camera.load_state_dict(twins["camera_only"].model.camera.state_dict())
    assert changed.branch_keys()["camera"] == keys["camera_only"]["camera"]
    changed._branch_keys = None
    with torch.no_grad():
        next(changed.model.camera.parameters()).view(-1)[0] += 1e-6
    assert changed.branch_keys()["camera"] != keys["camera_only"]["camera"]
    from dataclasses import replace

    cfg = micro_config("camera_only")
    other = Pipeline.from_config(replace(cfg, camera=replace(cfg.camera, image_hw=(56, 96))),
                                 device="cpu")
    other.model.camera.load_state_dict(twins["camera_only"].model.camera.state_dict())
    assert other.branch_keys()["camera"] != keys["camera_only"]["camera"]


@pytest.mark.parametrize("corruption", [None, "camera_gaussian", "lidar_density"])
def test_maps_shared_across_pipelines_equal_each_pipelines_own(twins, corruption):
    sample = make_sample(seed=8, image_hw=(90, 160))
    if corruption is not None:
        sample = corrupt(sample, corruption, 3)
    shared: dict = {}
    maps = {}
    for v, pipe in twins.items():
        result, maps[v] = pipe.run_with_maps(sample, shared_maps=shared)
        assert _same(result, pipe.run(sample)), v
    # The camera map was computed once and handed to the two fusers that carry the branch.
    assert maps["concat_conv"]["camera"] is maps["camera_only"]["camera"]
    assert maps["late"]["camera"] is maps["camera_only"]["camera"]
    assert maps["lidar_ultrasonic"]["lidar"] is not maps["lidar_only"]["lidar"]
    assert len(shared) == 1 + 4 + 3  # one camera map; four LiDAR and three ultrasonic maps
