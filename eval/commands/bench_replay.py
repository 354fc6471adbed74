r"""drivefuse bench-replay: replay speed per variant, ticks/s, real-time factor, Pipeline.run
and input wait.

Inputs:  --dataroot + --version (a nuScenes-format dataroot), the scenes (--scene / --split)
         and checkpoints (--variants: shipped variant names or checkpoint folders).
Outputs: a Markdown table on stdout; with --json the rows in that file. Each replay's own
         outputs go to a temporary folder and are discarded.

    drivefuse bench-replay --dataroot data/sim-replay --version v1.0-mini \
        --split mini_val [--variants lidar_only gated] [--end 10] [--threads 1] [--outputs]

Each variant replays the same ticks as fast as possible (every tick processed) with the
background reader on. "ticks/s" is end to end (the summary's rate: the reader's start and the
first, cold inference included); "loop ticks/s" is 1000 / mean tick time once running (input
wait included). "hidden" is the loop rate over 1000 / median ``Pipeline.run`` ms: 1.0 means
reading the sensors costs the loop nothing (target >= 0.9); "real time" means >= the LiDAR
rate (20 Hz, RTF >= 1.0). ``--outputs`` also writes the video and the Foxglove
recording (their cost shows in the rate). Use a dataset generated with cameras at their native
rate (``drivefuse make-dataset --camera-sweeps``), or the camera variants see no camera on most
ticks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from eval.replay import ReplayConfig, replay
from perception.checkpoint import shipped_variants


def main(argv: list[str] | None = None) -> int:
    """Replay every variant as fast as possible and print its speed; 0 on success."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataroot", type=Path, required=True)
    ap.add_argument("--version", default="v1.0-mini")
    ap.add_argument("--scene", action="append", default=[], help="scene name or token")
    ap.add_argument("--split", default=None, help="e.g. mini_val (default: the first scene)")
    ap.add_argument("--variants", nargs="*", help="default: every shipped checkpoint")
    ap.add_argument("--start", type=float, default=0.0)
    ap.add_argument("--end", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--outputs", action="store_true", help="also write video + recording")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    variants = args.variants or list(shipped_variants())
    scenes = tuple(args.scene)
    if not scenes and not args.split:
        from sensors.datasets.nuscenes import NuScenesDataset

        scenes = (NuScenesDataset(args.dataroot, args.version).scene_tokens[0],)
    rows = []
    print("| variant | ticks/s | RTF | loop ticks/s | Pipeline.run p50 ms | input wait p50 ms "
          "| load p50 ms (reader) | hidden | real time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        with tempfile.TemporaryDirectory() as tmp:
            s = replay(ReplayConfig(
                args.dataroot, args.version, scenes=scenes, split=args.split, checkpoint=v,
                out_dir=Path(tmp), start_s=args.start, end_s=args.end, video=args.outputs,
                mcap=args.outputs, progress=False,
            ))
        lat = s["latency_ms"]
        run_ms = lat["total"]["p50"]
        loop_rate = 1000.0 / lat["tick"]["mean"]
        row = {
            "variant": v,
            "ticks": s["processed"],
            "ticks_per_s": s["rate_ticks_per_s"],
            "rtf": s["real_time_factor"],
            "pipeline_run_p50_ms": run_ms,
            "input_wait_p50_ms": lat["input_wait"]["p50"],
            "input_wait_mean_ms": lat["input_wait"]["mean"],
            "load_p50_ms": lat["load"]["p50"],
            "loop_ticks_per_s": loop_rate,
            "hidden": loop_rate * run_ms / 1000.0,
            "outputs": args.outputs,
        }
        rows.append(row)
        print(f"| {v} | {row['ticks_per_s']:.1f} | {row['rtf']:.2f} | {loop_rate:.1f} | "
              f"{run_ms:.1f} | "
              f"{row['input_wait_p50_ms']:.2f} (mean {row['input_wait_mean_ms']:.1f}) | "
              f"{row['load_p50_ms']:.1f} | {row['hidden']:.2f} | "
              f"{'yes' if row['rtf'] >= 1.0 else 'no'} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse bench-replay"))
