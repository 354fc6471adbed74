r"""drivefuse bench: fusion variants clean and under sensor corruptions, one command, one
table.

Inputs:  --dataroot + --version + --split (a nuScenes-format dataroot), --checkpoints (a folder
         of checkpoint folders; default the shipped ones) or --train-steps (train them first),
         --corruptions / --severities.
Outputs: in --out: benchmark.md, benchmark.json, heatmap.png, accuracy_latency.png, cells/
         (one JSON per finished cell; a rerun computes only the missing ones).

    drivefuse bench --quick                      # every shipped variant, mini_val,
                                                              # one mid severity per corruption
    drivefuse bench --dataroot data/sim-trainval --version v1.0-trainval \
        --split val --out outputs/bench_fusion/val            # the full run (severities 1-5)
    drivefuse bench --quick --ray --ray-address auto   # chunks of corruptions as
                                                              # Ray tasks (shared --out folder)

Writes ``<out>/benchmark.md`` (variant x corruption table, robustness summary: mRR, mCE vs
``lidar_only``, parameters, latency, peak memory), ``benchmark.json``, ``heatmap.png``,
``accuracy_latency.png`` and one JSON per finished cell under ``<out>/cells/``: a run killed
at any point and restarted with the same command computes only the missing cells. Prints the
shared-branch speed-up over running the whole model per cell.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark and print its tables; 0 on success."""
    from eval.corruptions import CORRUPTION_NAMES

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="one mid severity (3) per corruption (default data: mini_val)")
    from perception.checkpoint import SHIPPED_CHECKPOINTS_DIR

    p.add_argument("--checkpoints", type=Path, default=SHIPPED_CHECKPOINTS_DIR,
                   help="folder of checkpoint folders, one per variant")
    p.add_argument("--variants", nargs="*", default=None,
                   help="default: every checkpoint found (with --train-steps: every variant)")
    p.add_argument("--train-steps", type=int, default=None, metavar="N",
                   help="train every variant first, one recipe (the tiny preset), seed "
                   "(--seed) and budget (N steps), into <out>/checkpoints, and benchmark those")
    p.add_argument("--train-split", default=None,
                   help="with --train-steps: training split (default mini_train / train)")
    p.add_argument("--dataroot", default="data/sim-mini")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default=None, help="default: mini_val (mini) / val (trainval)")
    p.add_argument("--corruptions", nargs="*", default=list(CORRUPTION_NAMES), metavar="NAME",
                   help="corruptions (eval.corruptions), or a composed fault such as "
                   "camera_missing@1+lidar_beam_missing@4 (parts applied in order)")
    p.add_argument("--severities", type=int, nargs="*", default=None, choices=(1, 2, 3, 4, 5),
                   help="default 1 2 3 4 5 (3 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", default="lidar_only", help="variant mCE is measured against")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--verify-samples", type=int, default=2,
                   help="samples per corruption also run through the whole model: checked "
                   "equal to the shared-branch result and timed for the speed-up")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child runs")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None,
                   help="default outputs/bench_fusion/<quick|full>_<split>")
    p.add_argument("--no-progress", action="store_true")
    from eval.executor import add_executor_arguments, executor_from_args

    add_executor_arguments(p, workers_help="chunks of corruptions in N local processes "
                           "(without --ray), or on a local Ray of N CPUs; each chunk does its "
                           "own clean pass (default: one process per core, at most 4; "
                           "--workers 1: one loop in this process)")
    args = p.parse_args(argv)
    from eval.sharding import default_benchmark_executor, run_benchmark_on

    executor = executor_from_args(args, default=default_benchmark_executor())

    from eval.benchmark import (
        BenchmarkSpec,
        corruption_table,
        quick_severities,
        shipped_checkpoints,
        summary_table,
        train_variants,
    )
    from perception.config import FUSION_VARIANTS
    from perception.threads import set_cpu_threads

    set_cpu_threads(args.threads)
    split = args.split or ("mini_val" if "mini" in args.version else "val")
    severities = tuple(args.severities or (quick_severities() if args.quick else (1, 2, 3, 4, 5)))
    out = args.out or Path("outputs/bench_fusion") / f"{'quick' if args.quick else 'full'}_{split}"
    if args.train_steps:
        train_split = args.train_split or ("mini_train" if "mini" in args.version else "train")
        checkpoints = train_variants(
            args.variants or FUSION_VARIANTS, out / "checkpoints", args.dataroot, args.version,
            train_split, args.train_steps, seed=args.seed,
        )
    else:
        checkpoints = shipped_checkpoints(args.checkpoints, args.variants)
    spec = BenchmarkSpec(
        checkpoints=checkpoints,
        dataroot=args.dataroot, version=args.version, split=split,
        corruptions=tuple(args.corruptions), severities=severities, seed=args.seed,
        baseline=args.baseline, max_samples=args.max_samples,
        verify_samples=args.verify_samples, device=args.device, memory=not args.no_memory,
    )
    n_cells = len(spec.variants) * (1 + len(spec.groups()))
    print(f"fusion benchmark: {len(spec.variants)} variants x {len(spec.groups())} corruption "
          f"cells + clean = {n_cells} cells on {split} -> {out}", flush=True)
    t0 = time.perf_counter()
    # Chunks share the cell cache, then one report pass; the same cells either way.
    result = run_benchmark_on(spec, out, executor, progress=not args.no_progress,
                              log=lambda s: print(s, flush=True), threads=args.threads)
    print()
    print(summary_table(result))
    print()
    print(corruption_table(result))
    import numpy as np

    sp = [x for x in result.speedup.values() if np.isfinite(x)]
    if sp:
        print(f"\nshared-branch path vs the whole model per cell: median {np.median(sp):.1f}x "
              f"(min {min(sp):.1f}x, max {max(sp):.1f}x) over {len(sp)} corruption cells")
    if result.machine:
        from eval.machine import describe

        print(f"machine: {describe(result.machine)}")
    print(f"{result.computed_cells} cells computed now, {n_cells - result.computed_cells} from "
          f"the cache; {time.perf_counter() - t0:.0f} s; wrote {out / 'benchmark.md'}")
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse bench"))
