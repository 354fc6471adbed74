import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perception.ops._grid import make_grid
from perception.ops.voxelize import (
    dynamic_voxelize,
    dynamic_voxelize_reference,
    hard_voxelize,
    hard_voxelize_reference,
)

RANGE = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
CENTERPOINT = dict(voxel_size_m=(0.1, 0.1, 0.2), point_range_m=RANGE,
                   max_points_per_voxel=10, max_voxels=120000)
POINTPILLARS = dict(voxel_size_m=(0.2, 0.2, 8.0), point_range_m=RANGE,
                    max_points_per_voxel=20, max_voxels=30000)


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        # Bitwise: also NaN payloads / signed zeros in copied feature columns.
        assert x.tobytes() == y.tobytes()


def all_variants(points, **cfg):
    ref = hard_voxelize_reference(points, **cfg)
    ser = hard_voxelize(points, **cfg)
    par = hard_voxelize(points, **cfg, parallel=True)
    assert_same(ser, ref)
    assert_same(par, ref)
    return ref


def boundary_cloud(rng, n, vsize, rng6, frac_boundary=0.5, frac_nan=0.05, frac_out=0.1):
    """Random cloud where many coordinates sit exactly on voxel faces or the range limits."""
    lo, hi = np.asarray(rng6[:3], np.float32), np.asarray(rng6[3:], np.float32)
    vs = np.asarray(vsize, np.float32)
    span = hi - lo
    pts = np.empty((n, 5), np.float32)
    pts[:, :3] = lo + rng.random((n, 3), dtype=np.float32) * span
    on_face = rng.random((n, 3)) < frac_boundary
    grid = np.floor(span / vs).astype(np.int64) + 1
    k = rng.integers(0, grid, size=(n, 3)).astype(np.float32)
    faces = lo + k * vs  # float32 face positions, including exactly xmin and xmax
    pts[:, :3] = np.where(on_face, faces, pts[:, :3])
    out = rng.random(n) < frac_out
    pts[out, :3] += (rng.choice([-1, 1], size=(out.sum(), 3)) * span).astype(np.float32)
    pts[:, 3] = rng.random(n, dtype=np.float32)
    pts[:, 4] = rng.integers(0, 32, n).astype(np.float32)
    nan_rows = rng.random(n) < frac_nan
    pts[nan_rows, rng.integers(0, 3)] = np.nan
    return pts


configs = st.sampled_from([
    dict(voxel_size_m=(0.5, 0.5, 0.5), point_range_m=(-4, -4, -2, 4, 4, 2)),
    dict(voxel_size_m=(0.1, 0.1, 0.2), point_range_m=(-3.2, -3.2, -1.0, 3.2, 3.2, 1.0)),
    dict(voxel_size_m=(0.3, 0.7, 0.25), point_range_m=(-1.1, 0.3, -0.9, 2.0, 5.2, 1.3)),
    dict(voxel_size_m=(0.2, 0.2, 8.0), point_range_m=(-5.0, -5.0, -5.0, 5.0, 5.0, 3.0)),
    # Tiny voxels over a big range: 128M cells, many hash-table probes and collisions.
    dict(voxel_size_m=(0.05, 0.05, 0.05), point_range_m=(-10, -10, -4, 10, 10, 4)),
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 3000),
    cfg=configs,
    max_points=st.integers(1, 12),
    max_voxels=st.integers(0, 4000),
    frac_boundary=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_random_clouds_match_reference(seed, n, cfg, max_points, max_voxels, frac_boundary):
    rng = np.random.default_rng(seed)
    pts = boundary_cloud(rng, n, cfg["voxel_size_m"], cfg["point_range_m"], frac_boundary)
    if rng.random() < 0.3:  # clustered clouds make the points cap bind
        pts = np.repeat(pts, rng.integers(1, 6), axis=0)
    all_variants(pts, **cfg, max_points_per_voxel=max_points, max_voxels=max_voxels)


def test_known_answer_small():
    # Grid 4 x 4 x 1 of 1 m voxels over [0, 4) x [0, 4) x [0, 1).
    cfg = dict(voxel_size_m=(1, 1, 1), point_range_m=(0, 0, 0, 4, 4, 1))
    pts = np.array([
        [0.5, 0.5, 0.5, 1],   # voxel A (x0, y0)
        [3.5, 0.5, 0.5, 2],   # voxel B (x3, y0)
        [0.9, 0.1, 0.2, 3],   # A again
        [4.0, 0.5, 0.5, 4],   # x == xmax: outside
        [np.nan, 1, 0.5, 5],  # NaN: ignored
        [1.0, 2.0, 0.0, 6],   # exactly on faces: voxel C (x1, y2, z0)
        [0.0, 0.0, 0.0, 7],   # range minimum: A
        [-1e-7, 0.5, 0.5, 8],  # just below xmin: outside
        [0.2, 0.2, 0.2, 9],   # A, past max_points=3: dropped
        [2.5, 2.5, 0.5, 10],  # voxel D: past max_voxels=3: dropped
        [3.9, 0.9, 0.9, 11],  # B: opened earlier, still kept
    ], np.float32)
    voxels, coords, num = hard_voxelize(pts, **cfg, max_points_per_voxel=3, max_voxels=3)
    np.testing.assert_array_equal(coords, [[0, 0, 0], [0, 0, 3], [0, 2, 1]])
    np.testing.assert_array_equal(num, [3, 2, 1])
    np.testing.assert_array_equal(voxels[0, :, 3], [1, 3, 7])
    np.testing.assert_array_equal(voxels[1, :, 3], [2, 11, 0])
    np.testing.assert_array_equal(voxels[2, :, 3], [6, 0, 0])
    assert voxels.shape == (3, 3, 4)
    assert not voxels[2, 1:].any()
    assert_same((voxels, coords, num),
                hard_voxelize_reference(pts, **cfg, max_points_per_voxel=3, max_voxels=3))


def test_empty_and_all_outside():
    cfg = dict(CENTERPOINT)
    for pts in (np.zeros((0, 5), np.float32), np.full((10, 5), 100.0, np.float32),
                np.full((4, 4), np.nan, np.float32)):
        v, c, n = all_variants(pts, **cfg)
        assert v.shape == (0, 10, pts.shape[1]) and c.shape == (0, 3) and n.shape == (0,)


def test_nan_and_inf_rows_ignored_but_nan_features_copied():
    pts = np.array([[1, 1, 1, np.nan], [np.inf, 1, 1, 0], [1, -np.inf, 1, 0], [1, 1, np.nan, 0],
                    [1.1, 1.1, 1.1, 5]], np.float32)
    v, c, n = all_variants(pts, voxel_size_m=(1, 1, 1), point_range_m=(0, 0, 0, 2, 2, 2),
                           max_points_per_voxel=4, max_voxels=10)
    np.testing.assert_array_equal(n, [2])
    assert np.isnan(v[0, 0, 3]) and v[0, 1, 3] == 5


def test_caps_bind(real_sweep):
    # Point cap: every voxel keeps its first P points, in input order.
    v, c, n = all_variants(real_sweep, voxel_size_m=(2, 2, 8),
                           point_range_m=(-20, -20, -5, 20, 20, 3),
                           max_points_per_voxel=3, max_voxels=100000)
    assert n.max() == 3 and (n == 3).mean() > 0.5
    # Voxel cap: exactly max_voxels voxels, the first ones seen.
    full = hard_voxelize(real_sweep, **CENTERPOINT)
    capped = all_variants(real_sweep, **{**CENTERPOINT, "max_voxels": 1000})
    assert capped[0].shape[0] == 1000
    np.testing.assert_array_equal(capped[1], full[1][:1000])
    np.testing.assert_array_equal(capped[2], full[2][:1000])


@pytest.mark.parametrize("cfg", [CENTERPOINT, POINTPILLARS], ids=["centerpoint", "pointpillars"])
def test_real_sweep(real_sweep, accumulated_sweeps, cfg):
    v, c, n = all_variants(real_sweep, **cfg)
    assert v.shape[0] > 5000 and n.sum() > 0.5 * len(real_sweep)
    v, c, n = all_variants(accumulated_sweeps, **cfg)
    assert v.shape[0] > 20000 and n.max() == cfg["max_points_per_voxel"]


@pytest.mark.parametrize("cfg", [CENTERPOINT, POINTPILLARS], ids=["centerpoint", "pointpillars"])
def test_identical_to_spconv(real_sweep, accumulated_sweeps, cfg):
    torch = pytest.importorskip("torch")
    utils = pytest.importorskip("spconv.pytorch.utils")
    rng = np.random.default_rng(3)
    edge = boundary_cloud(rng, 20000, cfg["voxel_size_m"], cfg["point_range_m"], 0.7, 0.0)
    for pts in (real_sweep, accumulated_sweeps, edge):
        gen = utils.PointToVoxel(vsize_xyz=list(cfg["voxel_size_m"]),
                                 coors_range_xyz=list(cfg["point_range_m"]),
                                 num_point_features=pts.shape[1],
                                 max_num_voxels=cfg["max_voxels"],
                                 max_num_points_per_voxel=cfg["max_points_per_voxel"])
        sv, sc, sn = gen(torch.from_numpy(pts))
        assert_same(hard_voxelize(pts, **cfg), (sv.numpy(), sc.numpy(), sn.numpy()))


@pytest.mark.parametrize("size,rng6", [
    ((0.1, 0.1, 0.2), (-51.2, -51.2, -5, 51.2, 51.2, 3)),
    ((0.3, 0.3, 0.3), (0, 0, 0, 1, 1, 1)),
    ((0.4, 0.4, 0.4), (0, 0, 0, 1, 1, 1)),  # 2.5 voxels: round half away from zero -> 3
    ((0.075, 0.075, 0.2), (-54, -54, -5, 54, 54, 3)),
])
def test_grid_shape_matches_spconv(size, rng6):
    ops = pytest.importorskip("spconv.core_cc.csrc.sparse.all").SpconvOps
    _, grid_zyx, _, _ = ops.calc_point2voxel_meta_data(list(size), list(rng6))
    assert make_grid(size, rng6).shape_xyz.tolist() == list(grid_zyx)[::-1]


def test_dynamic_voxelize(real_sweep):
    rng = np.random.default_rng(1)
    pts = np.concatenate([real_sweep, boundary_cloud(rng, 5000, (0.1, 0.1, 0.2),
                                                     CENTERPOINT["point_range_m"])])
    cfg = dict(voxel_size_m=CENTERPOINT["voxel_size_m"], point_range_m=CENTERPOINT["point_range_m"])
    coords = dynamic_voxelize(pts, **cfg)
    assert_same((coords,), (dynamic_voxelize_reference(pts, **cfg),))
    inside = coords[:, 0] >= 0
    assert np.all(coords[~inside] == -1) and 0 < inside.sum() < len(pts)
    # The same voxels as hard voxelization when no cap binds.
    _, hc, _ = hard_voxelize(pts, **cfg, max_points_per_voxel=1, max_voxels=10**6)
    assert {tuple(r) for r in hc} == {tuple(r) for r in coords[inside]}


def test_float64_input_and_errors():
    pts = np.random.default_rng(0).uniform(-3, 3, (100, 4))
    a = hard_voxelize(pts, (1, 1, 1), (-2, -2, -2, 2, 2, 2), 5, 50)
    assert_same(a, hard_voxelize(pts.astype(np.float32), (1, 1, 1), (-2, -2, -2, 2, 2, 2), 5, 50))
    with pytest.raises(ValueError, match="points"):
        hard_voxelize(np.zeros((5, 2), np.float32), (1, 1, 1), (0, 0, 0, 1, 1, 1), 5, 5)
    with pytest.raises(ValueError, match="voxel_size_m"):
        hard_voxelize(pts, (1, 0, 1), (0, 0, 0, 1, 1, 1), 5, 5)
    with pytest.raises(ValueError, match="point_range_m"):
        hard_voxelize(pts, (1, 1, 1), (0, 0, 0, 1, -1, 1), 5, 5)
    with pytest.raises(ValueError, match="max_points_per_voxel"):
        hard_voxelize(pts, (1, 1, 1), (0, 0, 0, 1, 1, 1), 0, 5)


@pytest.mark.parametrize("dense_max_bytes,packed", [(0, False), (1 << 40, False), (1 << 40, True)],
                         ids=["hash", "dense", "dense-packed"])
def test_fused_table_kinds_match_reference(monkeypatch, dense_max_bytes, packed):
    """The serial fused pass with the dense cell table forced on or off (hash) everywhere,
    and the dense table with ids only or with packed counts."""
    from perception.ops import voxelize
    monkeypatch.setattr(voxelize, "_DENSE_MAX_BYTES", dense_max_bytes)
    monkeypatch.setattr(voxelize, "_use_packed", lambda *a: packed)
    rng = np.random.default_rng(5)
    for cfg in (dict(voxel_size_m=(0.5, 0.5, 0.5), point_range_m=(-4, -4, -2, 4, 4, 2)),
                dict(voxel_size_m=(0.3, 0.7, 0.25),
                     point_range_m=(-1.1, 0.3, -0.9, 2.0, 5.2, 1.3))):
        pts = boundary_cloud(rng, 3000, cfg["voxel_size_m"], cfg["point_range_m"])
        for p, m in ((3, 50), (12, 4000)):
            ref = hard_voxelize_reference(pts, **cfg, max_points_per_voxel=p, max_voxels=m)
            assert_same(voxelize.hard_voxelize(pts, **cfg, max_points_per_voxel=p, max_voxels=m),
                        ref)


def test_dense_table_int32_ids():
    """More than 2**15 voxels on a small grid: the dense table holds int32 (packed) entries,
    not int16 ids."""
    rng = np.random.default_rng(6)
    cfg = dict(voxel_size_m=(0.25, 0.25, 8.0), point_range_m=(0, 0, -4, 64, 64, 4))  # 65536 cells
    pts = boundary_cloud(rng, 120000, cfg["voxel_size_m"], cfg["point_range_m"], 0.2, 0.01)
    for m in (40000, 100000):
        ref = all_variants(pts, **cfg, max_points_per_voxel=4, max_voxels=m)
        assert ref[0].shape[0] > 2**15


def test_result_is_independent_of_the_buffer():
    """The result is a view of a buffer sized for the cap; a second call does not alias it."""
    rng = np.random.default_rng(8)
    pts = boundary_cloud(rng, 2000, (0.5, 0.5, 0.5), (-4, -4, -2, 4, 4, 2))
    a = hard_voxelize(pts, (0.5, 0.5, 0.5), (-4, -4, -2, 4, 4, 2), 5, 1000)
    keep = [x.copy() for x in a]
    hard_voxelize(pts[::-1].copy(), (0.5, 0.5, 0.5), (-4, -4, -2, 4, 4, 2), 5, 1000)
    assert_same(a, keep)
    assert a[0].flags.c_contiguous and a[1].flags.c_contiguous
