r"""drivefuse train: train a fusion variant, or evaluate trained checkpoints on a split.

Inputs:  --dataroot + --version + --split (a nuScenes-format dataroot), --variant + --preset
         (the model), --init-from (checkpoint folders or shipped variant names); with
         --evaluate the checkpoints to score.
Outputs: the checkpoint folder --out (model.pt, config.json, provenance.json,
         train_log.jsonl; train_state.pt for --resume), the sample cache in --cache-dir; with
         --evaluate the metrics on stdout and in --json-out.

Train (CPU or one GPU; several GPUs with ``torchrun --nproc_per_node N tools/train.py ...``):

    drivefuse train --variant concat_conv --preset tiny --dataroot data/sim \
        --version v1.0-mini --split mini_train --steps 2000 --out perception/checkpoints/concat_conv

Several processes (DDP; NCCL with one GPU per process, gloo on CPU; several machines: add
``--nnodes M --node_rank I --rdzv_backend c10d --rdzv_endpoint HOST:29500``):

    torchrun --nproc_per_node 4 tools/train.py --variant concat_conv --preset base \
        --dataroot data/sim --batch-size 8 --lr 4e-3 --steps 2000 --out outputs/train/cc4

Every rank reads its own shard of each epoch; rank 0 alone writes the checkpoint, the log and
the resume state (--resume works the same with torchrun). --batch-size is per process and
micro-batch: the effective batch of one step is batch-size x processes x --grad-accum, and
--steps counts optimiser steps. The learning rate is never rescaled for you: going from 1
process to N at the same --batch-size multiplies the effective batch by N, so scale --lr
yourself (linearly is the usual first try, as above: 4 x 1e-3). One process with
--grad-accum N takes the same steps as N processes (tests/perception/test_ddp.py).

Evaluate (nuScenes detection metrics by the official devkit, plus planning L2):

    drivefuse train --evaluate concat_conv \
        --dataroot data/sim --version v1.0-mini --split mini_val [--drop camera]
"""

from __future__ import annotations

import argparse

from perception.config import FUSION_VARIANTS, PRESETS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``drivefuse train``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", choices=FUSION_VARIANTS, default="concat_conv")
    p.add_argument("--preset", choices=PRESETS, default="tiny")
    p.add_argument("--dataroot", default="data/sim")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default=None, help="default: mini_train / train (mini_val / val "
                   "with --evaluate)")
    p.add_argument("--out", default=None,
                   help="checkpoint folder (default outputs/train/<variant>)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="overrides --epochs")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per process and micro-batch (default: the preset's); "
                   "effective batch = batch-size x processes x grad-accum")
    p.add_argument("--grad-accum", type=int, default=1, metavar="K",
                   help="micro-batches per optimiser step (one process with K equals K "
                   "torchrun processes)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate, used as given (not rescaled with the batch)")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--cache-dir", default="data/cache")
    p.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt")
    p.add_argument("--init-from", nargs="*", default=(), help="checkpoints to take backbone "
                   "weights from (matching names and shapes)")
    p.add_argument("--freeze", nargs="*", default=(), choices=("camera", "lidar", "ultrasonic"))
    p.add_argument("--modality-dropout", type=float, nargs=3, default=None,
                   metavar=("CAMERA", "LIDAR", "ULTRASONIC"))
    p.add_argument("--partial-faults", type=float, nargs=2, default=(0.0, 0.0),
                   metavar=("P_RINGS", "P_ONE_CAMERA"),
                   help="probability per sample of losing 4-20 of the 32 LiDAR rings and of "
                   "losing one camera, independently (faults that leave a sensor present)")
    p.add_argument("--anchor", choices=("camera", "lidar", "ultrasonic"), default=None,
                   help="start the weighted/gated fuser biased towards this modality (with "
                   "--init-from its single-sensor checkpoint)")
    p.add_argument("--fuser", choices=("mean", "weighted", "concat_conv", "gated"), default=None,
                   help="replace the variant's fuser (ablation: --variant lidar_only --fuser "
                   "concat_conv has the fused model's layers but only the LiDAR)")
    p.add_argument("--image-hw", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="camera network input size instead of the preset's (multiples of the "
                   "feature stride, 8 for tiny)")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--device", default=None)
    p.add_argument("--evaluate", nargs="+", default=None, metavar="CHECKPOINT",
                   help="evaluate these checkpoint folders instead of training")
    p.add_argument("--drop", nargs="*", default=(), choices=("camera", "lidar", "ultrasonic"),
                   help="with --evaluate: remove these modalities from every sample")
    p.add_argument("--json-out", default=None, help="with --evaluate: write metrics here")
    return p.parse_args(argv)


def default_split(version: str, evaluate: bool) -> str:
    """The split trained on (or, with ``evaluate``, scored) when --split is not given."""
    mini = "mini" in version
    if evaluate:
        return "mini_val" if mini else "val"
    return "mini_train" if mini else "train"


def evaluate(args: argparse.Namespace) -> dict:
    """Score checkpoints through ``eval.runner`` (the loop every score goes through)."""
    from eval.runner import evaluate_checkpoints

    split = args.split or default_split(args.version, True)
    return evaluate_checkpoints(
        args.evaluate, args.dataroot, args.version, split, drop=tuple(args.drop),
        device=args.device, threads=args.threads, json_out=args.json_out,
    )


def main(argv: list[str] | None = None) -> int:
    """Train (or with --evaluate score checkpoints); 0 on success."""
    args = parse_args(argv)
    if args.evaluate:
        evaluate(args)
        return 0
    from perception.train import TrainOptions, train

    opts = TrainOptions(
        variant=args.variant,
        preset_name=args.preset,
        dataroot=args.dataroot,
        version=args.version,
        split=args.split or default_split(args.version, False),
        out_dir=args.out or f"outputs/train/{args.variant}",
        epochs=args.epochs if args.epochs is not None else (None if args.steps else 1),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        num_workers=args.workers,
        cache_dir=args.cache_dir,
        resume=args.resume,
        init_from=tuple(args.init_from),
        freeze=tuple(args.freeze),
        anchor=args.anchor,
        fuser=args.fuser,
        image_hw=tuple(args.image_hw) if args.image_hw else None,
        modality_dropout=tuple(args.modality_dropout) if args.modality_dropout else None,
        partial_faults=tuple(args.partial_faults),
        amp=not args.no_amp,
        grad_accum=args.grad_accum,
        max_samples=args.max_samples,
        save_every=args.save_every,
        device=args.device,
        threads=args.threads,
    )
    out = train(opts)
    print(f"checkpoint: {out}")
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse train"))
