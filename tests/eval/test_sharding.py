"""Inference sharded by scene: in-process, a process pool and Ray write the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_synth import micro_config

from eval.executor import ExecutorConfig, ensure_ray
from eval.runner import run_model
from eval.sharding import merge_runs, run_model_sharded, shards_by_scene

sim = pytest.importorskip("sensors.sim")
REPO = Path(__file__).resolve().parents[2]
SPLIT = "mini_train"  # 3 of the 4 generated scenes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from perception.checkpoint import save_checkpoint
    from perception.model import build_model
    from sensors.datasets.nuscenes import NuScenesDataset

    root = tmp_path_factory.mktemp("shard")
    data = sim.generate_dataset(sim.SimConfig(num_scenes=4, scene_duration_s=1.0, seed=7),
                                root / "data", progress=False)
    torch.manual_seed(0)
    cfg = micro_config("concat_conv")
    save_checkpoint(root / "ckpt", build_model(cfg), cfg, {"test": True})
    return root, data, root / "ckpt", NuScenesDataset(str(data), "v1.0-mini")


@pytest.fixture(scope="module")
def tool():
    from eval.commands import evaluate  # `drivefuse evaluate`; tools/evaluate.py is its alias

    return evaluate


def _outputs(out: Path) -> dict[str, bytes]:
    files = {n: (out / n).read_bytes() for n in ("results.json", "planning.json",
                                                 "failures.json")}
    summary = json.loads((out / "metrics_summary.json").read_text())
    summary.pop("eval_time")  # the devkit's wall time
    files["metrics_summary"] = json.dumps(summary, sort_keys=True).encode()
    return files


def test_shards_are_scenes_and_merge_back_in_token_order(setup):
    _, _, ckpt, ds = setup
    tokens = ds.split_sample_tokens(SPLIT)
    shards = shards_by_scene(ds, tokens)
    assert len(shards) == 3 and [t for s in shards for t in s] == tokens
    whole = run_model(ckpt, ds, tokens, progress=False)
    parts = merge_runs([run_model(ckpt, ds, list(s), progress=False) for s in shards])
    assert list(parts.detections) == list(whole.detections) == tokens
    assert parts.write_results() == whole.write_results()
    assert list(parts.plans) == list(whole.plans)


def test_evaluate_checkpoint_same_bytes_inline_pool_and_ray(setup, tool, tmp_path):
    pytest.importorskip("ray")
    ensure_ray(ExecutorConfig("ray", workers=2))  # reused if another module started it
    _, data, ckpt, _ = setup
    # One thread everywhere: CPU float reductions depend on the thread count.
    base = ["--checkpoint", str(ckpt), "--dataroot", str(data), "--version", "v1.0-mini",
            "--split", SPLIT, "--no-plots", "--threads", "1"]
    assert tool.main([*base, "--out", str(tmp_path / "inline")]) == 0
    assert tool.main([*base, "--out", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    assert tool.main([*base, "--out", str(tmp_path / "pool"), "--workers", "2"]) == 0
    inline = _outputs(tmp_path / "inline")
    assert json.loads(inline["results.json"])["results"]  # every sample has an entry
    assert _outputs(tmp_path / "ray") == inline
    assert _outputs(tmp_path / "pool") == inline


def test_a_failed_shard_is_recorded_per_sample(setup, tmp_path):
    _, _, ckpt, ds = setup
    tokens = ds.split_sample_tokens(SPLIT)
    bad = tmp_path / "bad"
    bad.mkdir()
    run, outcome = run_model_sharded(bad, ds, tokens, progress=False)
    assert len(outcome.failures) == 3 and not any(outcome.results)
    assert list(run.detections) == tokens and all(len(b) == 0 for b in run.detections.values())
    assert [f.sample_token for f in run.failures] == tokens
    assert all(f.error.startswith("shard failed: ") for f in run.failures)


TIMING_KEYS = ("speedup_shared_vs_full", "shared_ms_per_sample", "full_ms_per_sample")


def _cells(result) -> dict:
    return {v: {c: {k: x for k, x in rec.items() if k not in TIMING_KEYS}
                for c, rec in cells.items()} for v, cells in result.cells.items()}


def _two_variant_spec(setup, corruptions: tuple[str, ...], memory: bool):  # noqa: ANN202
    """A benchmark of a micro lidar_only and the fixture's concat_conv; this process set to
    one thread, as every chunk is (threads=1), so that inline and chunk cells compare.
    """
    from eval.benchmark import BenchmarkSpec
    from perception.checkpoint import save_checkpoint
    from perception.model import build_model
    from perception.threads import set_cpu_threads

    root, data, ckpt, _ = setup
    lidar = root / "lidar_ckpt"
    if not lidar.is_dir():
        torch.manual_seed(1)
        lid = micro_config("lidar_only")
        save_checkpoint(lidar, build_model(lid), lid, {"test": True})
    set_cpu_threads(1)
    return BenchmarkSpec((("lidar_only", str(lidar)), ("concat_conv", str(ckpt))), str(data),
                         "v1.0-mini", "mini_val", corruptions=corruptions, severities=(3,),
                         memory=memory, verify_samples=0)


def test_benchmark_chunks_on_ray_give_the_same_cells(setup, tmp_path):
    pytest.importorskip("ray")
    from eval.benchmark import run_benchmark
    from eval.sharding import run_benchmark_sharded

    ray_cfg = ExecutorConfig("ray", workers=2)
    ensure_ray(ray_cfg)
    spec = _two_variant_spec(setup, ("lidar_density", "camera_missing", "lidar_missing"),
                             memory=False)
    inline = run_benchmark(spec, tmp_path / "inline", progress=False, log=lambda s: None)
    sharded = run_benchmark_sharded(spec, tmp_path / "ray", ray_cfg, progress=False,
                                    log=lambda s: None, chunks=2)
    assert sharded.computed_cells == 0  # the final pass found every cell written by the chunks
    assert len(sharded.cells["concat_conv"]) == 4  # clean + the three corruptions
    assert _cells(sharded) == _cells(inline)


def test_benchmark_chunks_in_processes_measure_facts_once(setup, tmp_path):
    # Forkserver pool: the parent has run Numba kernels (the setup fixture) and set its
    # threads, which aborted every plain-fork chunk. Chunk 0 measures peak memory, no chunk
    # writes the latency facts (they would be timed beside a running chunk), the final pass
    # does.
    import math

    from eval.benchmark import run_benchmark
    from eval.sharding import run_benchmark_sharded

    spec = _two_variant_spec(setup, ("lidar_density", "camera_missing", "ultrasonic_missing"),
                             memory=True)
    inline = run_benchmark(spec, tmp_path / "inline", progress=False, log=lambda s: None,
                           facts="memory")
    written = sorted(p.name for p in (tmp_path / "inline" / "variants").iterdir())
    assert written == ["concat_conv.memory.json", "lidar_only.memory.json"]  # no latency
    assert inline.variants == {}  # and no report
    assert not (tmp_path / "inline" / "benchmark.json").exists()
    sharded = run_benchmark_sharded(spec, tmp_path / "pool", ExecutorConfig("processes", 2),
                                    progress=False, log=lambda s: None, chunks=2)
    assert sharded.computed_cells == 0  # every cell came from the chunks
    assert _cells(sharded) == _cells(inline)
    for v in ("lidar_only", "concat_conv"):
        memory = json.loads((tmp_path / "pool" / "variants" / f"{v}.memory.json").read_text())
        facts = sharded.variants[v]
        assert facts["peak_memory_mb"] == memory["peak_memory_mb"] > 0
        assert math.isfinite(facts["median_latency_ms"]) and facts["median_latency_ms"] > 0


def _ticks_without_timing(path: Path) -> list[dict]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        r.pop("latency_ms", None)
    return rows


def test_replay_two_scenes_on_ray_same_records_as_in_process(setup, tmp_path):
    pytest.importorskip("ray")
    ensure_ray(ExecutorConfig("ray", workers=2))
    from eval.commands import replay as tool  # `drivefuse replay`
    _, data, ckpt, _ = setup
    base = ["--dataroot", str(data), "--version", "v1.0-mini", "--scene", "scene-0061",
            "--scene", "scene-0103", "--checkpoint", str(ckpt), "--end", "0.5", "--no-video",
            "--no-mcap"]
    assert tool.main([*base, "--out", str(tmp_path / "inline"), "--workers", "1"]) == 0
    assert tool.main([*base, "--out", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    index = json.loads((tmp_path / "ray" / "scenes.json").read_text())
    assert [s["scene"] for s in index["scenes"]] == ["scene-0061", "scene-0103"]
    assert index["failed"] == []
    for scene in ("scene-0061", "scene-0103"):
        a, b = tmp_path / "inline" / scene, tmp_path / "ray" / scene
        # Detections and plans per keyframe: the same bytes; per tick: all but the latency.
        assert (a / "keyframes.jsonl").read_bytes() == (b / "keyframes.jsonl").read_bytes()
        ticks = _ticks_without_timing(a / "ticks.jsonl")
        assert len(ticks) >= 10 and ticks == _ticks_without_timing(b / "ticks.jsonl")
