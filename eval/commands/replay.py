r"""drivefuse replay: a recorded drive tick by tick (every LIDAR_TOP sweep, 20 Hz) through
a checkpoint.

Inputs:  --dataroot + --version (a nuScenes-format dataroot), the scenes (--scene / --split),
         --checkpoint (a shipped variant name or a checkpoint folder).
Outputs: in --out: ticks.jsonl, summary.json, summary.md, replay.mp4, replay.mcap (with
         --ray / --workers one such folder per scene, and scenes.json).

    # a synthetic drive with cameras at their native 12 Hz (make_dataset --camera-sweeps)
    drivefuse replay --dataroot data/sim-replay --version v1.0-mini --split mini_val \
        --checkpoint gated --out outputs/replay

    # real nuScenes, one scene, the first 10 s, paced in real time
    drivefuse replay --dataroot data/nuscenes --version v1.0-trainval \
        --scene scene-0103 --checkpoint perception/checkpoints/gated --end 10 --realtime

Each other sensor's newest reading at or before the tick is used (never a later one); one older
than its limit counts as missing. Outputs in --out: ticks.jsonl (one line per tick), summary.json
and summary.md (latency p50/p95/max per stage, rate, drops, keyframe detection and planning
metrics), replay.mp4 (--no-video to skip) and replay.mcap (Foxglove; --no-mcap to skip).
Ctrl-C stops after the current tick and still closes every output and writes the summary.

With --ray (or --workers N) every scene is one unit of work, replayed into its own folder
<out>/<scene name>/ with the files above, and <out>/scenes.json indexes them:

    drivefuse replay --dataroot /shared/nuscenes --version v1.0-trainval --split val \
        --checkpoint gated --out /shared/replay_val --ray --ray-address auto --no-video
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval.executor import add_executor_arguments, executor_from_args
from eval.replay import ReplayConfig, replay


def main(argv: list[str] | None = None) -> int:
    """Replay the scenes and print the summary and output paths; 0 on success."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataroot", type=Path, required=True, help="nuScenes-format dataroot")
    ap.add_argument("--version", default="v1.0-mini", help="table folder, e.g. v1.0-trainval")
    ap.add_argument("--scene", action="append", default=[], help="scene name or token (repeat)")
    ap.add_argument("--split", default=None, help="every scene of a split, e.g. mini_val")
    ap.add_argument("--checkpoint", default="gated", help="shipped variant name or folder")
    ap.add_argument("--out", type=Path, default=Path("outputs/replay"), help="output folder")
    ap.add_argument("--start", type=float, default=0.0, help="seconds into each scene")
    ap.add_argument("--end", type=float, default=None, help="seconds into each scene (incl.)")
    ap.add_argument("--realtime", action="store_true",
                    help="pace by the recorded timestamps and drop ticks when behind")
    ap.add_argument("--speed", type=float, default=1.0, help="--realtime playback speed")
    ap.add_argument("--no-video", action="store_true", help="skip replay.mp4")
    ap.add_argument("--no-mcap", action="store_true", help="skip replay.mcap")
    ap.add_argument("--min-score", type=float, default=0.3,
                    help="detections below this are left out of ticks.jsonl (not the metrics)")
    ap.add_argument("--prefetch", type=int, default=4, help="ticks read ahead in the background")
    ap.add_argument("--num-sweeps", type=int, default=10, help="LiDAR sweeps accumulated")
    ap.add_argument("--io-threads", type=int, default=1, help="camera decoding threads")
    ap.add_argument("--device", default=None, help="torch device (default: CUDA if present)")
    add_executor_arguments(ap, workers_help="one scene a unit, each into <out>/<scene name>/: "
                           "N local processes (without --ray), or a local Ray of N CPUs")
    args = ap.parse_args(argv)
    if not args.scene and not args.split:
        ap.error("give --scene NAME|TOKEN (repeatable) or --split")
    executor = executor_from_args(args, default=None)  # None: one stream into --out
    cfg = ReplayConfig(
        dataroot=args.dataroot, version=args.version, scenes=tuple(args.scene), split=args.split,
        checkpoint=args.checkpoint, out_dir=args.out, start_s=args.start, end_s=args.end,
        realtime=args.realtime, speed=args.speed, video=not args.no_video,
        mcap=not args.no_mcap, min_score=args.min_score, prefetch=args.prefetch,
        num_sweeps=args.num_sweeps, io_threads=args.io_threads, device=args.device,
    )
    if executor is not None:
        from eval.sharding import replay_split

        index = replay_split(cfg, executor)
        for rec in index["scenes"]:
            print(f"  {rec['scene']}: {rec['out_dir']}")
        for f in index["failed"]:
            print(f"  failed: {f['unit']}: {f['error']}", file=sys.stderr)
        print(f"  index: {args.out / 'scenes.json'}")
        return 1 if index["failed"] else 0
    summary = replay(cfg)
    print(summary.paths["summary_md"].read_text())
    for name, path in summary.paths.items():
        print(f"  {name}: {path}")
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse replay"))
