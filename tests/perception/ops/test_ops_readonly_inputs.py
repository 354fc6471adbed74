"""Frames hand kernels read-only arrays (sensors.types makes them immutable): every kernel
must accept them and give the same result as for writable copies."""

import numpy as np

from perception.ops.bev_pool import bev_pool, bev_pool_backward, bev_pool_prepare
from perception.ops.interleave import interleave_sweeps
from perception.ops.nms import circle_nms
from perception.ops.painting import paint_points
from perception.ops.pillars import pillar_features
from perception.ops.scatter import scatter_to_bev
from perception.ops.ultrasonic_raster import ultrasonic_raster
from perception.ops.voxelize import dynamic_voxelize, hard_voxelize


def ro(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def same(a, b):
    if isinstance(a, tuple):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    else:
        assert np.array_equal(a, b)


def test_readonly_inputs_everywhere():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-6, 6, (3000, 5)).astype(np.float32)
    cfg = ((0.5, 0.5, 0.5), (-5, -5, -5, 5, 5, 5), 4, 500)
    for parallel in (False, True):
        same(hard_voxelize(ro(pts), *cfg, parallel=parallel), hard_voxelize(pts, *cfg))
    same(dynamic_voxelize(ro(pts), *cfg[:2]), dynamic_voxelize(pts, *cfg[:2]))
    same(pillar_features(ro(pts), *cfg), pillar_features(pts, *cfg))
    f, c, _ = pillar_features(pts, *cfg)
    same(scatter_to_bev(ro(f[:, 0]), ro(c), (20, 20)), scatter_to_bev(f[:, 0], c, (20, 20)))
    depth = rng.random((2, 3, 4, 5), dtype=np.float32)
    feats = rng.standard_normal((2, 4, 5, 16), dtype=np.float32)
    ci = rng.integers(-1, 10, (2, 3, 4, 5)).astype(np.int32)
    grad = rng.standard_normal((10, 16), dtype=np.float32)
    plan = bev_pool_prepare(ro(ci), 10)
    same(bev_pool(ro(depth), ro(feats), ro(ci), 10, plan=plan), bev_pool(depth, feats, ci, 10))
    same(bev_pool(ro(depth), ro(feats), ro(ci), 10), bev_pool(depth, feats, ci, 10))
    same(bev_pool_backward(ro(grad), ro(depth), ro(feats), ro(ci)),
         bev_pool_backward(grad, depth, feats, ci))
    proj = rng.normal(size=(2, 3, 4))
    proj[:, 2, 3] += 3
    pf = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)
    same(paint_points(ro(pts[:, :3]), ro(proj), ro(pf), ro([True, True])),
         paint_points(pts[:, :3], proj, pf, [True, True]))
    pos = rng.uniform(-2, 2, (12, 3))
    yaw = rng.uniform(-3, 3, 12)
    rngs = rng.uniform(0.5, 4, 12)
    args = (0.5, 5.0, (-5, -5, 5, 5), (16, 16))
    same(ultrasonic_raster(ro(rngs), ro(pos), ro(yaw), *args),
         ultrasonic_raster(rngs, pos, yaw, *args))
    swept = pts.copy()
    swept[:, 4] = np.repeat([0.0, 0.05, 0.1], 1000)
    same(interleave_sweeps(ro(swept)), interleave_sweeps(swept))
    same(circle_nms(ro(pts[:100, :2]), ro(pts[:100, 3]), 1.0),
         circle_nms(pts[:100, :2], pts[:100, 3], 1.0))
