"""The demo's replay step: one synthetic val scene, cameras at 12 Hz, the best fused variant."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from eval.replay.loop import ReplayConfig, ReplaySummary, replay
from eval.replay.source import CHECKPOINTS_DIR

# Two scenes (mini_train's first, mini_val's first) of 8 s, every camera frame rendered: about
# 15 s to generate and 160 ticks to replay.
DEMO_SCENES, DEMO_DURATION_S, DEMO_VERSION, DEMO_SPLIT = 2, 8.0, "v1.0-mini", "mini_val"


def best_fused_variant(rows: Sequence[dict] | None) -> str:
    """The shipped variant reading cameras and LiDAR with the best clean NDS in ``rows``
    (benchmark table rows with ``variant`` and ``clean_NDS``); ``gated`` without rows.
    """
    from perception.checkpoint import load_config

    fused = []
    for r in rows or ():
        d = CHECKPOINTS_DIR / str(r.get("variant"))
        if r.get("clean_NDS") is None or not (d / "config.json").is_file():
            continue
        cfg = load_config(d)
        if cfg.uses("camera") and cfg.uses("lidar"):
            fused.append((r["clean_NDS"], r["variant"]))
    return max(fused)[1] if fused else "gated"


def ensure_replay_dataset(dataroot: Path) -> None:
    """Generate the demo's drive set (cameras at their native rate) unless it exists."""
    if (dataroot / DEMO_VERSION / "sample.json").exists():
        print(f"  reusing {dataroot}")
        return
    from sensors.sim import SimConfig, generate_dataset

    t0 = time.perf_counter()
    cfg = SimConfig(num_scenes=DEMO_SCENES, version=DEMO_VERSION,
                    scene_duration_s=DEMO_DURATION_S, seed=0, camera_at_sweeps=True)
    generate_dataset(cfg, dataroot, progress=True)
    print(f"  wrote {dataroot} ({DEMO_SCENES} scenes x {DEMO_DURATION_S:.0f} s, cameras at "
          f"12 Hz) in {time.perf_counter() - t0:.0f} s")


def replay_demo(
    dataroot: Path, out_dir: Path, benchmark_rows: Sequence[dict] | None = None
) -> ReplaySummary:
    """Replay the val scene of ``dataroot`` (generated when absent) with the best fused
    variant; prints the summary and where the video and the recording are.
    """
    ensure_replay_dataset(dataroot)
    variant = best_fused_variant(benchmark_rows)
    summary = replay(ReplayConfig(dataroot, DEMO_VERSION, split=DEMO_SPLIT, checkpoint=variant,
                                  out_dir=out_dir))
    print(summary.paths["summary_md"].read_text())
    print(f"  video: {summary.paths['video']}")
    print(f"  Foxglove recording (open in the Foxglove app): {summary.paths['mcap']}")
    print(f"  per-tick records: {summary.paths['ticks']}")
    return summary
