"""Two training jobs filling the same frozen-branch feature cache at once both succeed.

``tools/train_shipped.sh`` runs two variants at a time; with the same frozen camera they cache
into the same folder. A shared temporary file name let one job rename the other's file away
(FileNotFoundError mid-run). The race is replayed deterministically: while job A has written
its temporary file and not yet renamed it, job B (another pid) caches the same entry.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from model_synth import make_sample, micro_config

from perception.model import build_model
from perception.prepare import prepare_sample
from perception.train import cache_branch_features


def test_a_second_job_writing_the_same_entry_midway(tmp_path, monkeypatch):
    cfg = micro_config("concat_conv")
    torch.manual_seed(0)
    model = build_model(cfg)
    f = tmp_path / "arrays" / "s000.npz"
    f.parent.mkdir()
    prepare_sample(make_sample(seed=0), cfg).save(f)
    cache_dir = str(tmp_path / "cache")
    cpu = torch.device("cpu")
    real_savez = np.savez
    replayed = []

    def savez_then_other_job(path, **arrays):
        real_savez(path, **arrays)
        if not replayed:  # job A's file is written, not yet renamed: job B runs now
            replayed.append(path)
            with monkeypatch.context() as m:
                m.setattr(os, "getpid", lambda: os.getppid() + 424242)
                cache_branch_features(model, cfg, [f], ("camera",), cache_dir, cpu, False)

    monkeypatch.setattr(np, "savez", savez_then_other_job)
    (entry,) = cache_branch_features(model, cfg, [f], ("camera",), cache_dir, cpu, False)
    assert replayed
    assert sorted(p.name for p in entry.parent.iterdir()) == ["s000.npz"]  # no stray temp
    with np.load(entry) as z:
        assert z["camera"].dtype == np.float16 and z["camera"].ndim == 3
