"""Entry point for the torchrun tests: trains the micro config on cached sample files.

Run by ``torch.distributed.run`` (one process per rank) or plainly (one process). After
training every rank saves its in-memory weights as ``replica<RANK>.pt`` so the test can
compare the replicas. ``--crash-at-save N`` makes rank 0 die inside its N-th checkpoint
write (after the earlier ones completed), the way a killed job leaves its last state behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from model_synth import micro_config  # noqa: E402

import perception.train as tr  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", required=True, help="JSON list of cached sample files")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--crash-at-save", type=int, default=0)
    a = p.parse_args()
    tr.preset = lambda name, variant: micro_config(variant)
    built = []
    build = tr.build_model

    def keep(cfg):  # noqa: ANN001, ANN202
        built.append(build(cfg))
        return built[-1]

    tr.build_model = keep
    if a.crash_at_save:
        calls = []
        save = tr.save_checkpoint

        def crashing_save(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append(1)
            if len(calls) == a.crash_at_save:
                raise SystemExit(3)
            return save(*args, **kwargs)

        tr.save_checkpoint = crashing_save
    opts = tr.TrainOptions(
        variant="lidar_only", out_dir=a.out, steps=a.steps, batch_size=2,
        grad_accum=a.grad_accum, seed=1, log_every=1, save_every=2, threads=1, device="cpu",
        resume=a.resume,
    )
    tr.train(opts, files=[Path(f) for f in json.loads(a.files)])
    rank = int(os.environ.get("RANK", "0"))
    torch.save(built[0].state_dict(), Path(a.out) / f"replica{rank}.pt")


if __name__ == "__main__":
    main()
