import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.ops.pillars import pillar_features, pillar_features_reference
from perception.ops.scatter import scatter_to_bev, scatter_to_bev_reference
from perception.ops.voxelize import hard_voxelize

PILLARS = dict(voxel_size_m=(0.2, 0.2, 8.0), point_range_m=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0),
               max_points_per_voxel=20, max_voxels=30000)


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_pillars_known_answer():
    pts = np.array([[0.25, 0.5, 1.0, 7.0], [0.75, 0.5, -1.0, 9.0], [1.5, 1.5, 0.0, 1.0]],
                   np.float32)
    f, c, n = pillar_features(pts, (1, 1, 4), (0, 0, -2, 2, 2, 2), 3, 10)
    np.testing.assert_array_equal(c, [[0, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(n, [2, 1])
    assert f.shape == (2, 3, 10)
    # mean of pillar 0 = (0.5, 0.5, 0); centre = (0.5, 0.5, 0).
    np.testing.assert_array_equal(f[0, 0], [0.25, 0.5, 1, 7, -0.25, 0, 1, -0.25, 0, 1])
    np.testing.assert_array_equal(f[0, 1], [0.75, 0.5, -1, 9, 0.25, 0, -1, 0.25, 0, -1])
    np.testing.assert_array_equal(f[1, 0], [1.5, 1.5, 0, 1, 0, 0, 0, 0, 0, 0])
    assert not f[0, 2].any() and not f[1, 1:].any()


def test_pillars_real_sweep(real_sweep, accumulated_sweeps):
    for pts in (real_sweep, accumulated_sweeps):
        got = pillar_features(pts, **PILLARS)
        assert_same(got, pillar_features_reference(pts, **PILLARS))
        v, c, n = hard_voxelize(pts, **PILLARS)
        assert_same(got[1:], (c, n))
        np.testing.assert_array_equal(got[0][..., :5], v)
        # Offsets to the mean average to ~0 over each pillar's points.
        mask = np.arange(20)[None, :] < n[:, None]
        mean_off = (got[0][..., 5:8] * mask[..., None]).sum(1) / n[:, None]
        assert np.abs(mean_off).max() < 1e-3


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 2000), max_points=st.integers(1, 8),
       max_voxels=st.integers(0, 300))
def test_pillars_random(seed, n, max_points, max_voxels):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-6, 6, (n, 4)).astype(np.float32)
    pts[rng.random(n) < 0.05, 0] = np.nan
    snap = rng.random(n) < 0.3  # points exactly on pillar faces
    pts[snap, :2] = np.round(pts[snap, :2] * 2) / 2
    cfg = dict(voxel_size_m=(0.5, 0.5, 10), point_range_m=(-5, -5, -5, 5, 5, 5),
               max_points_per_voxel=max_points, max_voxels=max_voxels)
    assert_same(pillar_features(pts, **cfg), pillar_features_reference(pts, **cfg))


def test_scatter_real_pillars(real_sweep):
    f, c, n = pillar_features(real_sweep, **PILLARS)
    feats = f[:, 0, :].copy()
    canvas = scatter_to_bev(feats, c, (512, 512))
    assert canvas.shape == (11, 512, 512)
    assert_same((canvas,), (scatter_to_bev_reference(feats, c, (512, 512)),))
    np.testing.assert_array_equal(canvas[:, c[:, 1], c[:, 2]], feats.T)
    assert np.count_nonzero(canvas.any(axis=0)) == len(np.unique(c[:, 1] * 512 + c[:, 2]))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(0, 500), ch=st.integers(1, 9))
def test_scatter_random_duplicates(seed, m, ch):
    rng = np.random.default_rng(seed)
    h, w = 7, 13
    feats = rng.standard_normal((m, ch)).astype(np.float32)
    coords = np.stack([np.zeros(m), rng.integers(0, h, m), rng.integers(0, w, m)], 1)
    coords = coords.astype(np.int32)
    got = scatter_to_bev(feats, coords, (h, w))
    assert_same((got,), (scatter_to_bev_reference(feats, coords, (h, w)),))
    for i in range(m):  # last row wins
        later = (coords[i + 1:, 1] == coords[i, 1]) & (coords[i + 1:, 2] == coords[i, 2])
        if not later.any():
            np.testing.assert_array_equal(got[:, coords[i, 1], coords[i, 2]], feats[i])


def test_scatter_errors():
    with pytest.raises(ValueError, match="outside"):
        scatter_to_bev(np.ones((1, 2), np.float32), np.array([[0, 5, 0]], np.int32), (5, 5))
    with pytest.raises(ValueError, match="coords_zyx"):
        scatter_to_bev(np.ones((2, 2), np.float32), np.array([[0, 1, 0]], np.int32), (5, 5))


def test_scatter_reuses_out_buffer():
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((50, 3)).astype(np.float32)
    coords = np.stack([np.zeros(50), rng.integers(0, 8, 50), rng.integers(0, 9, 50)], 1)
    coords = coords.astype(np.int32)
    buf = np.full((3, 8, 9), 7.0, np.float32)  # stale content must be cleared
    got = scatter_to_bev(feats, coords, (8, 9), out=buf)
    assert got is buf
    assert_same((got,), (scatter_to_bev_reference(feats, coords, (8, 9)),))
    with pytest.raises(ValueError, match="out must be"):
        scatter_to_bev(feats, coords, (8, 9), out=np.zeros((3, 8, 8), np.float32))
