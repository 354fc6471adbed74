"""eval.benchmark on a tiny synthetic dataset and tiny random checkpoints: every cell in the
table, Robo3D robustness numbers, resume after SIGKILL with identical results."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from model_synth import micro_config

from eval.benchmark import BenchmarkSpec, cell_name, robustness, run_benchmark

sim = pytest.importorskip("sensors.sim")
REPO = Path(__file__).resolve().parents[2]
VARIANTS = ("lidar_only", "camera_only", "concat_conv", "serial", "lidar_camera_refine")
CORRUPTIONS = ("lidar_density", "camera_missing", "ultrasonic_missing", "lidar_missing")
TIMING_KEYS = ("speedup_shared_vs_full", "shared_ms_per_sample", "full_ms_per_sample")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from perception.checkpoint import save_checkpoint
    from perception.model import build_model

    root = tmp_path_factory.mktemp("bench")
    data = sim.generate_dataset(
        sim.SimConfig(num_scenes=2, scene_duration_s=1.0, num_workers=1, seed=5),
        root / "data", progress=False,
    )
    ckpts = []
    for i, v in enumerate(VARIANTS):
        torch.manual_seed(i)
        cfg = micro_config(v)
        save_checkpoint(root / "ckpt" / v, build_model(cfg), cfg, {"test": True})
        ckpts.append((v, str(root / "ckpt" / v)))
    spec = BenchmarkSpec(tuple(ckpts), str(data), "v1.0-mini", "mini_val",
                         corruptions=CORRUPTIONS, severities=(1, 3), memory=False,
                         verify_samples=1)
    result = run_benchmark(spec, root / "full", progress=False, log=lambda s: None)
    return root, spec, result


def _metrics(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in TIMING_KEYS}


def test_table_has_every_cell(setup):
    root, spec, result = setup
    want = {"clean", "lidar_density_s1", "lidar_density_s3", "camera_missing_s1",
            "camera_missing_s3", "ultrasonic_missing_s1", "lidar_missing_s1"}
    for v in VARIANTS:
        assert set(result.cells[v]) == want
        for rec in result.cells[v].values():
            for k in ("mAP", "NDS", "mATE", "mAVE", "L2_3s_m", "collision_3s"):
                assert k in rec
            assert rec["samples"] == 2
            # No sample failed: a failed one scores as empty, which reads as a robustness
            # result (serial once failed every sample under LiDAR corruptions, handed
            # lidar_only's camera-less arrays).
            assert rec["failures"] == 0, (v, rec["corruption"], rec["failed_samples"])
    md = (root / "full" / "benchmark.md").read_text()
    for v in VARIANTS:
        for name in want:
            assert f"| {v} | {name} |" in md
    assert (root / "full" / "heatmap.png").stat().st_size > 1000
    assert (root / "full" / "accuracy_latency.png").stat().st_size > 1000
    saved = json.loads((root / "full" / "benchmark.json").read_text())
    assert set(saved["cells"]["concat_conv"]) == want
    # The machine the timings were taken on, with its reference convolution, so that ms/frame
    # of two runs can be compared: a slower host once read as a slower commit.
    machine = saved["machine"]
    assert machine["cores"] >= 1 and 0 < machine["reference_conv_ms"] < 10_000
    assert f"reference conv {machine['reference_conv_ms']:.1f} ms" in md


def test_a_camera_model_is_never_handed_camera_less_arrays(setup, tmp_path):
    # Preprocessed arrays are shared by variants with equal preprocessing; lidar_only's carry
    # no pixels (it has no camera branch). Without a cascade in the set, lidar_only and
    # serial decode at one reduction, and serial, whose LiDAR map reads the cameras, once got
    # lidar_only's arrays under every LiDAR corruption: every sample failed.
    root, spec, _ = setup
    pair = tuple((v, p) for v, p in spec.checkpoints if v in ("lidar_only", "serial"))
    sub = replace(spec, checkpoints=pair, corruptions=("lidar_density",), severities=(1,))
    result = run_benchmark(sub, tmp_path / "pair", progress=False, log=lambda s: None)
    rec = result.cells["serial"]["lidar_density_s1"]
    assert rec["failures"] == 0 and rec["samples"] == 2


def test_unaffected_variants_keep_their_clean_result(setup):
    _, _, result = setup
    lid, cam = result.cells["lidar_only"], result.cells["camera_only"]
    assert lid["camera_missing_s3"]["reused_clean"]
    assert lid["camera_missing_s3"]["NDS"] == lid["clean"]["NDS"]
    assert cam["lidar_density_s1"]["reused_clean"]
    assert not result.cells["concat_conv"]["camera_missing_s1"].get("reused_clean")
    # LiDAR-only without its LiDAR detects nothing.
    assert lid["lidar_missing_s1"]["mAP"] == 0.0


def test_robustness_follows_the_robo3d_definitions(setup):
    _, spec, result = setup
    cells = result.cells
    rob = robustness(cells, spec)
    v, base = "concat_conv", spec.baseline
    rr, ce = [], []
    for c in CORRUPTIONS:
        sev = (1,) if c.endswith("_missing") and c != "camera_missing" else (1, 3)
        vals = [cells[v][cell_name(c, s)]["NDS"] for s in sev]
        bvals = [cells[base][cell_name(c, s)]["NDS"] for s in sev]
        if cells[v]["clean"]["NDS"]:
            rr.append(np.mean(vals) / cells[v]["clean"]["NDS"])
        if sum(1 - b for b in bvals) > 0:
            ce.append(sum(1 - x for x in vals) / sum(1 - b for b in bvals))
    assert rob[v]["mRR"] == pytest.approx(np.mean(rr)) if rr else np.isnan(rob[v]["mRR"])
    assert rob[v]["mCE"] == pytest.approx(np.mean(ce))
    assert rob[base]["mCE"] == pytest.approx(1.0)
    assert result.variants[v]["mCE"] == rob[v]["mCE"]


def test_resume_after_sigkill_is_identical(setup):
    root, spec, result = setup
    out = root / "killed"
    # The child writes cells slowly (a sleep after each), so the kill lands mid-run.
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(REPO)!r})
        import eval.benchmark as b
        put = b.CellCache.put
        def slow_put(self, *a, **k):
            put(self, *a, **k)
            time.sleep(0.7)
        b.CellCache.put = slow_put
        spec = b.BenchmarkSpec(**json.loads({json.dumps(_spec_kwargs(spec))!r}))
        b.run_benchmark(spec, {str(out)!r}, progress=False, log=lambda s: None)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.time() + 300  # a loaded machine: the child may take long to start
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "cells").glob("*/*.json"))) >= 4:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the child finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {p: p.read_bytes() for p in (out / "cells").glob("*/*.json")}
    total = len(VARIANTS) * 7
    assert 4 <= len(done) < total
    resumed = run_benchmark(spec, out, progress=False, log=lambda s: None)
    assert resumed.computed_cells == total - len(done)
    for p, before in done.items():  # nothing already done was written again
        assert p.read_bytes() == before
    for v in VARIANTS:
        assert set(resumed.cells[v]) == set(result.cells[v])
        for name, rec in result.cells[v].items():
            assert _metrics(resumed.cells[v][name]) == _metrics(rec), (v, name)


def test_a_folder_of_another_run_is_refused(setup):
    root, spec, _ = setup
    with pytest.raises(ValueError, match="different run"):
        run_benchmark(replace(spec, seed=1), root / "full", progress=False, log=lambda s: None)


def _spec_kwargs(spec: BenchmarkSpec) -> dict:
    from dataclasses import asdict

    d = asdict(spec)
    d["checkpoints"] = [list(x) for x in spec.checkpoints]
    for k in ("corruptions", "severities"):
        d[k] = list(d[k])
    return d


def test_reset_stale_starts_a_folder_of_another_run_afresh(setup):
    import shutil

    root, spec, _ = setup
    shutil.copytree(root / "full", root / "stale")
    again = run_benchmark(replace(spec, seed=1), root / "stale", progress=False,
                          log=lambda s: None, reset_stale=True)
    assert again.computed_cells == len(VARIANTS) * 7
    assert json.loads((root / "stale" / "run.json").read_text())["seed"] == 1


def test_train_variants_with_one_recipe(setup, tmp_path):
    from eval.benchmark import train_variants

    root, spec, _ = setup
    ck = train_variants(("lidar_only", "lidar_ultrasonic"), tmp_path / "ck", spec.dataroot,
                        spec.version, "mini_train", steps=2, seed=3, cache_dir=str(tmp_path / "c"))
    assert [v for v, _ in ck] == ["lidar_only", "lidar_ultrasonic"]
    for _, folder in ck:
        prov = json.loads((Path(folder) / "provenance.json").read_text())
        assert (prov["steps"], prov["seed"], prov["preset"], prov["final"]) == (2, 3, "tiny", True)
    stamp = (Path(ck[0][1]) / "model.pt").stat().st_mtime_ns
    train_variants(("lidar_only",), tmp_path / "ck", spec.dataroot, spec.version, "mini_train",
                   steps=2, seed=3, cache_dir=str(tmp_path / "c"))
    assert (Path(ck[0][1]) / "model.pt").stat().st_mtime_ns == stamp  # same recipe: reused


def test_branch_maps_shared_across_variants_equal_each_variant_alone(setup, tmp_path,
                                                                      monkeypatch):
    # As shipped: camera_only's camera branch inside concat_conv, lidar_only's LiDAR branch
    # inside lidar_camera_refine. The benchmark computes each such map once per sample (in
    # the clean pass after the latency samples: none here); every cell must equal the cell
    # of the variant benchmarked alone, where nothing is shared.
    import eval.benchmark as bench
    from perception.checkpoint import save_checkpoint
    from perception.model import build_model

    root, spec, _ = setup
    models = {}
    for i, v in enumerate(("camera_only", "concat_conv", "lidar_only", "lidar_camera_refine")):
        torch.manual_seed(10 + i)
        models[v] = (build_model(micro_config(v)), micro_config(v))
    models["concat_conv"][0].camera.load_state_dict(models["camera_only"][0].camera.state_dict())
    models["lidar_camera_refine"][0].lidar.load_state_dict(
        models["lidar_only"][0].lidar.state_dict())
    ckpts = []
    for v, (model, cfg) in models.items():
        save_checkpoint(tmp_path / "ckpt" / v, model, cfg, {"test": True})
        ckpts.append((v, str(tmp_path / "ckpt" / v)))
    twin = replace(spec, checkpoints=tuple(ckpts), corruptions=("camera_gaussian", "lidar_density"),
                   severities=(3,), verify_samples=2)
    monkeypatch.setattr(bench, "LATENCY_SAMPLES", 0)
    together = run_benchmark(twin, tmp_path / "together", progress=False, log=lambda s: None,
                             facts="none")
    for v, path in ckpts:
        alone = run_benchmark(replace(twin, checkpoints=((v, path),)), tmp_path / v,
                              progress=False, log=lambda s: None, facts="none")
        for name, rec in alone.cells[v].items():
            assert _metrics(together.cells[v][name]) == _metrics(rec), (v, name)
