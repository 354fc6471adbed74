r"""drivefuse demo: every stage on data that ships or is generated here, no download.

Inputs:  the real nuScenes keyframe in --frame when present; otherwise none (the synthetic
         drives are generated into --dataroot and --replay-dataroot on the first run).
Outputs: in --out: overlay_<CAM>.jpg, sim_contact_sheet.png, demo/benchmark/ (benchmark.md,
         .json, heatmap.png, accuracy_latency.png, cells/), demo/summary.md, demo/summary.json,
         demo/detections_cameras.jpg, demo/detections_bev.png, replay/ (ticks, video, MCAP).

    drivefuse demo [--dataroot data/sim-mini] [--variants lidar_only camera_only ...]

1. The real nuScenes keyframe (../shared/data/nuscenes-frame, when present): LiDAR points
   projected into the six cameras through the motion-compensated calibration ->
   ``outputs/overlay_<CAM>.jpg``.
2. A synthetic drive set in the nuScenes format (generated once into ``data/sim-mini``,
   10 scenes, v1.0-mini) and its contact sheet -> ``outputs/sim_contact_sheet.png``.
3. The fusion benchmark's ``--quick`` run (``eval.benchmark``): every shipped checkpoint
   (``perception/checkpoints/<variant>``) over the ``mini_val`` scenes, clean and under every
   sensor corruption of ``eval.corruptions`` at its mid severity; nuScenes detection metrics
   (equal to the official devkit), open-loop planning L2 / collision, mRR / mCE, latency,
   memory -> ``outputs/demo/benchmark/`` (benchmark.md, benchmark.json, heatmap.png,
   accuracy_latency.png, cells/), ``outputs/demo/summary.md`` and ``outputs/demo/summary.json``.
4. A visual record of one validation sample: predicted boxes of the best variant on the six
   cameras and in bird's-eye view -> ``outputs/demo/detections_cameras.jpg``,
   ``outputs/demo/detections_bev.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from calibration.sample import SyncedSample
from eval.runner import ModelRun, run_model
from perception.checkpoint import SHIPPED_CHECKPOINTS_DIR
from sensors.datasets.frame_json import load_frame_json
from sensors.visualize import lidar_overlays

# The real keyframe sits beside a checkout (../shared); an installed package finds none there.
DEFAULT_FRAME = Path(__file__).resolve().parents[2] / "../shared/data/nuscenes-frame"
CHECKPOINTS = SHIPPED_CHECKPOINTS_DIR


def write_overlays(frame_dir: Path, out_dir: Path, with_boxes: bool = True) -> list[Path]:
    """Write the real keyframe's six LiDAR-on-camera overlays; returns the paths."""
    sample = load_frame_json(frame_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    boxes = sample.boxes if with_boxes else None
    for channel, image in lidar_overlays(sample, boxes=boxes).items():
        path = out_dir / f"overlay_{channel}.jpg"
        _imwrite(path, image)
        written.append(path)
    return written


def _imwrite(path: Path, image_rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write image")


def ensure_dataset(dataroot: Path, version: str, scenes: int, duration_s: float) -> None:
    """Generate the synthetic set unless its tables already exist (a rerun reuses it)."""
    if (dataroot / version / "sample.json").exists():
        print(f"  reusing {dataroot} ({version})")
        return
    from sensors.sim import SimConfig, generate_dataset

    t0 = time.perf_counter()
    cfg = SimConfig(num_scenes=scenes, version=version, scene_duration_s=duration_s, seed=0)
    generate_dataset(cfg, dataroot, progress=True)
    print(
        f"  wrote {dataroot} ({scenes} scenes x {duration_s:.0f} s) in "
        f"{time.perf_counter() - t0:.0f} s"
    )


def bev_figure(sample: SyncedSample, run: ModelRun, path: Path, title: str) -> None:
    """Bird's-eye view of one sample: LiDAR, ground truth (green), predictions (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 8))
    if sample.lidar is not None:
        xyz = sample.lidar.xyz
        ax.scatter(xyz[:, 0], xyz[:, 1], s=0.2, c="0.6", linewidths=0)
    dets = run.detections[sample.token]
    for boxes, color, label in (
        (sample.boxes, "tab:green", "ground truth"),
        (dets.subset(dets.scores >= 0.3), "tab:red", "predicted"),
    ):
        if boxes is None:
            continue
        for i, corners in enumerate(boxes.corners()[:, :4, :2]):
            loop = np.vstack([corners, corners[:1]])
            ax.plot(loop[:, 0], loop[:, 1], color=color, lw=1.2, label=label if i == 0 else None)
    plan = run.plans[sample.token]
    ax.plot(plan[:, 0], plan[:, 1], "o-", color="tab:blue", ms=3, label="planned path (3 s)")
    if sample.future_xy_ego_m is not None:
        gt = sample.future_xy_ego_m
        ax.plot(gt[:, 0], gt[:, 1], "x--", color="k", ms=4, label="driven path")
    ax.set_xlim(-40, 40)
    ax.set_ylim(-40, 40)
    ax.set_aspect("equal")
    ax.set_xlabel("x forward (m, ego frame)")
    ax.set_ylabel("y left (m)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def camera_sheet(sample: SyncedSample, run: ModelRun, path: Path) -> None:
    """The six cameras (2 x 3) with LiDAR points and the predicted boxes (score >= 0.3)."""
    dets = run.detections[sample.token]
    tiles = lidar_overlays(sample, boxes=dets.subset(dets.scores >= 0.3))
    order = (
        "CAM_FRONT_LEFT",
        "CAM_FRONT",
        "CAM_FRONT_RIGHT",
        "CAM_BACK_LEFT",
        "CAM_BACK",
        "CAM_BACK_RIGHT",
    )
    h, w = next(iter(tiles.values())).shape[:2] if tiles else (450, 800)
    blank = np.zeros((h, w, 3), np.uint8)
    imgs = [cv2.resize(tiles.get(ch, blank), (w, h)) for ch in order]
    for img, ch in zip(imgs, order):
        cv2.putText(img, ch, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    _imwrite(path, np.vstack([np.hstack(imgs[:3]), np.hstack(imgs[3:])]))


# Left out of the demo's default benchmark (its full-resolution camera corruptions cost ten
# times the others'); `drivefuse bench` runs it by default.
DEMO_SKIPS = ("lidar_camera_refine",)


def demo_variants() -> list[str]:
    """The shipped variants the demo benchmarks by default."""
    from eval.benchmark import shipped_checkpoints

    return [v for v, _ in shipped_checkpoints(CHECKPOINTS) if v not in DEMO_SKIPS]


def main(argv: list[str] | None = None) -> int:
    """Run the four demo steps and the replay; 0 on success."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frame", type=Path, default=DEFAULT_FRAME, help="real frame.json folder")
    ap.add_argument("--dataroot", type=Path, default=Path("data/sim-mini"))
    ap.add_argument("--replay-dataroot", type=Path, default=Path("data/sim-replay"),
                    help="the replay step's drive set (cameras at 12 Hz; generated if absent)")
    ap.add_argument("--version", default="v1.0-mini")
    ap.add_argument("--split", default="mini_val")
    ap.add_argument("--scenes", type=int, default=10, help="scenes to generate (mini: 10)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per generated scene")
    ap.add_argument("--variants", nargs="*",
                    help="checkpoints to run (default: every shipped one but the "
                    "lidar_camera_refine cascade, whose camera corruptions run on 800x450 "
                    "images and would take the benchmark from ~7 to ~25 min)")
    ap.add_argument("--max-samples", type=int, default=0, help="only the first N val samples")
    ap.add_argument("--out", type=Path, default=Path("outputs"))
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    out = args.out
    demo_dir = out / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)

    print("[1/4] real nuScenes keyframe: LiDAR projected into the six cameras")
    if (args.frame / "frame.json").is_file():
        for path in write_overlays(args.frame, out):
            print(f"  wrote {path}")
    else:
        print(f"  skipped: no frame.json in {args.frame.resolve()}")

    print(f"[2/4] synthetic drives in the nuScenes format -> {args.dataroot}")
    ensure_dataset(args.dataroot, args.version, args.scenes, args.duration)
    from sensors.sim.contact_sheet import contact_sheet

    sheet = contact_sheet(args.dataroot, args.version, out / "sim_contact_sheet.png")
    print(f"  wrote {sheet}")

    from eval.benchmark import (
        BenchmarkSpec,
        corruption_table,
        quick_severities,
        shipped_checkpoints,
        summary_table,
        table_rows,
    )
    from eval.sharding import default_benchmark_executor, run_benchmark_on
    from sensors.datasets.nuscenes import NuScenesDataset

    spec = BenchmarkSpec(
        checkpoints=shipped_checkpoints(CHECKPOINTS, args.variants or demo_variants()),
        dataroot=str(args.dataroot), version=args.version, split=args.split,
        severities=quick_severities(), max_samples=args.max_samples or None,
    )
    print(f"[3/4] fusion benchmark --quick: {len(spec.variants)} shipped checkpoints on "
          f"{args.split}, clean + {len(spec.groups())} corruptions at severity "
          f"{spec.severities[0]}")
    if args.max_samples:
        print(f"  note: only the first {args.max_samples} samples run; the rest count as empty, "
              "so these metrics are not comparable to a full run")
    # A rerun reuses the finished cells; other checkpoints or data start the folder afresh.
    # Chunks of corruptions on every core (at most 4), as `drivefuse bench` runs by default.
    bench = run_benchmark_on(spec, demo_dir / "benchmark", default_benchmark_executor(),
                             log=lambda line: print(line, flush=True), reset_stale=True)
    summary = summary_table(bench)
    print(summary)
    print(corruption_table(bench))

    print("[4/4] visual record of one validation sample")
    rows = [r for r in table_rows(bench) if r["clean_NDS"] is not None]
    if rows:
        best = max(rows, key=lambda r: r["clean_NDS"])
        ds = NuScenesDataset(args.dataroot, args.version)
        split_tokens = ds.split_sample_tokens(args.split)
        tokens = split_tokens[: args.max_samples] if args.max_samples else split_tokens
        # The sample with most annotated boxes shows the most.
        tok = max(tokens, key=lambda t: len(ds.nusc.get("sample", t)["anns"]))
        run = run_model(CHECKPOINTS / best["variant"], ds, [tok], progress=False)
        sample = ds.load_sample(tok)  # at the model's decode reduction (run_model set it)
        ds.set_image_reduction(1)
        full = ds.load_sample(tok)
        camera_sheet(full, run, demo_dir / "detections_cameras.jpg")
        bev_figure(
            sample,
            run,
            demo_dir / "detections_bev.png",
            f"{best['variant']}: NDS {best['clean_NDS']:.3f} on {args.split}",
        )
        print(f"  wrote {demo_dir / 'detections_cameras.jpg'}, {demo_dir / 'detections_bev.png'}")

    print("[replay] one synthetic val scene tick by tick (20 Hz LiDAR, cameras at 12 Hz)")
    from eval.replay.demo import replay_demo

    replay_demo(args.replay_dataroot, out / "replay", rows)

    md = [
        "# drivefuse demo",
        "",
        f"Data: {args.dataroot} ({args.version}, {args.split}). The fusion benchmark's "
        "`--quick` run: every shipped variant clean and under every corruption at severity "
        f"{spec.severities[0]}. Metrics: nuScenes detection (devkit-identical), open-loop "
        "planning, mRR / mCE (Robo3D, on NDS). Latency: median ms per frame on this machine.",
        "",
        summary,
        "",
        "NDS per corruption:",
        "",
        corruption_table(bench),
    ]
    (demo_dir / "summary.md").write_text("\n".join(md) + "\n")
    (demo_dir / "summary.json").write_text(json.dumps(table_rows(bench), indent=2))
    print(f"wrote {demo_dir / 'summary.md'} ({time.perf_counter() - t_start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse demo"))
