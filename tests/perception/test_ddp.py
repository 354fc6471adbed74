"""torchrun DDP training on CPU (gloo): two ranks equal one process accumulating two shards.

Two ranks with batch 2 take the same optimiser steps as one process with batch 2 and
``grad_accum=2``: both average the gradients of the same two micro-batches (rank r's batch is
shard r of the epoch's permutation), with BatchNorm statistics and the batch-normalised
losses per micro-batch. The torchrun run is killed in the middle of a checkpoint write and
resumed, so the comparison also covers ``--resume`` under DDP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_synth import make_sample, micro_config

import perception.train as tr
from perception.prepare import prepare_sample

ENTRY = Path(__file__).resolve().parent / "ddp_entry.py"
ROOT = Path(__file__).resolve().parents[2]
STEPS = 6  # 8 samples, 2 shards of 4, batch 2: 2 steps an epoch, so 3 epochs


def _torchrun(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(ENTRY), *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check and res.returncode != 0:
        pytest.fail(f"torchrun failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return res


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> list[Path]:
    cfg = micro_config("lidar_only")
    folder = tmp_path_factory.mktemp("ddp_samples")
    files = []
    for i in range(8):
        f = folder / f"s{i}.npz"
        prepare_sample(make_sample(i, num_boxes=3, background_points=600), cfg).save(f)
        files.append(f)
    return files


def _params(state: dict, model_keys: set[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k in model_keys}


def test_torchrun_two_ranks_match_one_process_accumulating(tmp_path, sample_files, monkeypatch):
    files = json.dumps([str(f) for f in sample_files])
    out = tmp_path / "ddp"
    # A job killed while rank 0 writes its second checkpoint (step 4) leaves step 2's state.
    crashed = _torchrun("--files", files, "--out", str(out), "--steps", str(STEPS),
                        "--crash-at-save", "2", check=False)
    assert crashed.returncode != 0
    assert torch.load(out / tr.TRAIN_STATE_NAME, weights_only=True)["step"] == 2
    _torchrun("--files", files, "--out", str(out), "--steps", str(STEPS), "--resume")

    # Rank 0 alone writes: one log line per step (run 1 logged 1-4, the resumed run 3-6).
    log = [json.loads(x) for x in (out / tr.LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 3, 4, 5, 6]
    r0 = torch.load(out / "replica0.pt", weights_only=True)
    r1 = torch.load(out / "replica1.pt", weights_only=True)
    saved = torch.load(out / "model.pt", weights_only=True)
    for k in r0:  # parameters synchronised by DDP, buffers broadcast from rank 0 at the end
        assert torch.equal(r0[k], r1[k]), k
        assert torch.equal(r0[k], saved[k]), k

    # One process, same global batch: batch 2 per micro-batch, two micro-batches a step.
    monkeypatch.setattr(tr, "preset", lambda name, variant: micro_config(variant))
    built = []
    build = tr.build_model
    monkeypatch.setattr(tr, "build_model", lambda cfg: built.append(build(cfg)) or built[-1])
    single = tmp_path / "single"
    tr.train(tr.TrainOptions(variant="lidar_only", out_dir=str(single), steps=STEPS,
                             batch_size=2, grad_accum=2, seed=1, log_every=1, save_every=100,
                             threads=1, device="cpu"),
             files=sample_files)
    param_names = {n for n, _ in built[0].named_parameters()}
    ref = built[0].state_dict()
    assert len(param_names) > 10
    worst = max(float((ref[k] - r0[k]).abs().max()) for k in param_names)
    assert worst < 1e-4, f"DDP and accumulated weights differ by up to {worst}"
    tr.seed_everything(1)
    init = build(micro_config("lidar_only")).state_dict()  # what both runs started from
    moved = max(float((init[k] - ref[k]).abs().max()) for k in param_names)
    assert moved > 100 * worst, "the weights barely trained: the comparison would be vacuous"
    losses_ddp = {r["step"]: r["loss"] for r in log}  # the resumed run's values for 3-4
    ref_log = [json.loads(x) for x in (single / tr.LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in ref_log] == list(range(1, STEPS + 1))
    for r in ref_log:
        assert r["loss"] == pytest.approx(losses_ddp[r["step"]], rel=1e-4, abs=1e-5), r
