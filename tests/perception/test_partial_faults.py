"""Training's partial-fault schedule (``CachedSamples.partial_faults``): LiDAR rings lost and
one camera lost, the faults that leave a sensor present, drawn per sample."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from model_synth import make_sample, micro_config

from perception.backbones.camera_inputs import NUM_CAMERAS
from perception.batch import collate
from perception.model import build_model
from perception.prepare import prepare_sample
from perception.sample_arrays import SampleArrays
from perception.train import CachedSamples, cache_branch_features

# Independent of sensors.lidar_rings: the HDL-32E's published beam table, evenly spaced.
HDL32_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)
MOUNT_M = np.array([0.943, 0.0, 1.84])


def ring_points(range_m: float = 15.0, per_ring: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5) points on every ring seen from the roof mount, and each point's ring."""
    elev = np.radians(np.repeat(HDL32_ELEVATIONS_DEG, per_ring))
    az = np.tile(np.linspace(-np.pi, np.pi, per_ring, endpoint=False), 32)
    xyz = MOUNT_M + range_m * np.stack(
        [np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)], axis=1
    )
    pts = np.concatenate([xyz, np.zeros((len(xyz), 2))], axis=1).astype(np.float32)
    return pts, np.repeat(np.arange(32), per_ring)


def arrays_with_points(points: np.ndarray) -> SampleArrays:
    from dataclasses import replace

    base = prepare_sample(make_sample(seed=0), micro_config("concat_conv"))
    return replace(base, points=points)


def test_without_rings_removes_exactly_those_rings_and_keeps_the_lidar_present():
    pts, ring = ring_points()
    a = arrays_with_points(pts)
    dropped = np.array([0, 5, 17, 31])
    out = a.without_rings(dropped)
    np.testing.assert_array_equal(out.points, pts[~np.isin(ring, dropped)])
    assert out.presence.tolist() == a.presence.tolist()  # a sparser LiDAR is not a missing one
    assert len(a.without_rings(np.arange(32)).points) == 0
    assert a.without_rings(np.array([], np.int64)).points.shape == pts.shape


@pytest.fixture
def cached_sample(tmp_path):
    cfg = micro_config("concat_conv")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    f = tmp_path / "arrays" / "s000.npz"
    f.parent.mkdir()
    prepare_sample(make_sample(seed=0), cfg).save(f)
    return cfg, model, f, str(tmp_path / "cache")


def test_one_camera_cache_holds_the_map_without_that_camera(cached_sample):
    cfg, model, f, cache_dir = cached_sample
    cpu = torch.device("cpu")
    (full,) = cache_branch_features(model, cfg, [f], ("camera",), cache_dir, cpu, False)
    (one,) = cache_branch_features(model, cfg, [f], ("camera",), cache_dir, cpu, False,
                                   drop_one_camera=True)
    assert one.parent != full.parent
    a = SampleArrays.load(f)
    with np.load(one) as z:
        k = int(z["dropped_camera"])
        cached = z["camera"].astype(np.float32)
    assert k == int(hashlib.sha1(a.token.encode()).hexdigest(), 16) % NUM_CAMERAS
    drop = np.arange(NUM_CAMERAS) == k
    with torch.no_grad():
        want = model.branch_bevs(collate([a.without_cameras(drop)], cfg), ("camera",))["camera"]
    np.testing.assert_allclose(cached, want[0].numpy(), rtol=1e-2, atol=1e-3)  # float16 cache
    with np.load(full) as z:
        assert np.abs(z["camera"].astype(np.float32) - cached).max() > 1e-2


def test_schedule_applies_both_faults_and_reads_the_one_camera_maps(cached_sample):
    cfg, model, f, cache_dir = cached_sample
    cpu = torch.device("cpu")
    full = cache_branch_features(model, cfg, [f], ("camera",), cache_dir, cpu, False)
    one = cache_branch_features(model, cfg, [f], ("camera",), cache_dir, cpu, False,
                                drop_one_camera=True)
    clean_a, clean_f = CachedSamples([f], feature_files=full)[0]
    torch.manual_seed(3)
    a, feats = CachedSamples([f], feature_files=full, partial_faults=(1.0, 1.0),
                             one_camera_files=one)[0]
    with np.load(one[0]) as z:
        k = int(z["dropped_camera"])
        np.testing.assert_array_equal(feats["camera"], z["camera"])
    assert set(feats) == {"camera"}
    assert a.camera_mask.tolist() == (clean_a.camera_mask & (np.arange(NUM_CAMERAS) != k)).tolist()
    assert not a.images[k].any() and a.presence.all()
    lost = 1 - len(a.points) / len(clean_a.points)
    assert 4 / 32 - 0.05 < lost < 20 / 32 + 0.05  # 4 to 20 of the 32 rings
    # Without the schedule nothing changes.
    torch.manual_seed(3)
    b, feats_b = CachedSamples([f], feature_files=full)[0]
    np.testing.assert_array_equal(b.points, clean_a.points)
    np.testing.assert_array_equal(feats_b["camera"], clean_f["camera"])


def test_schedule_draws_vary_per_item_and_repeat_with_the_seed(cached_sample):
    _, _, f, _ = cached_sample
    data = CachedSamples([f] * 12, partial_faults=(0.5, 0.5))

    def draws() -> list[tuple[int, int]]:
        torch.manual_seed(11)
        return [(len(a.points), int(a.camera_mask.sum())) for a in (data[i] for i in range(12))]

    first = draws()
    assert first == draws()
    assert len(set(n for n, _ in first)) > 2 and len(set(c for _, c in first)) == 2
