"""drivefuse demo: every stage on data that ships or is generated here, no download.

    python tools/demo.py [--dataroot data/sim-mini] [--variants lidar_only camera_only ...]

1. The real nuScenes keyframe (../shared/data/nuscenes-frame, when present): LiDAR points
   projected into the six cameras through the motion-compensated calibration ->
   ``outputs/overlay_<CAM>.jpg``.
2. A synthetic drive set in the nuScenes format (generated once into ``data/sim-mini``,
   10 scenes, v1.0-mini) and its contact sheet -> ``outputs/sim_contact_sheet.png``.
3. Every shipped checkpoint (``perception/checkpoints/<variant>``) run over the ``mini_val``
   scenes, clean and with each sensor removed; nuScenes detection metrics (equal to the
   official devkit), open-loop planning L2 / collision, AEB, per-stage latency ->
   ``outputs/demo/<variant>/`` (results.json, metrics_summary.json, summary.md, plots/),
   ``outputs/demo/summary.md`` and ``outputs/demo/summary.json``.
4. A visual record of one validation sample: predicted boxes of the best variant on the six
   cameras and in bird's-eye view -> ``outputs/demo/detections_cameras.jpg``,
   ``outputs/demo/detections_bev.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.sample import SyncedSample  # noqa: E402
from eval.detection import evaluate_detections, write_metrics  # noqa: E402
from eval.detection.report import markdown_summary, plot_curves  # noqa: E402
from eval.runner import ModelRun, run_model  # noqa: E402
from perception.config import FUSION_VARIANTS  # noqa: E402
from sensors.datasets.frame_json import load_frame_json  # noqa: E402
from sensors.types import CAMERA_CHANNELS  # noqa: E402
from sensors.visualize import lidar_overlays  # noqa: E402

BASELINE_VARIANTS = ("lidar_only", "camera_only", "lidar_ultrasonic")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_FRAME = REPO / "../shared/data/nuscenes-frame"
CHECKPOINTS = REPO / "perception/checkpoints"
# Baselines first, then the fused variants, so the table reads bottom-up.
VARIANT_ORDER = tuple(sorted(FUSION_VARIANTS, key=lambda v: v not in BASELINE_VARIANTS))
# Sensor faults applied to every variant: the sample with that modality removed.
FAULTS = ("clean", "no_camera", "no_lidar")


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


def apply_fault(sample: SyncedSample, fault: str) -> SyncedSample:
    """The sample with one modality removed (what a dead sensor looks like downstream)."""
    match fault:
        case "clean":
            return sample
        case "no_camera":
            return replace(sample, cameras=(None,) * len(CAMERA_CHANNELS))
        case "no_lidar":
            return replace(sample, lidar=None)
        case "no_ultrasonic":
            return replace(sample, ultrasonic=None)
    raise ValueError(f"unknown fault {fault!r}")


def shipped_variants(requested: list[str] | None) -> list[str]:
    """Variants with a trained checkpoint, in display order (or those requested)."""
    have = {p.name for p in CHECKPOINTS.iterdir() if (p / "model.pt").is_file()}
    if requested:
        missing = [v for v in requested if v not in have]
        if missing:
            raise SystemExit(f"demo: no checkpoint for {missing} in {CHECKPOINTS}")
        return requested
    return [v for v in VARIANT_ORDER if v in have] + sorted(have - set(VARIANT_ORDER))


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", type=Path, default=DEFAULT_FRAME, help="real frame.json folder")
    ap.add_argument("--dataroot", type=Path, default=REPO / "data/sim-mini")
    ap.add_argument("--version", default="v1.0-mini")
    ap.add_argument("--split", default="mini_val")
    ap.add_argument("--scenes", type=int, default=10, help="scenes to generate (mini: 10)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per generated scene")
    ap.add_argument("--variants", nargs="*", help="checkpoints to run (default: all shipped)")
    ap.add_argument("--faults", nargs="*", default=list(FAULTS), choices=[*FAULTS, "no_ultrasonic"])
    ap.add_argument("--max-samples", type=int, default=0, help="only the first N val samples")
    ap.add_argument("--out", type=Path, default=REPO / "outputs")
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

    from nuscenes import NuScenes

    from sensors.datasets.nuscenes import NuScenesDataset

    variants = shipped_variants(args.variants)
    print(f"[3/4] {len(variants)} shipped checkpoints on {args.split}, faults {args.faults}")
    ds = NuScenesDataset(args.dataroot, args.version)
    nusc: NuScenes = ds.nusc
    split_tokens = ds.split_sample_tokens(args.split)
    tokens = split_tokens[: args.max_samples] if args.max_samples else split_tokens
    if len(tokens) < len(split_tokens):
        print(
            f"  note: only {len(tokens)} of {len(split_tokens)} samples run; the rest count "
            "as empty, so these metrics are not comparable to a full run"
        )
    # Decode at the reduction the checkpoints were trained with (eval.runner does the same
    # when it loads samples itself); the visual record reloads its sample at full size.
    from eval.runner import decode_like_training
    from perception.checkpoint import load_config

    cam_cfgs = [c for c in (load_config(CHECKPOINTS / v) for v in variants) if c.uses("camera")]
    if cam_cfgs:
        decode_like_training(ds, cam_cfgs[0])
    samples = {}
    for tok in tokens:
        try:
            samples[tok] = ds.load_sample(tok)
        except Exception as exc:  # a bad frame is recorded; the demo goes on without it
            print(f"  sample {tok}: {type(exc).__name__}: {exc}", file=sys.stderr)
    rows, runs = [], {}
    for variant in variants:
        for fault in args.faults:
            faulty = {t: apply_fault(s, fault) for t, s in samples.items()}
            run = run_model(CHECKPOINTS / variant, ds, tokens, faulty, progress=False)
            for tok in split_tokens[len(tokens) :]:  # the evaluation needs the whole split
                run.add_empty(tok, ds.global_SE3_ego(tok))
            name = f"{variant}/{fault}"
            vdir = demo_dir / variant / fault
            vdir.mkdir(parents=True, exist_ok=True)
            results = run.write_results(vdir / "results.json")
            summary = evaluate_detections(nusc, results, args.split)
            write_metrics(summary, vdir)
            (vdir / "summary.md").write_text(
                markdown_summary(summary, title=f"{name} on {args.split}")
            )
            if fault == "clean":
                plot_curves(summary, vdir / "plots")
                runs[variant] = (run, summary)
            report = run.report(nusc)
            plan, nan = report.get("planning", {}), float("nan")
            row = {
                "variant": variant,
                "fault": fault,
                "mAP": summary.mean_ap,
                "NDS": summary.nd_score,
                "L2_3s_m": plan.get("L2_at_3s_m", nan),
                "collision_3s": plan.get("collision_any_3s", nan),
                "aeb_recall": report["aeb"]["recall"],
                "aeb_precision": report["aeb"]["precision"],
                "latency_ms": run.median_latency_ms(),
                "failures": len(run.failures),
            }
            (vdir / "planning_control.json").write_text(json.dumps(report, indent=2))
            rows.append(row)
            print(
                f"  {name:32s} mAP {row['mAP']:.3f}  NDS {row['NDS']:.3f}  "
                f"L2@3s {row['L2_3s_m']:.2f} m  {row['latency_ms']:.0f} ms/frame"
            )

    print("[4/4] visual record of one validation sample")
    if runs:
        best = max(runs, key=lambda v: runs[v][1].nd_score)
        run, summary = runs[best]
        # The sample with most annotated boxes shows the most.
        tok = max(samples, key=lambda t: len(samples[t].boxes or ()))
        ds.set_image_reduction(1)
        full = ds.load_sample(tok)
        camera_sheet(full, run, demo_dir / "detections_cameras.jpg")
        bev_figure(
            samples[tok],
            run,
            demo_dir / "detections_bev.png",
            f"{best}: NDS {summary.nd_score:.3f} on {args.split}",
        )
        print(f"  wrote {demo_dir / 'detections_cameras.jpg'}, {demo_dir / 'detections_bev.png'}")

    md = [
        "# drivefuse demo",
        "",
        f"Data: {args.dataroot} ({args.version}, {args.split}, "
        f"{len(samples)} samples). Metrics: nuScenes detection (devkit-identical), "
        "open-loop planning, AEB. Latency: median end-to-end ms per frame on this machine.",
        "",
        "| variant | sensors | mAP | NDS | L2@3s (m) | collision@3s | AEB recall | "
        "ms/frame | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['variant']} | {r['fault']} | {r['mAP']:.3f} | {r['NDS']:.3f} | "
            f"{r['L2_3s_m']:.2f} | {r['collision_3s']:.3f} | {r['aeb_recall']:.2f} | "
            f"{r['latency_ms']:.0f} | {r['failures']} |"
        )
    (demo_dir / "summary.md").write_text("\n".join(md) + "\n")
    (demo_dir / "summary.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(md[4:]))
    print(f"wrote {demo_dir / 'summary.md'} ({time.perf_counter() - t_start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    from eval.cli import run_main  # one error line, exit 2, on bad input (--debug: traceback)

    raise SystemExit(run_main(main))
