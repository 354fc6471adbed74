r"""Evaluate 3D detections (and planning/control) on a nuScenes-format dataset.

Two ways in:

  # any results file in the official format (from mmdetection3d, OpenPCDet, BEVFusion, ...)
  python tools/evaluate.py --results results.json --dataroot data/nuscenes \
      --version v1.0-trainval --split val

  # our model: runs the checkpoint over the split, writes results.json, then evaluates it
  python tools/evaluate.py --checkpoint perception/checkpoints/tiny --dataroot data/sim \
      --version v1.0-mini --split mini_val

Outputs in --out: metrics_summary.json and metrics_details.json (the devkit's layouts),
summary.md, plots/*.png; with --checkpoint also results.json, planning.json and failures.json.
The numbers equal the nuscenes-devkit's DetectionEval (tests/eval asserts 1e-9).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.detection import (  # noqa: E402
    ResultsFormatError,
    evaluate_detections,
    load_config,
    split_sample_tokens,
    validate_results,
    write_metrics,
    write_results,
)
from eval.detection.report import markdown_summary, plot_curves  # noqa: E402


def _load_nusc(dataroot: str, version: str):  # noqa: ANN202
    from nuscenes import NuScenes

    return NuScenes(version=version, dataroot=dataroot, verbose=False)


def run_checkpoint(args: argparse.Namespace, out: Path) -> tuple[object, dict, dict]:
    """Run the model over the split; returns (nusc, results dict, planning/control report)."""
    from tqdm import tqdm

    from calibration.sample import Boxes3D
    from eval import planning
    from eval.detection.results import ResultsMeta
    from perception import Pipeline
    from sensors.datasets.nuscenes import NuScenesDataset

    ds = NuScenesDataset(args.dataroot, args.version)
    pipe = Pipeline.from_checkpoint(args.checkpoint, device=args.device)
    tokens = ds.split_sample_tokens(args.split)
    if args.max_samples:
        print(
            f"note: --max-samples {args.max_samples}: the other samples of the split get no "
            "detections, so the detection metrics are not comparable to a full run",
            file=sys.stderr,
        )
    dets, poses, failures = {}, {}, []
    plan_pred, plan_gt, fut_boxes = [], [], []
    plan_pred_zeroed = []
    steer, speed_pred, can_speed, can_yaw, can_wheel = [], [], [], [], []
    aeb_fired, obstacle_dist, ego_speed = [], [], []
    dt = pipe.cfg.planning.dt_s
    for i, tok in enumerate(tqdm(tokens, desc="inference", unit="sample")):
        poses[tok] = ds.global_SE3_ego(tok)
        if args.max_samples and i >= args.max_samples:
            dets[tok] = Boxes3D.empty()
            continue
        try:
            sample = ds.load_sample(tok)
            res = pipe.run(sample)
        except Exception as exc:  # a bad frame is recorded, the run goes on
            failures.append({"sample_token": tok, "error": f"{type(exc).__name__}: {exc}"})
            dets[tok] = Boxes3D.empty()
            continue
        dets[tok] = res.detections
        wp = np.asarray(res.plan.waypoints_xy_ego_m, np.float64)
        if sample.future_xy_ego_m is not None:
            plan_pred.append(wp)
            plan_gt.append(sample.future_xy_ego_m)
            fut_boxes.append(planning.nuscenes_future_boxes(ds.nusc, tok, len(wp), dt))
            if args.ego_status_ablation:
                res0 = pipe.run(replace(sample, can_bus=None))
                plan_pred_zeroed.append(np.asarray(res0.plan.waypoints_xy_ego_m, np.float64))
        steer.append(res.control.steer_rad)
        speed_pred.append(float(planning.planned_speed_mps(wp[None], dt)[0]))
        cb = sample.can_bus
        can_speed.append(cb.speed_mps if cb else np.nan)
        can_yaw.append(cb.yaw_rate_radps if cb else np.nan)
        can_wheel.append(cb.steering_rad if cb else np.nan)
        aeb_fired.append(bool(res.control.aeb))
        gt = sample.boxes
        boxes5 = (
            np.c_[gt.center_m[:, :2], gt.wlh_m[:, 0], gt.wlh_m[:, 1], gt.yaw_rad]
            if gt is not None
            else np.zeros((0, 5))
        )
        obstacle_dist.append(planning.in_path_distance_m(boxes5))
        ego_speed.append(cb.speed_mps if cb else float(np.hypot(*wp[0]) / dt))
    meta = ResultsMeta(
        use_camera=pipe.cfg.uses("camera"),
        use_lidar=pipe.cfg.uses("lidar"),
        use_radar=False,
        use_map=False,
        use_external=False,
    )
    results = write_results(dets, poses, meta, out / "results.json")
    report: dict = {"failures": len(failures), "samples": len(tokens)}
    if plan_pred:
        status = bool(pipe.cfg.planning.use_ego_status)
        pm = planning.planning_metrics(
            np.stack(plan_pred), np.stack(plan_gt), future_boxes=fut_boxes, dt_s=dt,
            ego_status=status,
        )
        report["planning"] = pm.to_dict()
        if plan_pred_zeroed:
            pz = planning.planning_metrics(
                np.stack(plan_pred_zeroed), np.stack(plan_gt), future_boxes=fut_boxes, dt_s=dt,
                ego_status=False,
            )
            report["planning_ego_status_ablation (zeroed at inference)"] = (
                planning.ego_status_ablation(pm, pz)
            )
    report["control_vs_can_bus"] = asdict(
        planning.control_errors(
            np.array(steer), np.array(speed_pred), np.array(can_speed),
            can_yaw_rate_radps=np.array(can_yaw), can_steering_wheel_rad=np.array(can_wheel),
            steering_ratio=args.steering_ratio,
        )
    )
    report["aeb"] = asdict(
        planning.aeb_metrics(np.array(aeb_fired, bool), np.array(obstacle_dist),
                             np.array(ego_speed))
    )
    (out / "failures.json").write_text(json.dumps(failures, indent=2))
    if failures:
        print(f"{len(failures)} samples failed (see {out / 'failures.json'})", file=sys.stderr)
    return ds.nusc, results, report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", type=Path, help="results JSON in the nuScenes format")
    src.add_argument("--checkpoint", type=Path, help="our checkpoint folder (or model.pt)")
    ap.add_argument("--dataroot", required=True, help="nuScenes-format dataroot")
    ap.add_argument("--version", default="v1.0-mini", help="table folder, e.g. v1.0-trainval")
    ap.add_argument("--split", default="mini_val", help="split to evaluate, e.g. val")
    ap.add_argument("--out", type=Path, default=Path("outputs/eval"), help="output folder")
    ap.add_argument("--config", default="detection_cvpr_2019", help="config name or JSON path")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--device", default=None, help="torch device for --checkpoint")
    ap.add_argument("--max-samples", type=int, default=0, help="--checkpoint: stop early")
    ap.add_argument(
        "--ego-status-ablation",
        action="store_true",
        help="--checkpoint: also plan with ego status zeroed and report both",
    )
    ap.add_argument(
        "--steering-ratio",
        type=float,
        default=None,
        help="steering-wheel/front-wheel ratio; without it steering is checked against the "
        "angle the CAN yaw rate implies",
    )
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config)
    t0 = time.time()
    report: dict | None = None
    if args.checkpoint:
        nusc, results, report = run_checkpoint(args, out)
        source: object = results
    else:
        nusc = _load_nusc(args.dataroot, args.version)
        source = args.results
    try:
        summary = evaluate_detections(nusc, source, args.split, config, verbose=True)
    except ResultsFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.results:
            problems = validate_results(
                args.results, split_sample_tokens(nusc, args.split), config.max_boxes_per_sample
            )
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
        return 2
    paths = write_metrics(summary, out)
    md = markdown_summary(summary, title=f"Detection metrics: {args.split} ({args.version})")
    if report is not None:
        (out / "planning.json").write_text(json.dumps(report, indent=2))
        md += "\n## Planning and control\n\n```json\n" + json.dumps(report, indent=2) + "\n```\n"
    (out / "summary.md").write_text(md)
    if not args.no_plots:
        plot_curves(summary, out / "plots")
    print(f"mAP {summary.mean_ap:.4f}  NDS {summary.nd_score:.4f}  ({time.time() - t0:.1f} s)")
    for m, v in summary.tp_errors.items():
        print(f"  {m}: {v:.4f}")
    print(f"wrote {paths['summary']}, {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
