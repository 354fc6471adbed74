import numpy as np
import pytest
import torch
from model_synth import camera_pose, make_sample, micro_config

from perception.backbones.camera import BevPoolFunction, LiftSplat, bev_pool_torch
from perception.backbones.camera_inputs import depth_bin_centers, frustum_cell_index
from perception.backbones.lidar_inputs import paint_index
from perception.batch import collate
from perception.config import preset
from perception.prepare import prepare_sample

pytest.importorskip("perception.ops.bev_pool", reason="engineer C's bev_pool kernel")


def _random_lift(seed=0, n=3, d=5, h=4, w=6, c=7, num_cells=40):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand((n, d, h, w), generator=g, dtype=torch.float32).softmax(1)
    feats = torch.randn((n, h, w, c), generator=g, dtype=torch.float32)
    cell = torch.randint(-1, num_cells, (n, d, h, w), generator=g)
    cell[0] = -1  # a missing camera
    return depth, feats, cell, num_cells


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_and_torch_bev_pool_agree_forward_and_backward(seed):
    depth, feats, cell, num_cells = _random_lift(seed)
    d1, f1 = depth.clone().requires_grad_(), feats.clone().requires_grad_()
    d2, f2 = depth.clone().requires_grad_(), feats.clone().requires_grad_()
    out_k = BevPoolFunction.apply(d1, f1, cell, num_cells)
    out_t = bev_pool_torch(d2, f2, cell, num_cells)
    torch.testing.assert_close(out_k, out_t, rtol=1e-5, atol=1e-5)
    # Cells nobody lands in are exactly zero; the total mass is conserved.
    hit = torch.zeros(num_cells, dtype=torch.bool)
    hit[cell[cell >= 0]] = True
    assert (out_k[~hit] == 0).all()
    expect_sum = (depth[..., None] * feats[:, None])[cell >= 0].sum(0)
    torch.testing.assert_close(out_k.sum(0), expect_sum, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(out_k)
    (out_k * g).sum().backward()
    (out_t * g).sum().backward()
    torch.testing.assert_close(d1.grad, d2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-5, atol=1e-5)
    assert (d1.grad[0] == 0).all()  # the missing camera gets no gradient


def test_kernel_bev_pool_passes_gradcheck():
    depth, feats, cell, num_cells = _random_lift(3, n=2, d=3, h=2, w=3, c=2, num_cells=8)
    # The kernel runs in float32; gradcheck with a matching tolerance.
    d = depth.double().requires_grad_()
    f = feats.double().requires_grad_()

    def fn(a, b):
        return BevPoolFunction.apply(a.float(), b.float(), cell, num_cells).double()

    assert torch.autograd.gradcheck(fn, (d, f), eps=1e-3, atol=2e-3, rtol=2e-3)


def test_lift_splat_module_same_with_both_pool_paths():
    cfg = micro_config("camera_only")
    s = make_sample(0)
    batch = collate([prepare_sample(s, cfg)], cfg)
    torch.manual_seed(0)
    lift_k = LiftSplat(16, cfg.camera, cfg.grid)
    lift_t = LiftSplat(16, cfg.camera, cfg.grid)
    lift_t.load_state_dict(lift_k.state_dict())
    lift_t.pool_impl = "torch"
    h, w = cfg.camera.feature_hw
    feats = torch.randn(6, 16, h, w, requires_grad=True)
    a = lift_k(feats, batch.cell_index, batch.camera_mask)
    b = lift_t(feats, batch.cell_index, batch.camera_mask)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert a.abs().sum() > 0


def test_frustum_geometry_front_camera_centre_ray_lands_ahead():
    cfg = preset("tiny")
    hh, ww = cfg.camera.image_hw
    k = np.array([[100.0, 0, (ww - 1) / 2], [0, 100.0, (hh - 1) / 2], [0, 0, 1]], np.float32)
    pose = camera_pose(0.0).as_matrix().astype(np.float32)  # at (1.5, 0, 1.5) looking +x
    intr = np.tile(k, (6, 1, 1))
    poses = np.tile(pose, (6, 1, 1))
    mask = np.zeros(6, bool)
    mask[0] = True
    cell, proj = frustum_cell_index(intr, poses, mask, cfg)
    assert (cell[1:] == -1).all()
    h, w = cfg.camera.feature_hw
    g = cfg.grid
    depths = depth_bin_centers(cfg)
    # Feature pixel (i, j) looks through image pixel ((j + 0.5) s - 0.5, (i + 0.5) s - 0.5):
    # camera x (right) is ego -y, camera z (depth) is ego +x, camera y (down) is ego -z.
    j, i = w // 2, h // 2
    s = cfg.camera.feature_stride
    u, v = (j + 0.5) * s - 0.5, (i + 0.5) * s - 0.5
    for di, d in enumerate(depths):
        idx = cell[0, di, i, j]
        x, y = 1.5 + d, -(u - k[0, 2]) / k[0, 0] * d
        z = 1.5 - (v - k[1, 2]) / k[1, 1] * d
        if x >= g.x_range_m[1] or not g.z_range_m[0] <= z < g.z_range_m[1]:
            assert idx == -1
            continue
        ix, iy = idx % g.width, idx // g.width
        assert ix == int(np.floor((x - g.x_range_m[0]) / g.cell_m))
        assert iy == int(np.floor((y - g.y_range_m[0]) / g.cell_m))
    # The projection maps that ray's points back to the same feature pixel.
    uvz = proj[0] @ np.array([20.0, 0.0, 1.5, 1.0])
    assert int(uvz[0] / uvz[2]) in (j - 1, j) and int(uvz[1] / uvz[2]) in (i - 1, i)


def test_paint_index_gather_matches_the_painting_kernel():
    from perception.backbones.lidar import gather_paint
    from perception.ops.painting import paint_points

    cfg = micro_config("serial")
    samples = [make_sample(0), make_sample(1)]
    arrays = [prepare_sample(s, cfg) for s in samples]
    arrays[1] = arrays[1].without_cameras(np.array([True, False, True, False, False, False]))
    batch = collate(arrays, cfg)
    h, w = cfg.camera.feature_hw
    feats = torch.randn(2, 6, 5, h, w)
    painted = gather_paint(feats, batch.paint_index)  # (M, P, 5)
    seen_any = 0
    for b in range(2):
        rows = (batch.pillar_coords[:, 0] == b).numpy()
        pts = batch.pillars.numpy()[rows]
        num = batch.pillar_num_points.numpy()[rows]
        valid = np.arange(pts.shape[1])[None] < num[:, None]
        xyz = np.ascontiguousarray(pts[valid][:, :3])
        expect = paint_points(
            xyz, batch.img_from_ego[b].numpy().astype(np.float64),
            feats[b].permute(0, 2, 3, 1).contiguous().numpy(), batch.camera_mask[b].numpy(),
        )
        got = painted.numpy()[rows][valid]
        np.testing.assert_array_equal(got, expect)
        seen_any += int((np.abs(expect).sum(1) > 0).sum())
        # Padding slots are never painted.
        assert (painted.numpy()[rows][~valid] == 0).all()
    assert seen_any > 100
    # The gather is differentiable with respect to the camera features.
    f = feats.clone().requires_grad_()
    gather_paint(f, batch.paint_index).sum().backward()
    assert f.grad.abs().sum() > 0


def test_paint_index_empty_inputs():
    out = paint_index(np.zeros((0, 4, 11), np.float32), np.zeros(0, np.int64),
                      np.zeros(0, np.int64), np.zeros((1, 6, 3, 4), np.float32),
                      np.ones((1, 6), bool), (3, 5))
    assert out.shape == (0, 4)
