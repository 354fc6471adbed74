#!/usr/bin/env python
"""Train a fusion variant, or evaluate trained checkpoints on a split.

Train (CPU or one GPU; several GPUs with ``torchrun --nproc_per_node N tools/train.py ...``):

    python tools/train.py --variant concat_conv --preset tiny --dataroot data/sim \
        --version v1.0-mini --split mini_train --steps 2000 --out perception/checkpoints/concat_conv

Evaluate (nuScenes detection metrics by the official devkit, plus planning L2):

    python tools/train.py --evaluate perception/checkpoints/concat_conv \
        --dataroot data/sim --version v1.0-mini --split mini_val [--drop camera]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.config import FUSION_VARIANTS, PRESETS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
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
    mini = "mini" in version
    if evaluate:
        return "mini_val" if mini else "val"
    return "mini_train" if mini else "train"


def evaluate(args: argparse.Namespace) -> dict:
    import torch
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    from eval.detection import ResultsMeta, write_results
    from perception.checkpoint import load_checkpoint
    from perception.sample_arrays import SampleArrays
    from perception.train import cache_split, predict_files

    split = args.split or default_split(args.version, True)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {}
    nusc = None
    for ckpt in args.evaluate:
        model, cfg = load_checkpoint(ckpt)
        files = cache_split(args.dataroot, args.version, split, cfg, args.cache_dir)
        dets, poses = predict_files(model, cfg, files, drop=tuple(args.drop),
                                    device=args.device or "cpu")
        # Planning: L2 at 1, 2, 3 s over samples whose future is known.
        l2 = {1: [], 2: [], 3: []}
        model_inputs = [SampleArrays.load(f) for f in files]
        from perception.batch import collate

        with torch.inference_mode():
            for i in range(0, len(model_inputs), 8):
                chunk = [a.without(tuple(args.drop)) for a in model_inputs[i : i + 8]]
                wp = model(collate(chunk, cfg)).waypoints.numpy()
                for a, w in zip(chunk, wp):
                    for sec in (1, 2, 3):
                        j = 2 * sec - 1
                        if a.plan_mask[j] > 0:
                            l2[sec].append(float(np.linalg.norm(w[j] - a.plan_target[j])))
        uses = set(cfg.fusion.modalities) - set(args.drop)
        meta = ResultsMeta(use_camera="camera" in uses, use_lidar="lidar" in uses)
        with tempfile.TemporaryDirectory() as tmp:
            res_path = Path(tmp) / "results.json"
            write_results(dets, poses, meta, path=res_path)
            if nusc is None:
                from nuscenes import NuScenes

                nusc = NuScenes(version=args.version, dataroot=args.dataroot, verbose=False)
            de = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(res_path),
                               split, str(Path(tmp) / "eval"), verbose=False)
            summary = de.main(plot_examples=0, render_curves=False)
        rec = {
            "variant": cfg.variant,
            "config": cfg.name,
            "mAP": summary["mean_ap"],
            "NDS": summary["nd_score"],
            "tp_errors": summary["tp_errors"],
            "per_class_AP": {k: v for k, v in summary["mean_dist_aps"].items()},
            "plan_L2_m": {f"{s}s": float(np.mean(v)) if v else None for s, v in l2.items()},
            "num_samples": len(files),
            "dropped": list(args.drop),
        }
        report[str(ckpt)] = rec
        print(f"{Path(ckpt).name:22s} mAP {rec['mAP']:.4f}  NDS {rec['NDS']:.4f}  "
              f"L2@3s {rec['plan_L2_m']['3s']}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.evaluate:
        evaluate(args)
        return
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
        amp=not args.no_amp,
        max_samples=args.max_samples,
        save_every=args.save_every,
        device=args.device,
        threads=args.threads,
    )
    out = train(opts)
    print(f"checkpoint: {out}")


if __name__ == "__main__":
    from eval.cli import run_main  # one error line, exit 2, on bad input (--debug: traceback)

    raise SystemExit(run_main(main))
