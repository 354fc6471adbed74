"""drivefuse bench-kernels: the perception/ops kernels side by side with their peers.

Inputs:  the real nuScenes sweep and camera rig in ../shared/data/nuscenes-frame beside a
         checkout when present, else a synthetic sweep and rig built in code.
Outputs: tables on stdout (best / median ms, Mpoints/s, ratio to each peer, x memory floor);
         with --json all rows in that file.

Prints, per kernel and input: best and median wall time over interleaved rounds (every
implementation runs once per round, so load from other processes hits all alike), Mpoints/s,
the peer/ours ratio, and the memory floor: bytes that must be read and written divided by the
copy bandwidth measured here with np.copyto (ratio ``x floor`` = time / floor).

Peers: spconv's CPU ``PointToVoxel`` (output asserted identical) and Open3D's
``voxel_down_sample`` for voxelization; OpenPCDet-style torch decoration after spconv for
pillar features; torch ``index_add_`` / ``scatter_add_`` and BEVFusion's sort + cumsum interval
reduction ("QuickCumsum") for BEV pooling, forward and backward (torch autograd); torch
equivalents for scatter-to-BEV, painting and the voxel-coordinate pass; the numpy references
for the rest. Single-threaded by default (``numba.set_num_threads(1)``,
``torch.set_num_threads(1)``); ``--threads N`` to change.

    drivefuse bench-kernels                  # everything, 1 thread
    drivefuse bench-kernels --only voxel,bev --rounds 21
    drivefuse bench-kernels --cold           # fresh Numba cache: compile cost
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sensors.synthetic_sample import accumulated_sweeps

# The repository root in a checkout (the real frame sits beside it in ../shared).
REPO = Path(__file__).resolve().parents[2]
FRAME_DIR = REPO / "../shared/data/nuscenes-frame"
RANGE_M = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
CONFIGS = {
    "CenterPoint": dict(voxel_size_m=(0.1, 0.1, 0.2), point_range_m=RANGE_M,
                        max_points_per_voxel=10, max_voxels=120000),
    "PointPillars": dict(voxel_size_m=(0.2, 0.2, 8.0), point_range_m=RANGE_M,
                         max_points_per_voxel=20, max_voxels=30000),
}
SECTIONS = ("voxel", "pillars", "scatter", "bev", "paint", "ultrasonic", "nms")


# ------------------------------------------------------------------------------- inputs


def _load_sweep() -> tuple[np.ndarray, str]:
    files = sorted(FRAME_DIR.glob("*LIDAR_TOP*.pcd.bin"))
    if files:
        return np.fromfile(files[0], dtype=np.float32).reshape(-1, 5), "real nuScenes sweep"
    # Fallback: a synthetic 32-beam ring scan of a flat ground plus clutter, ~34k points.
    rng = np.random.default_rng(0)
    az = np.repeat(np.linspace(-np.pi, np.pi, 1084, endpoint=False)[None], 32, 0)
    el = np.radians(np.linspace(-30.7, 10.7, 32))[:, None] + 0 * az
    r = np.where(el < 0, np.minimum(1.84 / np.tan(-el + 1e-3), 80), rng.uniform(5, 60, az.shape))
    pts = np.stack([r * np.cos(az), r * np.sin(az), r * np.tan(el) + 1.84,
                    rng.uniform(0, 100, az.shape), np.zeros_like(az)], -1).reshape(-1, 5)
    return pts.astype(np.float32), "synthetic sweep (real frame not found)"


def camera_rig(feat_h: int = 32, feat_w: int = 88) -> tuple[np.ndarray, np.ndarray, str]:
    """(6, 3, 3) intrinsics at feature resolution and (6, 4, 4) ego_from_cam.

    From the real frame when present: BEVFusion's image pipeline (resize 1600x900 by 0.48,
    crop 704x256 keeping the bottom, feature stride 8 -> 88 x 32).
    """
    path = FRAME_DIR / "frame.json"
    if path.exists():
        frame = json.loads(path.read_text())
        ks, poses = [], []
        for cam in frame["cameras"].values():
            k = np.array(cam["intrinsics"], np.float64)
            scale, crop_x, crop_y = 0.48, (768 - 704) / 2, 432 - 256
            post = np.array([[scale, 0, -crop_x], [0, scale, -crop_y], [0, 0, 1]])
            stride = np.diag([feat_w / 704, feat_h / 256, 1.0])
            ks.append(stride @ post @ k)
            poses.append(np.array(cam["cam2ego"], np.float64))
        return np.stack(ks), np.stack(poses), "real nuScenes camera rig"
    ks, poses = [], []
    for n in range(6):
        yaw = n * np.pi / 3
        rot = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], np.float64)  # cam (x r, y d, z f)
        rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        pose = np.eye(4)
        pose[:3, :3] = rz @ rot
        pose[:3, 3] = [1.0, 0, 1.6]
        ks.append(np.array([[feat_w / 2 / np.tan(0.6), 0, feat_w / 2],
                            [0, feat_w / 2 / np.tan(0.6), feat_h / 2], [0, 0, 1]]))
        poses.append(pose)
    return np.stack(ks), np.stack(poses), "synthetic 6-camera ring"


def liftsplat_geometry(ks, ego_from_cam, d_bins=59, h=32, w=88, grid=128, cell_m=0.8,
                       z_range=(-10.0, 10.0)) -> np.ndarray:
    """cell_index (N, D, h, w): frustum pixel centres x depth 1..59 m -> BEV cell or -1."""
    depths = np.arange(1.0, 1.0 + d_bins)
    u = np.arange(w) + 0.5
    v = np.arange(h) + 0.5
    out = np.empty((len(ks), d_bins, h, w), np.int32)
    for n, (k, pose) in enumerate(zip(ks, ego_from_cam)):
        rays = np.linalg.inv(k) @ np.stack(np.broadcast_arrays(u[None, :], v[:, None],
                                                               np.ones((h, w)))).reshape(3, -1)
        pts = depths[:, None, None] * rays[None]  # (D, 3, h*w) camera frame
        ego = np.einsum("ij,djp->dip", pose[:3, :3], pts) + pose[:3, 3][None, :, None]
        ix = np.floor((ego[:, 0] + grid * cell_m / 2) / cell_m).astype(np.int64)
        iy = np.floor((ego[:, 1] + grid * cell_m / 2) / cell_m).astype(np.int64)
        ok = ((ix >= 0) & (ix < grid) & (iy >= 0) & (iy < grid)
              & (ego[:, 2] >= z_range[0]) & (ego[:, 2] < z_range[1]))
        out[n] = np.where(ok, iy * grid + ix, -1).reshape(d_bins, h, w)
    return out


# ---------------------------------------------------------------------------- timing


@dataclass
class Impl:
    """One implementation in a timing group."""

    name: str
    fn: Callable[[], object]
    ours: bool = False
    times: list[float] = field(default_factory=list)


def _run_group(impls: list[Impl], rounds: int) -> None:
    for impl in impls:  # warm-up (first-call costs are reported separately)
        impl.fn()
    for _ in range(rounds):
        for impl in impls:
            t0 = time.perf_counter()
            impl.fn()
            impl.times.append(time.perf_counter() - t0)


def _report(title: str, impls: list[Impl], npoints: int, floor_bytes: float, bw: float,
           rows: list[dict]) -> None:
    ours = next(i for i in impls if i.ours)
    ours_best = min(ours.times)
    floor_s = floor_bytes / bw
    print(f"\n{title}  (floor: {floor_bytes / 1e6:.1f} MB -> {floor_s * 1e3:.2f} ms)")
    print(f"  {'implementation':44s} {'best ms':>9s} {'median':>9s} {'Mpts/s':>8s} "
          f"{'vs ours':>8s} {'x floor':>8s}")
    for impl in impls:
        best, med = min(impl.times), statistics.median(impl.times)
        ratio = best / ours_best
        tag = "(ours)" if impl.ours else f"{ratio:6.2f}x"
        print(f"  {impl.name:44s} {best * 1e3:9.2f} {med * 1e3:9.2f} "
              f"{npoints / best / 1e6:8.1f} {tag:>8s} {best / floor_s:8.1f}")
        rows.append(dict(section=title, impl=impl.name, ours=impl.ours, best_ms=best * 1e3,
                         median_ms=med * 1e3, peer_over_ours=ratio, x_floor=best / floor_s))


def copy_bandwidth() -> float:
    """Bytes/s of np.copyto on 64 MiB arrays (read + write counted), best of 7."""
    src = np.ones(16 * 2**20, np.float32)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(7))
    return 2 * src.nbytes / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _first_call(label: str, fn, first_calls: list) -> None:
    t = _timed(fn)
    first_calls.append((label, t))


# -------------------------------------------------------------------------- sections


def _bench_voxel(args, sweep, acc, bw, rows, first_calls):
    import torch

    from perception.ops.voxelize import dynamic_voxelize, hard_voxelize
    _first_call("hard_voxelize", lambda: hard_voxelize(sweep, **CONFIGS["CenterPoint"]),
               first_calls)
    _first_call("dynamic_voxelize", lambda: dynamic_voxelize(sweep, (0.1, 0.1, 0.2), RANGE_M),
               first_calls)
    try:
        from spconv.pytorch.utils import PointToVoxel
    except ImportError:
        PointToVoxel = None  # noqa: N806
        print("spconv not installed (pip install spconv): its column is skipped")
    try:
        import open3d as o3d
    except ImportError:
        o3d = None
    for cfg_name, cfg in CONFIGS.items():
        for label, pts in (("1 sweep", sweep), ("10 sweeps", acc)):
            v, c, n = hard_voxelize(pts, **cfg)
            impls = [Impl("drivefuse hard_voxelize (serial)", lambda p=pts, k=cfg:
                          hard_voxelize(p, **k), ours=True)]
            if args.threads > 1:
                impls.append(Impl(f"drivefuse hard_voxelize (parallel, {args.threads} thr)",
                                  lambda p=pts, k=cfg: hard_voxelize(p, **k, parallel=True)))
                vp = hard_voxelize(pts, **cfg, parallel=True)
                assert all(np.array_equal(a, b) for a, b in zip(vp, (v, c, n)))
            if PointToVoxel is not None:
                gen = PointToVoxel(vsize_xyz=list(cfg["voxel_size_m"]),
                                   coors_range_xyz=list(cfg["point_range_m"]),
                                   num_point_features=pts.shape[1],
                                   max_num_voxels=cfg["max_voxels"],
                                   max_num_points_per_voxel=cfg["max_points_per_voxel"])
                tp = torch.from_numpy(pts)
                sv, sc, sn = gen(tp)
                same = (np.array_equal(sv.numpy(), v) and np.array_equal(sc.numpy(), c)
                        and np.array_equal(sn.numpy(), n))
                assert same, f"spconv output differs on {cfg_name} {label}"
                impls.append(Impl("spconv PointToVoxel (CPU), identical output",
                                  lambda g=gen, t=tp: g(t)))
            if o3d is not None:
                pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(
                    pts[:, :3].astype(np.float64)))
                impls.append(Impl("open3d voxel_down_sample (means, no caps)",
                                  lambda q=pcd, s=cfg["voxel_size_m"][0]:
                                  q.voxel_down_sample(s)))
            _run_group(impls, args.rounds)
            floor = pts.nbytes + v.nbytes + c.nbytes + n.nbytes
            _report(f"hard voxelization, {cfg_name}, {label} ({len(pts)} pts -> {len(n)} voxels)",
                   impls, len(pts), floor, bw, rows)
    # Dynamic voxelization: the per-point coordinate pass, vs the same math in torch.
    size = torch.tensor([0.1, 0.1, 0.2], dtype=torch.float32)
    lo = torch.tensor(RANGE_M[:3], dtype=torch.float32)
    grid = torch.tensor([1024, 1024, 40])
    tp = torch.from_numpy(acc)

    def torch_dynamic():
        f = torch.floor((tp[:, :3] - lo) / size)
        ok = ((f >= 0) & (f < grid)).all(1)
        cz = f.flip(1).to(torch.int32)
        cz[~ok] = -1
        return cz

    assert np.array_equal(torch_dynamic().numpy(), dynamic_voxelize(acc, (0.1, 0.1, 0.2), RANGE_M))
    impls = [Impl("drivefuse dynamic_voxelize", lambda: dynamic_voxelize(acc, (0.1, 0.1, 0.2),
                                                                         RANGE_M), ours=True),
             Impl("torch floor/compare (same result)", torch_dynamic)]
    _run_group(impls, args.rounds)
    _report(f"dynamic voxelization, CenterPoint, 10 sweeps ({len(acc)} pts)", impls, len(acc),
           acc.nbytes + len(acc) * 12, bw, rows)


def _bench_pillars(args, sweep, acc, bw, rows, first_calls):
    import torch

    from perception.ops.pillars import pillar_features
    cfg = CONFIGS["PointPillars"]
    _first_call("pillar_features", lambda: pillar_features(sweep, **cfg), first_calls)
    try:
        from spconv.pytorch.utils import PointToVoxel
    except ImportError:
        print("spconv not installed: pillar peer skipped")
        return
    for label, pts in (("1 sweep", sweep), ("10 sweeps", acc)):
        gen = PointToVoxel(vsize_xyz=list(cfg["voxel_size_m"]),
                           coors_range_xyz=list(cfg["point_range_m"]),
                           num_point_features=5, max_num_voxels=cfg["max_voxels"],
                           max_num_points_per_voxel=cfg["max_points_per_voxel"])
        tp = torch.from_numpy(pts)
        vsize = torch.tensor(cfg["voxel_size_m"], dtype=torch.float32)
        offset = vsize / 2 + torch.tensor(RANGE_M[:3], dtype=torch.float32)

        def openpcdet_style(gen=gen, tp=tp, vsize=vsize, offset=offset):
            # OpenPCDet PillarVFE: voxelize, then decorate the padded tensor.
            voxels, coords, num = gen(tp)
            mean = voxels[:, :, :3].sum(1, keepdim=True) / num.view(-1, 1, 1).float()
            f_cluster = voxels[:, :, :3] - mean
            centre = coords[:, [2, 1, 0]].float().unsqueeze(1) * vsize + offset
            f_center = voxels[:, :, :3] - centre
            feats = torch.cat([voxels, f_cluster, f_center], -1)
            mask = torch.arange(voxels.shape[1])[None, :] < num[:, None]
            return feats * mask.unsqueeze(-1).float(), coords, num

        f, c, n = pillar_features(pts, **cfg)
        tf = openpcdet_style()[0].numpy()
        assert np.allclose(f, tf, atol=1e-4), "pillar features disagree with the torch peer"
        impls = [Impl("drivefuse pillar_features (fused)", lambda p=pts: pillar_features(p, **cfg),
                      ours=True),
                 Impl("spconv + torch decoration (OpenPCDet PillarVFE)", openpcdet_style)]
        _run_group(impls, args.rounds)
        _report(f"pillar features, PointPillars, {label} ({len(pts)} pts -> {len(n)} pillars)",
               impls, len(pts), pts.nbytes + f.nbytes + c.nbytes + n.nbytes, bw, rows)


def _bench_scatter(args, acc, bw, rows, first_calls):
    import torch

    from perception.ops.pillars import pillar_features
    from perception.ops.scatter import scatter_to_bev
    _, coords, _ = pillar_features(acc, **CONFIGS["PointPillars"])
    m, ch, hw = len(coords), 64, (512, 512)
    feats = np.random.default_rng(0).standard_normal((m, ch)).astype(np.float32)
    _first_call("scatter_to_bev", lambda: scatter_to_bev(feats[:1], coords[:1], hw), first_calls)
    tf = torch.from_numpy(feats)
    idx = torch.from_numpy(coords[:, 1].astype(np.int64) * hw[1] + coords[:, 2])

    def pointpillars_scatter():  # mmdet3d/OpenPCDet PointPillarsScatter
        canvas = torch.zeros(ch, hw[0] * hw[1])
        canvas[:, idx] = tf.t()
        return canvas.view(ch, *hw)

    assert np.array_equal(pointpillars_scatter().numpy(), scatter_to_bev(feats, coords, hw))
    canvas = np.empty((ch, *hw), np.float32)
    impls = [Impl("drivefuse scatter_to_bev (fresh canvas)",
                  lambda: scatter_to_bev(feats, coords, hw), ours=True),
             Impl("drivefuse scatter_to_bev (out= reused canvas)",
                  lambda: scatter_to_bev(feats, coords, hw, out=canvas)),
             Impl("torch PointPillarsScatter (fresh canvas)", pointpillars_scatter)]
    _run_group(impls, args.rounds)
    _report(f"scatter to BEV ({m} pillars x {ch} ch -> 512x512)", impls, m,
           feats.nbytes + coords.nbytes + ch * hw[0] * hw[1] * 4, bw, rows)


def _bench_bev(args, bw, rows, first_calls):
    import torch

    from perception.ops.bev_pool import bev_pool, bev_pool_backward, bev_pool_prepare
    ks, poses, rig = camera_rig()
    ci = liftsplat_geometry(ks, poses)
    n, d, h, w = ci.shape
    c, k = 80, 128 * 128
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((n, d, h, w)).astype(np.float32)
    depth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    feats = rng.standard_normal((n, h, w, c)).astype(np.float32)
    grad = rng.standard_normal((k, c)).astype(np.float32)
    valid_np = ci.reshape(-1) >= 0
    npts = int(valid_np.sum())
    print(f"\nlift-splat geometry: {rig}, {n} cams x {d} bins x {h}x{w}, {c} ch, 128x128 cells "
          f"of 0.8 m; {npts} of {ci.size} frustum points inside ({npts / ci.size:.0%})")
    small = ci[:1, :2]
    _first_call("bev_pool (builds and caches the plan)",
               lambda: bev_pool(depth[:1, :2], feats[:1], small, k), first_calls)
    _first_call("bev_pool_prepare + bev_pool(plan)", lambda: bev_pool(
        depth[:1, :2], feats[:1], small, k, plan=bev_pool_prepare(small, k)), first_calls)
    _first_call("bev_pool_backward", lambda: bev_pool_backward(grad, depth[:1, :2], feats[:1],
                                                              small), first_calls)
    plan = bev_pool_prepare(ci, k)
    ours = bev_pool(depth, feats, ci, k, plan=plan)

    valid = torch.from_numpy(valid_np)
    cell = torch.from_numpy(ci.reshape(-1).astype(np.int64))[valid]
    dt0, ft0 = torch.from_numpy(depth), torch.from_numpy(feats)

    def product(dt, ft):  # (points, C), as the torch peers must materialize it
        return (dt.unsqueeze(-1) * ft.unsqueeze(1)).reshape(-1, c)[valid]

    with torch.no_grad():
        prod_pre = product(dt0, ft0).contiguous()
    idx_exp = cell.view(-1, 1).expand(-1, c)
    # QuickCumsum (LSS / BEVFusion): sort by cell once (fixed geometry), cumsum, take the
    # differences at interval ends.
    order = torch.argsort(cell, stable=True)
    ranks = cell[order]
    kept = torch.ones(len(ranks), dtype=torch.bool)
    kept[:-1] = ranks[1:] != ranks[:-1]
    kept_ranks = ranks[kept]

    class QuickCumsum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x = x.cumsum(0)
            x = x[kept]
            x = torch.cat((x[:1], x[1:] - x[:-1]))
            ctx.save_for_backward(kept)
            return x

        @staticmethod
        def backward(ctx, gradx):
            (kept_,) = ctx.saved_tensors
            back = torch.cumsum(kept_, 0)
            back[kept_] -= 1
            return gradx[back]

    def quick_cumsum(dt, ft):
        x = QuickCumsum.apply(product(dt, ft)[order])
        out = torch.zeros(k, c)
        out[kept_ranks] = x
        return out

    with torch.no_grad():
        for name, fn in (("index_add_", lambda: torch.zeros(k, c).index_add_(0, cell, prod_pre)),
                         ("quick_cumsum", lambda: quick_cumsum(dt0, ft0))):
            ref = fn().numpy()
            err = np.abs(ref - ours).max()
            assert err < 1e-3 * max(1.0, np.abs(ref).max()), f"{name} disagrees: {err}"
    impls = [
        Impl(f"drivefuse bev_pool (default: cached plan, {args.threads} thr)",
             lambda: bev_pool(depth, feats, ci, k), ours=True),
        Impl(f"drivefuse bev_pool(plan=) (no compare, {args.threads} thr)",
             lambda: bev_pool(depth, feats, ci, k, plan=plan)),
        Impl("torch index_add_ (product precomputed)",
             lambda: torch.zeros(k, c).index_add_(0, cell, prod_pre)),
        Impl("torch product + index_add_",
             lambda: torch.zeros(k, c).index_add_(0, cell, product(dt0, ft0))),
        Impl("torch scatter_add_ (product precomputed)",
             lambda: torch.zeros(k, c).scatter_add_(0, idx_exp, prod_pre)),
        Impl("QuickCumsum sort+cumsum (BEVFusion), pre-sorted",
             lambda: quick_cumsum(dt0, ft0)),
    ]
    with torch.no_grad():
        _run_group(impls, max(3, args.rounds // 2))
    floor = depth.nbytes + feats.nbytes + ci.nbytes + k * c * 4
    _report("BEV pooling forward (lift-splat, 6 cams)", impls, npts, floor, bw, rows)
    impls = [Impl("drivefuse bev_pool_prepare (once per rig)",
                  lambda: bev_pool_prepare(ci, k), ours=True)]
    _run_group(impls, max(3, args.rounds // 2))
    plan_bytes = sum(getattr(plan, f).nbytes for f in ("seg_cell", "seg_start", "seg_first",
                                                       "entries", "empty_cells"))
    _report("BEV pooling plan (one-time precompute)", impls, npts, ci.nbytes + plan_bytes, bw,
           rows)

    # Backward: ours vs torch autograd through each peer formulation.
    gd, gf = bev_pool_backward(grad, depth, feats, ci)
    gt = torch.from_numpy(grad)

    def torch_backward(formulation):
        def run():
            dt = dt0.clone().requires_grad_()
            ft = ft0.clone().requires_grad_()
            out = formulation(dt, ft)
            t0 = time.perf_counter()
            out.backward(gt)
            return dt.grad, ft.grad, time.perf_counter() - t0
        return run

    def index_add_form(dt, ft):
        return torch.zeros(k, c).index_add_(0, cell, product(dt, ft))

    def scatter_add_form(dt, ft):
        return torch.zeros(k, c).scatter_add_(0, idx_exp, product(dt, ft))

    tgd, tgf, _ = torch_backward(index_add_form)()
    assert np.allclose(tgd.numpy(), gd, atol=1e-3) and np.allclose(tgf.numpy(), gf, atol=1e-3)
    # Time only .backward() for the torch peers (their forward graph is built untimed).
    peers = {"torch autograd: index_add_ formulation": torch_backward(index_add_form),
             "torch autograd: scatter_add_ formulation": torch_backward(scatter_add_form),
             "torch autograd: QuickCumsum": torch_backward(quick_cumsum)}
    ours_impl = Impl("drivefuse bev_pool_backward",
                     lambda: bev_pool_backward(grad, depth, feats, ci), ours=True)
    peer_impls = [Impl(name, fn) for name, fn in peers.items()]
    ours_impl.fn()
    for p in peer_impls:
        p.fn()
    for _ in range(max(3, args.rounds // 2)):
        t0 = time.perf_counter()
        ours_impl.fn()
        ours_impl.times.append(time.perf_counter() - t0)
        for p in peer_impls:
            p.times.append(p.fn()[2])
    floor = grad.nbytes + depth.nbytes + feats.nbytes + ci.nbytes + gd.nbytes + gf.nbytes
    _report("BEV pooling backward (grad_depth, grad_feats)", [ours_impl, *peer_impls], npts,
           floor, bw, rows)


def _bench_paint(args, sweep, acc, bw, rows, first_calls):
    import torch

    from perception.ops.painting import paint_points, paint_points_reference
    ks, poses, rig = camera_rig()
    proj = np.stack([k @ np.linalg.inv(p)[:3] for k, p in zip(ks, poses)])  # img_from_ego
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((6, 32, 88, 80)).astype(np.float32)
    mask = np.ones(6, bool)
    _first_call("paint_points", lambda: paint_points(sweep[:10], proj, feats, mask), first_calls)
    pts = acc.copy()
    pts[:, 2] -= 1.84  # LiDAR height: points roughly in the ego frame
    tp = torch.from_numpy(pts[:, :3].astype(np.float64))
    tproj = torch.from_numpy(proj)
    tf = torch.from_numpy(feats)

    def torch_paint():
        out = torch.zeros(len(tp), 80)
        done = torch.zeros(len(tp), dtype=torch.bool)
        for k in range(6):
            uvw = tp @ tproj[k, :, :3].T + tproj[k, :, 3]
            u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
            ok = ~done & (uvw[:, 2] > 0.1) & (u >= 0) & (u < 88) & (v >= 0) & (v < 32)
            out[ok] = tf[k, v[ok].long(), u[ok].long()]
            done |= ok
        return out

    ours = paint_points(pts, proj, feats, mask)
    assert np.mean(np.all(torch_paint().numpy() == ours, 1)) > 0.999
    buf = np.empty((len(pts), 80), np.float32)
    impls = [Impl("drivefuse paint_points (fresh output)",
                  lambda: paint_points(pts, proj, feats, mask), ours=True),
             Impl("drivefuse paint_points (out= reused)",
                  lambda: paint_points(pts, proj, feats, mask, out=buf)),
             Impl("torch project + gather", torch_paint),
             Impl("numpy reference", lambda: paint_points_reference(pts, proj, feats, mask))]
    _run_group(impls, max(3, args.rounds // 2))
    _report(f"point painting, 10 sweeps ({len(pts)} pts, 6 cams, 80 ch, {rig})", impls, len(pts),
           pts.nbytes * 3 // 5 + feats.nbytes + len(pts) * 80 * 4, bw, rows)


def _bench_ultrasonic(args, bw, rows, first_calls):
    from perception.ops.ultrasonic_raster import ultrasonic_raster, ultrasonic_raster_reference
    from sensors.ultrasonic_layout import default_layout
    lay = default_layout()
    ranges = np.random.default_rng(0).uniform(0.3, 5.0, 12)
    ranges[[3, 8]] = np.nan
    a = (ranges, lay.position_ego_m, lay.yaw_ego_rad, lay.half_fov_rad, lay.max_range_m,
         (-51.2, -51.2, 51.2, 51.2), (512, 512))
    _first_call("ultrasonic_raster", lambda: ultrasonic_raster(*a), first_calls)
    impls = [Impl("drivefuse ultrasonic_raster", lambda: ultrasonic_raster(*a), ours=True),
             Impl("numpy reference (whole grid per sensor)",
                  lambda: ultrasonic_raster_reference(*a))]
    _run_group(impls, args.rounds)
    _report("ultrasonic raster (12 sensors -> 2x512x512 at 0.2 m)", impls, 12, 2 * 512 * 512 * 4,
           bw, rows)


def _bench_nms(args, bw, rows, first_calls):
    from perception.ops.nms import circle_nms, circle_nms_reference
    rng = np.random.default_rng(0)
    centers = rng.uniform(-51.2, 51.2, (1000, 2))
    scores = rng.random(1000)
    _first_call("circle_nms", lambda: circle_nms(centers[:5], scores[:5], 1.0), first_calls)
    impls = [Impl("drivefuse circle_nms", lambda: circle_nms(centers, scores, 1.0), ours=True),
             Impl("numpy reference", lambda: circle_nms_reference(centers, scores, 1.0))]
    _run_group(impls, args.rounds)
    _report("circle NMS (1000 boxes, r = 1 m)", impls, 1000, 1000 * 24, bw, rows)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen kernel sections and print their tables; 0 on success."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1, help="Numba and torch threads")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"subset of {SECTIONS}")
    ap.add_argument("--cold", action="store_true",
                    help="use an empty Numba cache dir, so first calls show compile time")
    ap.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    args = ap.parse_args(argv)
    if args.cold:  # must happen before numba is imported
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="drivefuse_numba_")
    import numba
    import torch

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    load = os.getloadavg()
    print(f"drivefuse kernel benchmark: {os.cpu_count()} CPUs, load average "
          f"{load[0]:.1f}/{load[1]:.1f}, threads={args.threads}, rounds={args.rounds}, "
          f"numba {numba.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    sweep, src = _load_sweep()
    acc = accumulated_sweeps(sweep)
    bw = copy_bandwidth()
    print(f"inputs: {src} ({len(sweep)} pts), 10-sweep accumulation ({len(acc)} pts); "
          f"np.copyto bandwidth {bw / 1e9:.1f} GB/s (read+write)")
    rows: list[dict] = []
    first_calls: list = []
    if "voxel" in only:
        _bench_voxel(args, sweep, acc, bw, rows, first_calls)
    if "pillars" in only:
        _bench_pillars(args, sweep, acc, bw, rows, first_calls)
    if "scatter" in only:
        _bench_scatter(args, acc, bw, rows, first_calls)
    if "bev" in only:
        _bench_bev(args, bw, rows, first_calls)
    if "paint" in only:
        _bench_paint(args, sweep, acc, bw, rows, first_calls)
    if "ultrasonic" in only:
        _bench_ultrasonic(args, bw, rows, first_calls)
    if "nms" in only:
        _bench_nms(args, bw, rows, first_calls)
    cache = "empty cache: compile" if args.cold else "Numba cache load (compile if cold)"
    print(f"\nfirst call in this process ({cache}):")
    for label, t in first_calls:
        print(f"  {label:40s} {t * 1e3:9.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, first_calls=first_calls), indent=1))
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse bench-kernels"))
