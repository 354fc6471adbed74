r"""drivefuse train-refine: train the camera refinement stage of ``lidar_camera_refine``.

Inputs:  a nuScenes-format dataroot (--dataroot, --version, --split; --val-split reports
         proposal accuracy per epoch), the frozen first stage (--first-stage: a lidar_only
         checkpoint folder or shipped name).
Outputs: a checkpoint folder (--out): model.pt (first stage + crop network), config.json,
         provenance.json, train_log.jsonl; the cropped proposals are cached under
         --cache-dir (a second seed reuses them).

    drivefuse train-refine --dataroot data/sim-trainval --version v1.0-trainval \
        --out perception/checkpoints/lidar_camera_refine --seed 0

The first stage proposes its detections on every sample; the best --max-proposals a camera
sees are cut from the full-resolution image and labelled with the nearest ground-truth class
within 2 m (or background); the crop network and the score combination learn from them
(perception.refine.train). The first stage is never changed.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    """Train the refiner; 0 on success."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", required=True)
    p.add_argument("--also", nargs="*", default=[], metavar="DATAROOT",
                   help="more datasets whose --split proposals join the training set (other "
                   "worlds: the crop network learns what objects look like)")
    p.add_argument("--version", default="v1.0-trainval")
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default="val", help="'' for none")
    p.add_argument("--first-stage", default="lidar_only",
                   help="lidar_only checkpoint folder or shipped variant name")
    p.add_argument("--out", default="outputs/train/lidar_camera_refine")
    p.add_argument("--cache-dir", default="outputs/refine_cache")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-samples", type=int, default=None,
                   help="first N samples of each split (smoke runs)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = p.parse_args(argv)

    import torch

    from perception.refine.train import RefineRunOptions, RefineTrainOptions, train_refine

    if args.threads:
        torch.set_num_threads(args.threads)
    out = train_refine(RefineRunOptions(
        dataroot=args.dataroot, extra_dataroots=tuple(args.also), version=args.version,
        split=args.split,
        val_split=args.val_split or None, first_stage=args.first_stage, out_dir=args.out,
        cache_dir=args.cache_dir, max_samples=args.max_samples,
        train=RefineTrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 seed=args.seed),
    ))
    print(f"checkpoint: {out}")
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse train-refine"))
