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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.detection import (  # noqa: E402
    ResultsFormatError,
    evaluate_detections,
    evaluate_with_conditions,
    load_config,
    split_sample_tokens,
    validate_results,
    write_metrics,
)
from eval.detection.report import condition_table, markdown_summary, plot_curves  # noqa: E402


def _load_nusc(dataroot: str, version: str):  # noqa: ANN202
    from nuscenes import NuScenes

    tables = Path(dataroot) / version
    if not tables.is_dir():  # the devkit would stop on a bare AssertionError
        raise FileNotFoundError(f"{tables}: no such table folder (check --dataroot and --version)")
    return NuScenes(version=version, dataroot=dataroot, verbose=False)


def run_checkpoint(args: argparse.Namespace, out: Path) -> tuple[object, dict, dict]:
    """Run the model over the split; returns (nusc, results dict, planning/control report)."""
    from eval.runner import run_model
    from sensors.datasets.nuscenes import NuScenesDataset

    ds = NuScenesDataset(args.dataroot, args.version)
    tokens = ds.split_sample_tokens(args.split)
    if args.max_samples:
        print(
            f"note: --max-samples {args.max_samples}: the other samples of the split get no "
            "detections, so the detection metrics are not comparable to a full run",
            file=sys.stderr,
        )
    run = run_model(
        args.checkpoint,
        ds,
        tokens[: args.max_samples] if args.max_samples else tokens,
        device=args.device,
        ego_status_ablation=args.ego_status_ablation,
        steering_ratio=args.steering_ratio,
    )
    for tok in tokens[len(run.detections) :]:  # the evaluation needs the whole split
        run.add_empty(tok, ds.global_SE3_ego(tok))
    results = run.write_results(out / "results.json")
    report = run.report(ds.nusc)
    (out / "failures.json").write_text(json.dumps(run.failures, indent=2))
    if run.failures:
        print(f"{len(run.failures)} samples failed (see {out / 'failures.json'})", file=sys.stderr)
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
    ap.add_argument(
        "--by-condition",
        action="store_true",
        help="also score each driving condition named in the scene descriptions (rain, night, "
        "fog, other) on its own; writes metrics_by_condition.json",
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
        groups: dict = {}
        if args.by_condition:  # one read of the results and the ground truth for both
            summary, groups = evaluate_with_conditions(nusc, source, args.split, config,
                                                       verbose=True)
        else:
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
    if args.by_condition:
        (out / "metrics_by_condition.json").write_text(
            json.dumps(
                {k: {"num_samples": n, **m.to_dict()} for k, (n, m) in groups.items()}, indent=2
            )
        )
        table = condition_table(groups)
        md += "\n## By condition (scene description)\n\n" + table + "\n"
        print(table)
    (out / "summary.md").write_text(md)
    if not args.no_plots:
        plot_curves(summary, out / "plots")
    print(f"mAP {summary.mean_ap:.4f}  NDS {summary.nd_score:.4f}  ({time.time() - t0:.1f} s)")
    for m, v in summary.tp_errors.items():
        print(f"  {m}: {v:.4f}")
    print(f"wrote {paths['summary']}, {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    from eval.cli import run_main  # one error line, exit 2, on bad input (--debug: traceback)

    raise SystemExit(run_main(main))
