import json

import numpy as np
import orjson
import pytest
import torch
from model_synth import make_sample, micro_config

import perception
from perception.batch import collate
from perception.checkpoint import load_checkpoint, save_checkpoint
from perception.config import config_to_dict, preset
from perception.model import build_model
from perception.pipeline import Pipeline
from perception.prepare import prepare_sample
from perception.sample_arrays import SampleArrays
from perception.train import TRAIN_STATE_NAME, TrainOptions, train
from perception.types import FrameResult

pytest.importorskip("perception.ops.ultrasonic_raster", reason="engineer C's kernels")


@pytest.fixture(scope="module")
def sample():
    return make_sample(3)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, sample):
    cfg = micro_config("gated")
    model = build_model(cfg).eval()
    save_checkpoint(tmp_path, model, cfg, {"dataroot": "x"})
    loaded, cfg2 = load_checkpoint(tmp_path / "model.pt")
    assert cfg2 == cfg
    batch = collate([prepare_sample(sample, cfg)], cfg)
    with torch.no_grad():
        # The first BEV-pooling call of a process builds its plan and may differ from later
        # calls in the last bits; warm up so both forwards take the same (cached) path.
        model(batch)
        a, b = model(batch), loaded(batch)
    torch.testing.assert_close(a.heatmap, b.heatmap, rtol=0, atol=0)
    torch.testing.assert_close(a.waypoints, b.waypoints, rtol=0, atol=0)
    # Weights-only: the file is a plain state_dict of tensors.
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_config_mismatch_is_a_clear_error(tmp_path):
    cfg = micro_config("mean")
    save_checkpoint(tmp_path, build_model(cfg), cfg, {})
    with pytest.raises(ValueError, match="differs from the requested"):
        load_checkpoint(tmp_path, micro_config("gated"))
    # Weights from one variant under another variant's config.
    other = tmp_path / "other"
    save_checkpoint(other, build_model(cfg), cfg, {})
    (other / "config.json").write_bytes(orjson.dumps(config_to_dict(micro_config("gated"))))
    with pytest.raises(ValueError, match=r"weights do not match config .*missing"):
        load_checkpoint(other)
    # A config from another code version (renamed field).
    d = config_to_dict(cfg)
    d["fusion"]["method"] = d["fusion"].pop("kind")
    (other / "config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"config.json.*unknown fields \['method'\]"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="missing model.pt"):
        load_checkpoint(tmp_path / "nowhere")


def test_pipeline_runs_with_timings_and_missing_sensors(sample):
    pipe = Pipeline.from_config(preset("tiny", "concat_conv"), device="cpu")
    res = pipe.run(sample)
    assert isinstance(res, FrameResult) and res.token == sample.token
    assert res.plan.waypoints_xy_ego_m.shape == (6, 2)
    assert res.control.trajectory.shape == (6, 2)
    for stage in ("preprocess", "voxelize", "camera_backbone", "view_transform",
                  "lidar_backbone", "ultrasonic_backbone", "fuser", "heads", "decode",
                  "control", "total"):
        assert res.timings_ms[stage] >= 0, stage
    assert res.timings_ms["total"] >= res.timings_ms["voxelize"] + res.timings_ms["heads"]
    from dataclasses import replace

    blind = replace(sample, lidar=None, cameras=(None,) * 6, ultrasonic=None)
    res2 = pipe.run(blind)
    assert len(res2.detections) == 0  # nothing sensed -> nothing detected
    assert np.all(np.isfinite(res2.plan.waypoints_xy_ego_m))


def test_lazy_package_export():
    assert perception.Pipeline is Pipeline


def test_train_saves_resumes_and_loads_into_pipeline(tmp_path, sample):
    cfg = micro_config("concat_conv")
    files = []
    for i in range(3):
        f = tmp_path / f"s{i}.npz"
        prepare_sample(make_sample(i), cfg).save(f)
        files.append(f)
    a = SampleArrays.load(files[0])
    assert a.token == "tok0" and a.images.dtype == np.uint8 and a.has_targets

    import perception.train as tr

    # Train the micro config through the public entry point (preset patched to micro size).
    orig = tr.preset
    tr.preset = lambda name, variant: micro_config(variant)
    try:
        opts = TrainOptions(variant="concat_conv", out_dir=str(tmp_path / "ck"), steps=4,
                            batch_size=2, save_every=2, log_every=1, seed=1)
        out = train(opts, files=files)
        log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2, 3, 4]
        # The camera lift is supervised by LiDAR depth when both sensors are present.
        assert all(r["depth"] > 0 for r in log)
        prov = json.loads((out / "provenance.json").read_text())
        assert prov["steps_done"] == 4 and prov["final"] and len(prov["git_commit"]) >= 7
        state = torch.load(out / TRAIN_STATE_NAME, weights_only=True)
        assert state["step"] == 4
        # Resume: a run with a longer schedule refuses the state; the same schedule resumes
        # and does no further step.
        with pytest.raises(ValueError, match="cannot resume"):
            train(TrainOptions(**{**opts.__dict__, "steps": 6, "resume": True}), files=files)
        w_before = torch.load(out / "model.pt", weights_only=True)
        train(TrainOptions(**{**opts.__dict__, "resume": True}), files=files)
        w_after = torch.load(out / "model.pt", weights_only=True)
        assert all(torch.equal(w_before[k], w_after[k]) for k in w_before)
        # Fused training on frozen, pretrained branches goes through the BEV feature cache and
        # leaves those branches' weights untouched.
        fused = train(TrainOptions(variant="gated", out_dir=str(tmp_path / "gated"), steps=2,
                                   batch_size=2, init_from=(str(out),),
                                   freeze=("camera", "lidar"), cache_dir=str(tmp_path / "c"),
                                   anchor="lidar"),
                      files=files)
        prov = json.loads((fused / "provenance.json").read_text())
        assert prov["bev_feature_cache"] == ["camera", "lidar"]
        assert prov["initialised_tensors"] > 0
        assert prov["anchor"] == "lidar"
        # Capacity-matched ablation: LiDAR only, through the concat_conv fusion layers.
        abl = train(TrainOptions(variant="lidar_only", fuser="concat_conv", steps=1,
                                 out_dir=str(tmp_path / "abl"), batch_size=2), files=files)
        abl_cfg = Pipeline.from_checkpoint(abl, device="cpu").cfg
        assert (abl_cfg.fusion.kind, abl_cfg.fusion.modalities) == ("concat_conv", ("lidar",))
        w_fused = torch.load(fused / "model.pt", weights_only=True)
        for k, v in w_after.items():
            if k.startswith(("camera.", "lidar.")):
                assert torch.equal(v, w_fused[k]), k
    finally:
        tr.preset = orig
    pipe = Pipeline.from_checkpoint(out, device="cpu")
    assert pipe.cfg == micro_config("concat_conv").__class__(**{
        **micro_config("concat_conv").__dict__, "train": pipe.cfg.train})
    res = pipe.run(sample)
    assert res.timings_ms["total"] > 0


def test_train_image_hw_override_is_recorded_and_checked(tmp_path, sample):
    from dataclasses import replace

    import perception.train as tr

    base = micro_config("camera_only")
    hw = (64, 120)  # multiples of the micro camera's feature stride (8)
    cfg = replace(base, camera=replace(base.camera, image_hw=hw))
    files = []
    for i in range(2):
        f = tmp_path / f"s{i}.npz"
        prepare_sample(make_sample(i), cfg).save(f)
        files.append(f)
    orig = tr.preset
    tr.preset = lambda name, variant: micro_config(variant)
    try:
        with pytest.raises(ValueError, match="multiples of the camera feature stride 8"):
            train(TrainOptions(variant="camera_only", out_dir=str(tmp_path / "bad"), steps=1,
                               batch_size=2, image_hw=(60, 120)), files=files)
        out = train(TrainOptions(variant="camera_only", out_dir=str(tmp_path / "hr"), steps=1,
                                 batch_size=2, image_hw=hw), files=files)
    finally:
        tr.preset = orig
    pipe = Pipeline.from_checkpoint(out, device="cpu")
    # The checkpoint carries the override: inference resizes to it, not to the preset's size.
    assert pipe.cfg.camera.image_hw == hw and pipe.cfg.name.endswith("@64x120")
    res = pipe.run(sample)
    assert res.timings_ms["total"] > 0
