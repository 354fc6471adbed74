"""Two training jobs filling the same frozen-branch feature cache at once both succeed.

``tools/train_shipped.sh`` runs two variants at a time; with the same frozen camera they cache
into the same folder. A shared temporary file name let one job rename the other's file away
(FileNotFoundError mid-run).
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import torch
from model_synth import make_sample, micro_config

from perception.inputs import prepare_sample
from perception.model import build_model
from perception.train import cache_branch_features

NUM_SAMPLES = 24


def _fill(args: tuple) -> str:
    cfg, state, files, cache_dir, barrier = args
    torch.set_num_threads(1)
    model = build_model(cfg)
    model.load_state_dict(state)
    barrier.wait()  # start together, so that both write every entry at the same moment
    try:
        cache_branch_features(model, cfg, files, ("camera",), cache_dir, torch.device("cpu"),
                              progress=False)
    except Exception as e:  # noqa: BLE001 - reported to the parent
        return f"{type(e).__name__}: {e}"
    return "ok"


def test_concurrent_jobs_share_a_feature_cache(tmp_path):
    cfg = micro_config("concat_conv")
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    files = []
    for i in range(NUM_SAMPLES):
        f = tmp_path / "arrays" / f"s{i:03d}.npz"
        f.parent.mkdir(exist_ok=True)
        prepare_sample(make_sample(seed=i % 3), cfg).save(f)
        files.append(f)
    ctx = mp.get_context("fork")
    barrier = ctx.Manager().Barrier(2)
    cache_dir = str(tmp_path / "cache")
    with ctx.Pool(2) as pool:
        outcome = pool.map(_fill, [(cfg, state, files, cache_dir, barrier)] * 2)
    assert outcome == ["ok", "ok"]
    entries = sorted((tmp_path / "cache").glob("bev_camera_*/*.npz"))
    assert [e.name for e in entries] == [f.name for f in files]  # no stray temporaries
    with np.load(entries[0]) as z:
        assert z["camera"].dtype == np.float16 and z["camera"].ndim == 3
