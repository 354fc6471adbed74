"""drivefuse bench-model: per-stage latency and peak memory of the fusion model, every
variant, end to end.

Inputs:  --dataroot + --version + --split (a nuScenes-format dataroot; without it a synthetic
         sample built in code), --checkpoints (a folder of <variant>/model.pt; without it
         random weights of --preset).
Outputs: a table on stdout (median ms per stage, Hz, peak MB, parameters); with --json-out
         the rows in that file.

Each variant runs in a fresh subprocess (so peak memory is its own) on the same samples:
6 cameras + multi-sweep LiDAR + ultrasonic. The total is the wall time of
``Pipeline.run`` and includes preprocessing (image resize, cropping), voxelization, the lift
geometry, the ultrasonic raster, every backbone, the fuser, the heads, decoding and control;
``load`` (reading and decoding the files at reduced size with the dataset adapter) is reported
beside it, and ``e2e`` = load + total.

    drivefuse bench-model --dataroot data/sim-trainval --version v1.0-trainval
    drivefuse bench-model --variants concat_conv lidar_only --preset tiny --frames 20
    drivefuse bench-model --checkpoints perception/checkpoints   # trained weights

Without ``--dataroot`` a synthetic sample is built in code (random images, 120k points).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from perception.config import FUSION_VARIANTS, PRESETS

STAGES = (
    "load", "preprocess", "voxelize", "camera_prep", "paint_index", "ultrasonic_raster",
    "camera_backbone", "view_transform", "camera_bev_encoder", "painting", "lidar_backbone",
    "ultrasonic_backbone", "fuser", "heads", "decode", "refine", "control", "total", "e2e",
)


def _samples(args: argparse.Namespace) -> tuple[list, list[float]]:
    """Samples to run and the time each took to load (decode at reduced size)."""
    if args.dataroot:
        from sensors.datasets.nuscenes import NuScenesDataset

        ds = NuScenesDataset(args.dataroot, version=args.version,
                             image_reduction=args.image_reduction)
        tokens = ds.split_sample_tokens(args.split)[: args.frames]
        samples, load_ms = [], []
        for t in tokens:
            t0 = time.perf_counter()
            samples.append(ds.load_sample(t))
            load_ms.append((time.perf_counter() - t0) * 1e3)
        return samples, load_ms
    from sensors.synthetic_sample import make_sample

    samples = [make_sample(i, image_hw=(225, 400), background_points=120_000)
               for i in range(args.frames)]
    return samples, [float("nan")] * len(samples)


def worker(args: argparse.Namespace) -> None:
    """Time one variant in this process; print its ``RESULT {json}`` line."""
    import torch

    from perception.config import preset
    from perception.pipeline import Pipeline

    if args.threads:
        from perception.threads import set_cpu_threads

        set_cpu_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.checkpoint:
        pipe = Pipeline.from_checkpoint(args.checkpoint, device=device)
    else:
        pipe = Pipeline.from_config(preset(args.preset, args.variant), device=device)
    samples, load_ms = _samples(args)
    if not samples:
        raise ValueError(f"{args.dataroot}/{args.version}: split {args.split!r} has no samples")
    for s in samples[: args.warmup]:
        pipe.run(s)  # JIT compilation, allocator warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    per_stage: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        for s, lm in zip(samples, load_ms):
            r = pipe.run(s)
            t = dict(r.timings_ms)
            t["load"] = lm
            t["e2e"] = lm + t["total"]
            for k, v in t.items():
                per_stage.setdefault(k, []).append(v)
        del rep
    out = {
        "variant": pipe.cfg.variant,
        "preset": pipe.cfg.preset,
        "device": device,
        "threads": torch.get_num_threads(),
        "frames": len(samples) * args.repeats,
        "median_ms": {k: statistics.median(v) for k, v in per_stage.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "params": sum(p.numel() for p in pipe.model.parameters()),
    }
    print("RESULT " + json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Time every variant in its own process and print the table; 0 on success."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(FUSION_VARIANTS), choices=FUSION_VARIANTS)
    p.add_argument("--preset", nargs="+", default=["tiny"], choices=PRESETS)
    p.add_argument("--checkpoints", default=None,
                   help="folder of trained checkpoints (<folder>/<variant>/model.pt)")
    p.add_argument("--dataroot", default=None)
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default=None)
    p.add_argument("--image-reduction", type=int, default=4,
                   help="decode images at 1/N size (the tiny preset needs ~1/5)")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--json-out", default=None)
    # internal: one variant in this process
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.split is None:
        args.split = "mini_val" if "mini" in args.version else "val"
    if args.worker:
        args.preset = args.preset[0]
        worker(args)
        return 0

    rows = []
    for pre in args.preset:
        for v in args.variants:
            cmd = [sys.executable, "-m", "eval.commands.bench_model", "--worker",
                   "--variant", v, "--preset", pre, "--frames", str(args.frames),
                   "--repeats", str(args.repeats),
                   "--warmup", str(args.warmup), "--version", args.version,
                   "--split", args.split, "--image-reduction", str(args.image_reduction)]
            if args.dataroot:
                cmd += ["--dataroot", args.dataroot]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.device:
                cmd += ["--device", args.device]
            if args.checkpoints:
                ck = Path(args.checkpoints) / v
                if not (ck / "model.pt").is_file():
                    print(f"skip {v}: no checkpoint in {ck}", file=sys.stderr)
                    continue
                cmd += ["--checkpoint", str(ck)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                # A failing variant is recorded and the others still run.
                print(f"FAILED {pre}/{v}:\n{proc.stderr[-2000:]}", file=sys.stderr)
                rows.append({"variant": v, "preset": pre, "error": proc.stderr[-500:]})
                continue
            rows.append(json.loads(lines[-1][len("RESULT "):]))
            r = rows[-1]
            print(f"{pre:5s} {v:17s} total {r['median_ms']['total']:7.1f} ms "
                  f"({1e3 / r['median_ms']['total']:5.1f} Hz)  peak RSS {r['peak_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)

    ok = [r for r in rows if "error" not in r]
    if ok:
        print(f"\ndevice: {ok[0]['device']}, torch threads: {ok[0]['threads']}, "
              f"frames per variant: {ok[0]['frames']} (median ms per stage)")
        cols = [s for s in STAGES if any(s in r["median_ms"] for r in ok)]
        short = {"camera_backbone": "cam_bb", "view_transform": "vt", "camera_bev_encoder":
                 "cam_bev", "lidar_backbone": "lidar_bb", "ultrasonic_backbone": "us_bb",
                 "ultrasonic_raster": "us_rast", "camera_prep": "cam_prep",
                 "paint_index": "paint_i", "preprocess": "prep"}
        head = f"{'preset/variant':24s}" + "".join(f"{short.get(c, c):>9s}" for c in cols)
        print(head + f"{'Hz':>7s}{'peakMB':>8s}{'params':>9s}")
        for r in ok:
            vals = "".join(
                f"{r['median_ms'].get(c, float('nan')):9.1f}" for c in cols
            )
            mem = r["peak_cuda_mb"] if r["peak_cuda_mb"] is not None else r["peak_rss_mb"]
            print(f"{r['preset'] + '/' + r['variant']:24s}{vals}"
                  f"{1e3 / r['median_ms']['total']:7.1f}{mem:8.0f}{r['params']:9d}")
        print("total = Pipeline.run (preprocess + voxelize + raster + backbones + fuser + heads"
              " + decode + control); e2e = load + total. Hz from total.")
        from eval.machine import describe, machine_facts

        # ms depend on the host as much as on the commit: the reference conv tells them apart.
        print(f"machine: {describe(machine_facts())}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse bench-model"))
