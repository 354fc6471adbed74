"""Fallback experts (perception.experts): with a principal sensor missing, a composed fused
model's output is exactly the single-sensor model's; otherwise exactly the fused path's. The
presence mask, not zeros in an input, picks the path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest
import torch
from model_synth import make_sample, micro_config

from perception import Pipeline
from perception.batch import collate
from perception.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_config,
    read_state_dict,
    save_checkpoint,
)
from perception.config import FallbackExpertConfig, config_from_dict, config_to_dict
from perception.experts import FUSED_PATH, PathRule, choose_paths, compose_fallback
from perception.model import build_model
from perception.prepare import prepare_sample

FUSERS = ("mean", "weighted", "concat_conv", "gated", "late", "serial")


def _randomize_bn(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that a branch swap cannot go unnoticed."""
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    """Trained-looking camera_only and lidar_only checkpoints (random weights)."""
    root = tmp_path_factory.mktemp("singles")
    out = {}
    for i, v in enumerate(("camera_only", "lidar_only")):
        torch.manual_seed(10 + i)
        m = build_model(micro_config(v)).eval()
        _randomize_bn(m)
        save_checkpoint(root / v, m, micro_config(v), {"variant": v})
        out[v] = m
    # The first bev_pool kernel call of a process can differ from later ones in the last bit;
    # the exact comparisons below are between later calls.
    cfg = micro_config("camera_only")
    with torch.no_grad():
        out["camera_only"](collate([prepare_sample(make_sample(seed=9), cfg)], cfg))
    return root, out


def _host(variant: str, root, singles_models, share_camera: bool = True):
    """A fused checkpoint whose camera branch is camera_only's (the shipped recipe freezes it)."""
    torch.manual_seed(20)
    cfg = micro_config(variant)
    host = build_model(cfg).eval()
    _randomize_bn(host)
    if share_camera and variant != "serial":
        cam = {k: v for k, v in singles_models["camera_only"].state_dict().items()
               if k.startswith("camera.")}
        host.load_state_dict(cam, strict=False)
    save_checkpoint(root / variant, host, cfg, {"variant": variant})
    return host


@pytest.fixture(scope="module")
def composed(singles, tmp_path_factory):
    root, models = singles
    hosts = tmp_path_factory.mktemp("hosts")
    out = {}
    for v in FUSERS:
        host = _host(v, hosts, models)
        d = compose_fallback(hosts / v, [root / "camera_only", root / "lidar_only"],
                             hosts / f"{v}_fb", missing_as_empty=("ultrasonic",))
        model, cfg = load_checkpoint(d)
        out[v] = (host, model, cfg, d)
    return out


@pytest.fixture(scope="module")
def arrays():
    cfg = micro_config("mean")
    return prepare_sample(make_sample(seed=3), cfg)


# Rows of the test batch: (what is absent, the path it must take).
CASES = (
    ((), "fused"),
    (("lidar",), "camera_only"),
    (("camera",), "lidar_only"),
    (("ultrasonic",), "fused, empty ultrasonic"),
    (("lidar", "ultrasonic"), "camera_only"),
    (("camera", "ultrasonic"), "lidar_only"),
    (("camera", "lidar"), "fused"),
)


def _rows(out, i):
    return out.heatmap[i], out.reg[i], out.waypoints[i]


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("variant", FUSERS)
def test_masked_modality_output_is_exactly_the_degraded_path(variant, composed, singles, arrays):
    host, model, cfg, _ = composed[variant]
    _, experts = singles
    batch = collate([arrays.without(absent) for absent, _ in CASES], cfg)
    us_present = batch.presence.clone()
    us_present[:, 2] = True  # the absent ultrasonic's raster is all zero: "present, empty"
    with torch.no_grad():
        got = model(batch)
        want = {"fused": host(batch), "camera_only": experts["camera_only"](batch),
                "lidar_only": experts["lidar_only"](batch),
                "fused, empty ultrasonic": host(replace(batch, presence=us_present))}
    for i, (absent, path) in enumerate(CASES):
        assert _equal(_rows(got, i), _rows(want[path], i)), (variant, absent, path)
        same_when_us_present = {"fused", "fused, empty ultrasonic"}
        others = [p for p in want if p != path
                  and not ({p, path} == same_when_us_present and "ultrasonic" not in absent)]
        # The paths really differ here, so the equality above is not a coincidence.
        assert not any(_equal(_rows(got, i), _rows(want[p], i)) for p in others), (absent, path)
    has = model.has_input(batch.presence)
    assert has.tolist() == [True] * len(CASES)  # each row has a present sensor some path reads


@pytest.mark.parametrize("variant", ["gated", "serial"])
def test_presence_not_zeros_selects_the_path(variant, composed, singles, arrays):
    host, model, cfg, _ = composed[variant]
    _, experts = singles
    black = replace(arrays, images=np.zeros_like(arrays.images))  # present, all zero
    no_points = replace(arrays, points=arrays.points[:0])  # present, but no returns at all
    # Absent, with stale garbage left in the arrays: must not leak into the expert's output.
    stale_cam = replace(arrays.without(("camera",)), images=np.full_like(arrays.images, 255),
                        camera_mask=arrays.camera_mask)
    stale_lidar = replace(arrays.without(("lidar",)), points=arrays.points * 3.0)
    batch = collate([black, no_points, stale_cam, stale_lidar], cfg)
    clean_absent = collate([arrays.without(("camera",)), arrays.without(("lidar",))], cfg)
    assert choose_paths(PathRule.of(cfg), batch.presence).tolist() == [FUSED_PATH, FUSED_PATH, 1, 0]
    with torch.no_grad():
        got = model(batch)
        fused = host(batch)
        lidar_ref = experts["lidar_only"](clean_absent)
        cam_ref = experts["camera_only"](clean_absent)
    assert _equal(_rows(got, 0), _rows(fused, 0))
    assert _equal(_rows(got, 1), _rows(fused, 1))
    # An absent ultrasonic is read as empty, whatever its raster holds.
    us_absent = collate([arrays.without(("ultrasonic",))], cfg)
    stale = replace(us_absent, ultrasonic_raster=torch.rand_like(us_absent.ultrasonic_raster))
    with torch.no_grad():
        assert _equal(_rows(model(stale), 0), _rows(model(us_absent), 0))
    torch.testing.assert_close(got.heatmap[2], lidar_ref.heatmap[0])
    torch.testing.assert_close(got.waypoints[2], lidar_ref.waypoints[0])
    torch.testing.assert_close(got.heatmap[3], cam_ref.heatmap[1])
    torch.testing.assert_close(got.waypoints[3], cam_ref.waypoints[1])


def test_composed_checkpoint_stores_only_what_differs(composed, singles):
    root, models = singles
    for v, (_, model, cfg, d) in composed.items():
        keys = set(read_state_dict(d / "model.pt"))
        cam_copy = {k for k in keys if k.startswith("experts.camera_only.camera.")}
        shared = {e.variant: e.shared for e in cfg.fusion.fallback}
        if v == "serial":  # painting's camera encoder is not camera_only's: its own copy
            assert shared == {"camera_only": (), "lidar_only": ()} and cam_copy
            assert "camera_only.camera" in model.branch_names
        else:
            assert shared == {"camera_only": ("camera",), "lidar_only": ()} and not cam_copy
        heads = read_state_dict(root / "camera_only" / "model.pt")
        for k, t in heads.items():
            if k.startswith("heads."):
                assert torch.equal(model.state_dict()[f"experts.camera_only.{k}"], t)
        cfg_json = orjson.loads((d / "config.json").read_bytes())
        assert [e["variant"] for e in cfg_json["fusion"]["fallback"]] == ["camera_only",
                                                                          "lidar_only"]


def test_composing_again_replaces_the_experts(composed, singles, tmp_path):
    root, _ = singles
    _, _, cfg, d = composed["mean"]
    again = compose_fallback(d, [root / "camera_only"], tmp_path / "again")
    new_cfg = load_config(again)
    assert [e.variant for e in new_cfg.fusion.fallback] == ["camera_only"]
    assert not any(k.startswith("experts.lidar_only.") for k in read_state_dict(again / "model.pt"))


def test_expert_that_does_not_fit_the_host_is_refused(composed, tmp_path):
    _, _, _, d = composed["gated"]
    cfg = micro_config("camera_only")
    other = replace(cfg, detection=replace(cfg.detection, head_channels=8))
    save_checkpoint(tmp_path / "cam8", build_model(other), other, {})
    with pytest.raises(ValueError, match=r"does not fit host .*differs in \['detection'\]"):
        compose_fallback(d, [tmp_path / "cam8"], tmp_path / "out")
    fused = micro_config("mean")
    save_checkpoint(tmp_path / "mean", build_model(fused), fused, {})
    with pytest.raises(ValueError, match="not a single-sensor model"):
        compose_fallback(d, [tmp_path / "mean"], tmp_path / "out")


def test_fallback_config_round_trip_old_files_and_validation(composed, tmp_path):
    _, _, cfg, d = composed["late"]
    data = orjson.loads(orjson.dumps(config_to_dict(cfg)))
    assert config_from_dict(data) == cfg
    old = orjson.loads(orjson.dumps(config_to_dict(micro_config("late"))))
    del old["fusion"]["fallback"]  # a config.json written before the field existed
    assert config_from_dict(old).fusion.fallback == ()
    assert cfg.fusion.missing_as_empty == ("ultrasonic",)
    with pytest.raises(ValueError, match=r"missing_as_empty \['lidar'\]: only a used ultrasonic"):
        replace(cfg, fusion=replace(cfg.fusion, missing_as_empty=("lidar",)))
    with pytest.raises(ValueError, match="fallback expert 'gated' must be one of"):
        replace(cfg, fusion=replace(cfg.fusion, fallback=(FallbackExpertConfig("gated"),)))
    bad = orjson.loads((d / "config.json").read_bytes())
    bad["fusion"]["fallback"][1]["shared"] = [7]
    (tmp_path / "model.pt").write_bytes((d / "model.pt").read_bytes())
    (tmp_path / "config.json").write_bytes(orjson.dumps(bad))
    with pytest.raises(CheckpointError, match=r"config.json: fusion.fallback\[1\].shared\[\] "
                                              "must be str"):
        load_config(tmp_path)


@pytest.mark.parametrize("variant", ["serial", "concat_conv"])
@pytest.mark.parametrize("corruption", ["lidar_missing", "camera_all_missing", "camera_gaussian"])
def test_reused_branch_maps_equal_the_full_model(composed, variant, corruption):
    """The benchmark's shared-branch path (maps of the clean run reused) stays exact, also
    for an expert branch the clean run did not compute."""
    from eval.corruptions import corrupt

    _, model, cfg, _ = composed[variant]
    pipe = Pipeline(model, cfg, device="cpu")
    clean = make_sample(seed=4)
    _, maps = pipe.run_with_maps(clean)
    assert set(maps) == set(model.fused_modalities)  # all present: the experts' skipped
    bad = corrupt(clean, corruption, 3)
    touched = corruption.split("_")[0]
    inputs = model.map_inputs()
    reuse = {m: x for m, x in maps.items() if touched not in inputs[m]}
    full = pipe.run(bad)
    shared, _ = pipe.run_with_maps(bad, prepare_sample(bad, cfg, targets=False), reuse)
    assert np.array_equal(full.detections.scores, shared.detections.scores)
    assert np.array_equal(full.plan.waypoints_xy_ego_m, shared.plan.waypoints_xy_ego_m)


def test_a_camera_branch_that_differs_from_the_expert_is_not_shared(singles, arrays, tmp_path):
    root, experts = singles
    host = _host("mean", tmp_path, experts, share_camera=False)  # same names, other values
    d = compose_fallback(tmp_path / "mean", [root / "camera_only"], tmp_path / "fb")
    model, cfg = load_checkpoint(d)
    assert cfg.fusion.fallback == (FallbackExpertConfig("camera_only", ()),)
    batch = collate([arrays.without(("lidar",)), arrays], cfg)
    with torch.no_grad():
        got, cam, fused = model(batch), experts["camera_only"](batch), host(batch)
    assert _equal(_rows(got, 0), _rows(cam, 0))
    assert _equal(_rows(got, 1), _rows(fused, 1))


def test_compose_tool_writes_beside_or_over_the_hosts(singles, tmp_path, capsys):
    from eval.commands.compose_fallback import main  # `drivefuse compose-fallback`

    root, experts = singles
    _host("weighted", tmp_path / "in", experts)
    assert main([str(tmp_path / "in" / "weighted"), "--experts", str(root / "camera_only"),
                     "--out-root", str(tmp_path / "out")]) == 0
    assert "weighted -> " in capsys.readouterr().out
    assert [e.variant for e in load_config(tmp_path / "out" / "weighted").fusion.fallback] == [
        "camera_only"]
    assert load_config(tmp_path / "in" / "weighted").fusion.fallback == ()  # host untouched
