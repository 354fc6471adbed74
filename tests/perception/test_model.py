import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from model_synth import make_sample, micro_config

from perception.batch import collate
from perception.config import FUSION_VARIANTS, MODALITY_ORDER, preset
from perception.model import build_model
from perception.prepare import prepare_sample

pytest.importorskip("perception.ops.ultrasonic_raster", reason="engineer C's raster kernel")


@pytest.fixture(scope="module")
def samples():
    return [make_sample(seed) for seed in range(2)]


@pytest.fixture(scope="module")
def tiny_batch(samples):
    cfg = preset("tiny", "concat_conv")
    return cfg, collate([prepare_sample(s, cfg) for s in samples], cfg)


def test_tiny_output_shapes(tiny_batch):
    cfg, batch = tiny_batch
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(batch)
    assert out.heatmap.shape == (2, 10, 64, 64)
    assert out.reg.shape == (2, 6, 10, 64, 64)
    assert out.waypoints.shape == (2, 6, 2)
    assert batch.images.shape == (2, 6, 3, 96, 176)
    assert batch.cell_index.shape == (2, 6, 24, 12, 22)
    assert batch.ultrasonic_raster.shape == (2, 2, 128, 128)
    assert batch.heatmap.shape == (2, 10, 64, 64)
    assert torch.isfinite(out.heatmap).all() and torch.isfinite(out.waypoints).all()


def test_tiny_batch_heatmap_peaks_sit_on_the_boxes(tiny_batch, samples):
    """Known answer for the batch the shape test builds: every box puts a 1.0 peak in its
    class channel at cell floor((x - x_min) / cell), and nothing else is 1.0."""
    from perception.heads.targets import class_group_order

    cfg, batch = tiny_batch
    order = class_group_order(cfg)
    g = cfg.grid
    for b, s in enumerate(samples):
        want = set()
        for (x, y, _), label in zip(s.boxes.center_m, s.boxes.labels):
            ix = int(np.floor((x - g.x_range_m[0]) / g.cell_m))
            iy = int(np.floor((y - g.y_range_m[0]) / g.cell_m))
            want.add((order.index(int(label)), iy, ix))
        peaks = {tuple(map(int, t)) for t in torch.nonzero(batch.heatmap[b] == 1.0)}
        assert peaks == want and len(want) == len(s.boxes)


def _absent_sets():
    sets = [(m,) for m in MODALITY_ORDER]
    sets += [tuple(m for m in MODALITY_ORDER if m != keep) for keep in MODALITY_ORDER]
    return sets + [MODALITY_ORDER]


@pytest.mark.parametrize("variant", FUSION_VARIANTS)
def test_every_variant_survives_every_missing_modality(variant, samples):
    cfg = micro_config(variant)
    model = build_model(cfg).eval()
    a = prepare_sample(samples[0], cfg)
    absent_sets = _absent_sets()
    # One batch: a sample per absence pattern plus a complete one (eval-mode BN makes the
    # samples independent of each other).
    batch = collate([a.without(absent) for absent in absent_sets] + [a], cfg)
    with torch.no_grad():
        out = model(batch)
    for t in (out.heatmap, out.reg, out.waypoints):
        assert torch.isfinite(t).all()
    has = model.has_input(batch.presence)
    fused = set(model.fused_modalities)
    for i, absent in enumerate(absent_sets):
        assert bool(has[i]) == bool(fused - set(absent)), absent
    assert bool(has[-1])


@pytest.mark.parametrize("variant", ["mean", "weighted", "concat_conv", "gated", "late", "serial"])
def test_missing_modality_cannot_poison_the_output(variant, samples):
    """With a modality marked absent, whatever its (stale, corrupted) input holds is ignored."""
    cfg = micro_config(variant)
    model = build_model(cfg).eval()
    a = prepare_sample(samples[0], cfg)
    clean_list, garbage_list = [], []
    for m in ("camera", "lidar", "ultrasonic"):
        if variant == "serial" and m == "lidar":
            continue  # painting lives in the LiDAR branch; dropping it drops the fused map
        clean = a.without((m,))
        # Same "absent" flag, but garbage left in that modality's arrays.
        garbage = replace(a, presence=clean.presence)
        match m:
            case "camera":
                garbage = replace(garbage, camera_mask=clean.camera_mask,
                                  images=np.full_like(a.images, 255))
            case "lidar":
                garbage = replace(garbage, points=a.points * 3.0)
            case "ultrasonic":
                garbage = replace(garbage, ultrasonic_m=np.full(12, 0.3, np.float32))
        clean_list.append(clean)
        garbage_list.append(garbage)
    with torch.no_grad():
        ref = model(collate(clean_list, cfg))
        got = model(collate(garbage_list, cfg))
        full = model(collate([a] * len(clean_list), cfg))
    torch.testing.assert_close(got.heatmap, ref.heatmap, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.waypoints, ref.waypoints, rtol=1e-4, atol=1e-4)
    # ... and the absence does change the output (the test would catch a fuser that ignores
    # the presence mask by always reading every input).
    assert (full.heatmap - ref.heatmap).abs().amax(dim=(1, 2, 3)).min() > 1e-6


@pytest.mark.parametrize("variant", FUSION_VARIANTS)
def test_every_variant_loss_falls_on_a_tiny_batch(variant, samples):
    cfg = micro_config(variant)
    model = build_model(cfg).train()
    batch = collate([prepare_sample(s, cfg) for s in samples], cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss, _ = model.loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], (variant, losses)
    # Every trainable parameter of a used branch got a gradient at some point (a refine
    # model's crop network trains on its own, tests/perception/refine/test_train.py).
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None and not n.startswith("refiner.")]
    assert not no_grad, no_grad


def test_modality_presence_grid_covers_all_combinations():
    # Guard for the parametrisation above: singles, all-but-one, and all absent.
    combos = {frozenset(s) for s in _absent_sets()}
    assert len(combos) == 7
    every = itertools.chain.from_iterable(
        itertools.combinations(MODALITY_ORDER, r) for r in (1, 2, 3)
    )
    assert combos == {frozenset(c) for c in every}


def test_cached_branch_maps_reproduce_the_full_forward(samples):
    cfg = micro_config("gated")
    model = build_model(cfg).eval()
    arrays = [prepare_sample(s, cfg) for s in samples]
    full = collate(arrays, cfg)
    cached = collate(arrays, cfg, skip=("camera", "lidar"))
    assert cached.pillars.shape[0] == 0  # nothing voxelized for cached branches
    bevs = model.branch_bevs(full, ("camera", "lidar"))
    cached = replace(cached, camera_bev=bevs["camera"], lidar_bev=bevs["lidar"])
    with torch.no_grad():
        a, b = model(full), model(cached)
    torch.testing.assert_close(a.heatmap, b.heatmap)
    torch.testing.assert_close(a.waypoints, b.waypoints)


@pytest.mark.parametrize("variant", ["concat_conv", "serial", "lidar_camera_refine"])
def test_folding_batchnorm_keeps_every_output(variant, samples):
    """``fold_batchnorm`` (what ``Pipeline.from_checkpoint`` applies) leaves no BatchNorm2d
    after a conv and changes no head output beyond float rounding, with running statistics
    and affine parameters far from the identity so that a wrong fold shows.
    """
    import copy

    from perception.backbones.common import fold_batchnorm

    cfg = micro_config(variant)
    torch.manual_seed(0)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
            m.eps = 0.1  # a fold that forgets eps is off by ~5%, not by 1e-5
    model.eval()
    folded = copy.deepcopy(model)
    n = fold_batchnorm(folded)
    assert n > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    batch = collate([prepare_sample(s, cfg) for s in samples], cfg)
    with torch.inference_mode():
        a, b = model(batch), folded(batch)
    for name in ("heatmap", "reg", "waypoints"):
        x, y = getattr(a, name), getattr(b, name)
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5, msg=name)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_model(cfg).train())
