"""drivefuse bench-scale: scaling of the fanned-out jobs on this machine, wall time with 1 and
N workers.

Inputs:  --dataroot + --version + --split (a nuScenes-format dataroot), --checkpoint (the
         evaluation's model), --bench-variants / --bench-corruptions (the benchmark slice).
Outputs: a Markdown table on stdout; bench_scale.md and bench_scale.json in --out.

    drivefuse bench-scale --split mini_train --bench-max-samples 40 \
        --bench-corruptions lidar_density lidar_gaussian lidar_cutout lidar_fog \
        camera_brightness camera_missing camera_gaussian camera_fog

Times evaluation inference over a split (sharded by scene) and a fusion-benchmark slice
(chunks of corruptions) as one loop in this process, then through a local process pool and
a local Ray with 1 and N units at once (each unit one torch thread), and Ray's start-up
(``ray.init`` and the first task on each fresh worker) apart. Prints a Markdown table with
the speed-up over the loop; writes it and the numbers to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from perception.checkpoint import resolve_checkpoint


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, time every job with 1 and N workers, print and write the table."""
    p = argparse.ArgumentParser(prog="drivefuse bench-scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="data/sim-mini")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="mini_val")
    p.add_argument("--checkpoint", default="concat_conv",
                   help="evaluation: the checkpoint (folder or shipped variant name)")
    p.add_argument("--max-samples", type=int, default=None, help="evaluation: first N samples")
    p.add_argument("--bench-variants", nargs="+", default=["lidar_only", "concat_conv"])
    p.add_argument("--bench-corruptions", nargs="+",
                   default=["lidar_density", "lidar_gaussian", "camera_brightness",
                            "camera_missing"])
    p.add_argument("--bench-max-samples", type=int, default=20)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--no-ray", action="store_true", help="only the process pool")
    p.add_argument("--skip", choices=("evaluation", "benchmark"), default=None)
    p.add_argument("--out", type=Path, default=Path("outputs/bench_scale"))
    a = p.parse_args(argv)

    from eval.benchmark import BenchmarkSpec
    from eval.executor import require_ray
    from eval.scale_bench import ray_startup, scaling_table, time_benchmark, time_evaluation

    workers = tuple(sorted(set(a.workers)))
    load0 = os.getloadavg()[0]
    startup = None
    if not a.no_ray:
        require_ray()
        startup = ray_startup(max(workers))
    rows = []
    if a.skip != "evaluation":
        ckpt = str(resolve_checkpoint(a.checkpoint))
        rows += time_evaluation(ckpt, a.dataroot, a.version, a.split, workers,
                                a.max_samples, with_ray=not a.no_ray)
    if a.skip != "benchmark":
        ckpts = tuple((v, str(resolve_checkpoint(v))) for v in a.bench_variants)
        spec = BenchmarkSpec(ckpts, a.dataroot, a.version, a.split,
                             corruptions=tuple(a.bench_corruptions), severities=(3,),
                             max_samples=a.bench_max_samples, verify_samples=0, memory=False)
        rows += time_benchmark(spec, workers, with_ray=not a.no_ray)
    load = (load0, os.getloadavg()[0])
    table = scaling_table(rows, startup, load)
    print(table)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "bench_scale.md").write_text(table)
    (a.out / "bench_scale.json").write_text(json.dumps(
        {"rows": [asdict(r) for r in rows], "ray_startup": startup, "loadavg_1min": load,
         "command": " ".join(sys.argv)}, indent=2))
    return 0

