import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.ops.bev_pool import (
    bev_pool,
    bev_pool_backward,
    bev_pool_backward_reference,
    bev_pool_prepare,
    bev_pool_reference,
)


def assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def make_case(seed, n=2, d=5, h=3, w=4, c=11, k=17, frac_out=0.3):
    rng = np.random.default_rng(seed)
    depth = rng.random((n, d, h, w), dtype=np.float32)
    depth /= depth.sum(1, keepdims=True)
    feats = rng.standard_normal((n, h, w, c), dtype=np.float32)
    ci = rng.integers(0, max(k, 1), (n, d, h, w)).astype(np.int32)
    ci[rng.random(ci.shape) < frac_out] = -1
    if k == 0:
        ci[:] = -1
    grad = rng.standard_normal((k, c), dtype=np.float32)
    return depth, feats, ci, grad


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), d=st.integers(1, 7),
       h=st.integers(1, 5), w=st.integers(1, 6), c=st.integers(1, 20), k=st.integers(0, 40),
       frac_out=st.sampled_from([0.0, 0.5, 1.0]))
def test_random_forward_backward_bit_exact(seed, n, d, h, w, c, k, frac_out):
    depth, feats, ci, grad = make_case(seed, n, d, h, w, c, k, frac_out)
    ref = bev_pool_reference(depth, feats, ci, k)
    assert_same(bev_pool(depth, feats, ci, k), ref)
    assert_same(bev_pool(depth, feats, ci, k, plan=bev_pool_prepare(ci, k)), ref)
    gd, gf = bev_pool_backward(grad, depth, feats, ci)
    rd, rf = bev_pool_backward_reference(grad, depth, feats, ci)
    assert_same(gd, rd)
    assert_same(gf, rf)


@pytest.fixture(scope="module")
def liftsplat_case():
    """Lift-splat shaped (6 cams, 59 bins, 80 ch) at reduced image size: 8 x 22 features."""
    rng = np.random.default_rng(0)
    n, d, h, w, c, grid = 6, 59, 8, 22, 80, 64
    depth = rng.random((n, d, h, w), dtype=np.float32)
    feats = rng.standard_normal((n, h, w, c), dtype=np.float32)
    # Frustum rays fanning out from the ego, binned into a grid x grid BEV of 1 m cells.
    az = (np.arange(n)[:, None, None, None] * 2 * np.pi / n
          + np.linspace(-0.5, 0.5, w)[None, None, None, :])
    r = np.linspace(1, 60, d)[None, :, None, None] + np.zeros((1, 1, h, 1))
    x = np.floor(r * np.cos(az) + grid / 2).astype(np.int64)
    y = np.floor(r * np.sin(az) + grid / 2).astype(np.int64)
    inside = (x >= 0) & (x < grid) & (y >= 0) & (y < grid)
    ci = np.where(inside, y * grid + x, -1).astype(np.int32)
    return depth, feats, ci, grid * grid


def test_liftsplat_shapes_against_reference_and_torch(liftsplat_case):
    torch = pytest.importorskip("torch")
    depth, feats, ci, k = liftsplat_case
    plan = bev_pool_prepare(ci, k)
    assert plan.num_points == int((ci >= 0).sum()) and 0 < plan.num_points < ci.size
    out = bev_pool(depth, feats, ci, k, plan=plan)
    assert_same(out, bev_pool_reference(depth, feats, ci, k))
    assert_same(bev_pool(depth, feats, ci, k), out)
    # Independent oracle: torch autograd of the materialized formulation (float64).
    dt = torch.from_numpy(depth.astype(np.float64)).requires_grad_()
    ft = torch.from_numpy(feats.astype(np.float64)).requires_grad_()
    valid = torch.from_numpy(ci.reshape(-1) >= 0)
    cell = torch.from_numpy(ci.reshape(-1).astype(np.int64))[valid]
    prod = dt.unsqueeze(-1) * ft.unsqueeze(1)  # (N, D, h, w, C)
    out_t = torch.zeros(k, 80, dtype=torch.float64).index_add_(0, cell, prod.reshape(-1, 80)[valid])
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-4, atol=1e-4)
    grad = np.random.default_rng(1).standard_normal((k, 80)).astype(np.float32)
    out_t.backward(torch.from_numpy(grad.astype(np.float64)))
    gd, gf = bev_pool_backward(grad, depth, feats, ci)
    rd, rf = bev_pool_backward_reference(grad, depth, feats, ci)
    assert_same(gd, rd)
    assert_same(gf, rf)
    np.testing.assert_allclose(gd, dt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gf, ft.grad.numpy(), rtol=1e-4, atol=1e-3)
    assert np.all(gd[ci < 0] == 0)


def test_plan_contents():
    ci = np.array([[[[2, -1], [0, 2]]], [[[1, 2], [-1, 0]]]], np.int32)  # (2, 1, 2, 2)
    plan = bev_pool_prepare(ci, 4)
    # Segments by camera, then (column, depth bin, row) of their first point: camera 0 has
    # cells 2 (first point p=0: column 0, row 0) and 0 (p=2: column 0, row 1); camera 1 has
    # cell 1 (p=4, column 0), then cells 2 (p=5: column 1, row 0) and 0 (p=7: column 1, row 1).
    np.testing.assert_array_equal(plan.seg_cell, [2, 0, 1, 2, 0])
    np.testing.assert_array_equal(plan.seg_start, [0, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(plan.seg_first, [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(plan.point_index, [0, 3, 2, 4, 5, 7])  # input order per cell
    np.testing.assert_array_equal(plan.feat_row, [0, 3, 2, 4, 5, 7])
    np.testing.assert_array_equal(plan.empty_cells, [3])
    assert plan.num_points == 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.num_cells = 3


def test_plan_is_cached_and_refreshed():
    """Without a plan, the plan of an equal cell_index is reused; a changed one is rebuilt."""
    from perception.ops import bev_pool as mod
    depth, feats, ci, _ = make_case(3)
    bev_pool(depth, feats, ci, 17)
    cached = mod._LAST_PLAN[1]
    assert_same(bev_pool(depth, feats, ci.copy(), 17), bev_pool_reference(depth, feats, ci, 17))
    assert mod._LAST_PLAN[1] is cached
    ci2 = ci.copy()
    ci2[0, 0, 0, 0] = (ci2[0, 0, 0, 0] + 1) % 17
    assert_same(bev_pool(depth, feats, ci2, 17), bev_pool_reference(depth, feats, ci2, 17))
    assert mod._LAST_PLAN[1] is not cached
    ci2[0, 0, 0, 1] = (ci2[0, 0, 0, 1] + 1) % 17  # mutated in place: the copy catches it
    assert_same(bev_pool(depth, feats, ci2, 17), bev_pool_reference(depth, feats, ci2, 17))


@pytest.mark.parametrize("c", [1, 7, 8, 13, 80, 96, 97, 104, 130])
def test_channel_blocks_and_tails(c):
    """Channel counts that hit the register-block widths, the multi-pass split and the
    scalar tail (forward), and the in-register row path or its fallback (backward); several
    cameras so that cells have later (non-first) segments."""
    depth, feats, ci, grad = make_case(c, n=3, d=6, h=3, w=5, c=c, k=9, frac_out=0.2)
    ref = bev_pool_reference(depth, feats, ci, 9)
    assert_same(bev_pool(depth, feats, ci, 9, plan=bev_pool_prepare(ci, 9)), ref)
    gd, gf = bev_pool_backward(grad, depth, feats, ci)
    rd, rf = bev_pool_backward_reference(grad, depth, feats, ci)
    assert_same(gd, rd)
    assert_same(gf, rf)


def test_thread_count_does_not_change_bits(liftsplat_case):
    """One thread (no parallel region) and several (disjoint cells / rows per thread)."""
    numba = pytest.importorskip("numba")
    depth, feats, ci, k = liftsplat_case
    grad = np.random.default_rng(2).standard_normal((k, feats.shape[-1])).astype(np.float32)
    plan = bev_pool_prepare(ci, k)
    before = numba.get_num_threads()
    try:
        outs = []
        for t in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS),
                         numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(t)
            outs.append((bev_pool(depth, feats, ci, k, plan=plan),
                         *bev_pool_backward(grad, depth, feats, ci)))
    finally:
        numba.set_num_threads(before)
    ref = (bev_pool_reference(depth, feats, ci, k),
           *bev_pool_backward_reference(grad, depth, feats, ci))
    for o in outs:
        for a, b in zip(o, ref):
            assert_same(a, b)


def test_errors():
    depth, feats, ci, grad = make_case(0)
    bad = ci.copy()
    bad[0, 0, 0, 0] = 17
    with pytest.raises(ValueError, match="outside"):
        bev_pool(depth, feats, bad, 17)
    with pytest.raises(ValueError, match="outside"):
        bev_pool_prepare(bad, 17)
    bad[0, 0, 0, 0] = -2
    with pytest.raises(ValueError, match="outside"):
        bev_pool_backward(grad, depth, feats, bad)
    with pytest.raises(ValueError, match="plan"):
        bev_pool(depth, feats, ci, 17, plan=bev_pool_prepare(ci, 18))
    with pytest.raises(ValueError, match="feats"):
        bev_pool(depth, feats[:, :2], ci, 17)
