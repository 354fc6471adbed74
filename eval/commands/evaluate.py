r"""drivefuse evaluate: 3D detections (and planning/control) on a nuScenes-format dataset,
scored exactly like the nuscenes-devkit.

Inputs:  --results (any results JSON in the official nuScenes format) or --checkpoint (a
         checkpoint folder or a shipped variant name, run over the split), --dataroot +
         --version + --split (the ground truth).
Outputs: in --out: metrics_summary.json, metrics_details.json, summary.md, plots/*.png; with
         --checkpoint also results.json, planning.json, failures.json; with --by-condition
         metrics_by_condition.json.

Two ways in:

  # any results file in the official format (from mmdetection3d, OpenPCDet, BEVFusion, ...)
  drivefuse evaluate --results results.json --dataroot data/nuscenes \
      --version v1.0-trainval --split val

  # our model: runs the checkpoint over the split, writes results.json, then evaluates it
  drivefuse evaluate --checkpoint gated --dataroot data/sim \
      --version v1.0-mini --split mini_val

  # the same, one Ray task a scene (--ray: a local Ray; --ray-address auto: the cluster;
  # add --ray-gpus-per-unit 1 --device cuda on GPU nodes); identical results.json
  drivefuse evaluate --checkpoint gated --dataroot /shared/nuscenes \
      --version v1.0-trainval --split val --ray --ray-address auto

Outputs in --out: metrics_summary.json and metrics_details.json (the devkit's layouts),
summary.md, plots/*.png; with --checkpoint also results.json, planning.json and failures.json.
The numbers equal the nuscenes-devkit's DetectionEval (tests/eval asserts 1e-9).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from eval.cli import staged_output_dir
from eval.detection import (
    ResultsFormatError,
    evaluate_detections,
    evaluate_with_conditions,
    load_config,
    split_sample_tokens,
    validate_results,
    write_metrics,
)
from eval.detection.evaluate import confusions_of
from eval.detection.report import condition_table, markdown_summary, plot_curves
from eval.executor import add_executor_arguments


def _load_nusc(dataroot: str, version: str):  # noqa: ANN202
    from nuscenes import NuScenes

    tables = Path(dataroot) / version
    if not tables.is_dir():  # the devkit would stop on a bare AssertionError
        raise FileNotFoundError(f"{tables}: no such table folder (check --dataroot and --version)")
    return NuScenes(version=version, dataroot=dataroot, verbose=False)


def run_checkpoint(args: argparse.Namespace, out: Path) -> tuple[object, dict, dict, dict]:
    """Run the model over the split.

    Returns:
        ``(nusc, results dict, planning/control report, failure summary)``; the failure
        summary has ``run`` (samples run), ``failed`` (their records, each naming the error and
        so the file) and ``sensor_faults`` (inputs masked as absent, with file and reason).

    """
    from eval.executor import executor_from_args
    from eval.runner import run_model
    from eval.sharding import run_model_sharded
    from sensors.datasets.nuscenes import NuScenesDataset

    executor = executor_from_args(args, default=None)  # None: one loop in this process
    ds = NuScenesDataset(args.dataroot, args.version)
    tokens = ds.split_sample_tokens(args.split)
    if args.max_samples:
        print(
            f"note: --max-samples {args.max_samples}: the other samples of the split get no "
            "detections, so the detection metrics are not comparable to a full run",
            file=sys.stderr,
        )
    selected = tokens[: args.max_samples] if args.max_samples else tokens
    if executor is None:
        if args.threads:
            from perception.threads import set_cpu_threads

            set_cpu_threads(args.threads)
        run = run_model(
            args.checkpoint,
            ds,
            selected,
            device=args.device,
            ego_status_ablation=args.ego_status_ablation,
            steering_ratio=args.steering_ratio,
        )
    else:  # one unit a scene; the merged run equals the loop's (same results.json bytes)
        run, _ = run_model_sharded(
            args.checkpoint, ds, selected, executor, device=args.device,
            ego_status_ablation=args.ego_status_ablation, steering_ratio=args.steering_ratio,
            threads=args.threads or 1,
        )
    for tok in tokens[len(run.detections) :]:  # the evaluation needs the whole split
        run.add_empty(tok, ds.global_SE3_ego(tok))
    results = run.write_results(out / "results.json")
    report = run.report(ds.nusc)
    failed = [_as_record(f) for f in run.failures]
    faults = [_as_record(f) for f in getattr(ds, "missing_files", [])]
    faults += [_as_record(f) for f in getattr(ds, "sensor_faults", [])]
    (out / "failures.json").write_text(
        json.dumps({"failed_samples": failed, "sensor_faults": faults}, indent=2)
    )
    if failed:
        print(f"{len(failed)} samples failed (see {args.out / 'failures.json'})", file=sys.stderr)
    n_run = len(tokens[: args.max_samples] if args.max_samples else tokens)
    return ds.nusc, results, report, {"run": n_run, "failed": failed, "sensor_faults": faults}


def _as_record(item: object) -> dict:
    """A failure / fault record (dict or dataclass) as a JSON-able dict."""
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {k: str(v) for k, v in dataclasses.asdict(item).items()}
    return {str(k): str(v) for k, v in dict(item).items()}  # type: ignore[call-overload]


def failures_markdown(summary: dict, limit: int = 100) -> str:
    """The summary.md section listing failed samples and masked sensor inputs with files."""
    failed, faults = summary["failed"], summary["sensor_faults"]
    lines = [
        "## Failures",
        "",
        f"{len(failed)} of {summary['run']} samples failed (no detections; counted as missed); "
        f"{len(faults)} sensor inputs were missing or corrupt and treated as absent.",
        "",
    ]
    for f in failed[:limit]:
        lines.append(f"- sample `{f.get('sample_token', '?')}`: {f.get('error', '')}")
    for f in faults[:limit]:
        where = f.get("token", "?")
        lines.append(
            f"- sensor `{f.get('channel', '?')}` of `{where}`: {f.get('path', '')}"
            + (f" ({f['reason']})" if f.get("reason") else " (file missing)")
        )
    if len(failed) > limit or len(faults) > limit:
        lines.append("- ... (all of them in failures.json)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Evaluate into a staging folder moved into --out at the end; the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", type=Path, help="results JSON in the nuScenes format")
    src.add_argument("--checkpoint", type=Path, help="a checkpoint folder (or its model.pt) "
                     "or a shipped variant name")
    ap.add_argument("--dataroot", required=True, help="nuScenes-format dataroot")
    ap.add_argument("--version", default="v1.0-mini", help="table folder, e.g. v1.0-trainval")
    ap.add_argument("--split", default="mini_val", help="split to evaluate, e.g. val")
    ap.add_argument("--out", type=Path, default=Path("outputs/eval"), help="output folder")
    ap.add_argument("--config", default="detection_cvpr_2019", help="config name or JSON path")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--device", default=None, help="torch device for --checkpoint")
    ap.add_argument("--max-samples", type=int, default=0, help="--checkpoint: stop early")
    ap.add_argument(
        "--max-failure-rate",
        type=float,
        default=None,
        help="--checkpoint: exit with code 1 when more than this fraction of samples failed "
        "(default: only when every sample failed)",
    )
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
    ap.add_argument("--threads", type=int, default=None,
                    help="--checkpoint: CPU threads (torch and Numba) of the inference; "
                    "default: all cores in one loop, 1 per unit with --ray/--workers. The "
                    "float results depend on it: runs are byte-identical at equal --threads")
    ap.add_argument("--confusions", action="store_true",
                    help="also count class confusions (eval.detection.confusion: each "
                    "object's best prediction within 2 m with score >= 0.3); writes "
                    "confusions.json")
    add_executor_arguments(ap, workers_help="--checkpoint: run inference one scene a unit in "
                           "N local processes (without --ray), or on a local Ray of N CPUs")
    args = ap.parse_args(argv)
    if args.max_failure_rate is not None and not 0.0 <= args.max_failure_rate <= 1.0:
        ap.error(f"--max-failure-rate must be in [0, 1], got {args.max_failure_rate}")
    config = load_config(args.config)
    # Everything is written to a staging folder and moved into --out at the end, so a rerun
    # never leaves an earlier run's metrics beside new ones, and a failed run leaves --out as
    # it was.
    with staged_output_dir(args.out, OUTPUT_NAMES) as out:
        rc = evaluate_into(args, config, out)
    print(f"wrote {args.out}")
    return rc


# Every name evaluate_into may write (a rerun removes the ones it did not write this time).
OUTPUT_NAMES = (
    "metrics_summary.json",
    "metrics_details.json",
    "metrics_by_condition.json",
    "summary.md",
    "plots",
    "results.json",
    "planning.json",
    "failures.json",
    "confusions.json",
)


def evaluate_into(args: argparse.Namespace, config: object, out: Path) -> int:
    """The evaluation proper, writing into ``out``; the exit code."""
    t0 = time.time()
    report: dict | None = None
    fail: dict | None = None
    if args.checkpoint:
        nusc, results, report, fail = run_checkpoint(args, out)
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
        if args.results:
            problems = validate_results(
                args.results, split_sample_tokens(nusc, args.split), config.max_boxes_per_sample
            )
            if problems:
                exc = ResultsFormatError(
                    f"{exc} [{len(problems)} problem(s); first: {'; '.join(problems[:3])}]"
                )
        raise exc from None
    write_metrics(summary, out)
    md = markdown_summary(summary, title=f"Detection metrics: {args.split} ({args.version})")
    rc = 0
    if fail is not None:
        md += "\n" + failures_markdown(fail)
        n_run, n_failed = fail["run"], len(fail["failed"])
        rate = n_failed / n_run if n_run else 0.0
        limit = args.max_failure_rate
        if n_run and (n_failed == n_run or (limit is not None and rate > limit)):
            print(
                f"error: {n_failed} of {n_run} samples failed ({rate:.1%}"
                + (f" > --max-failure-rate {limit:g}" if limit is not None else ": all of them")
                + f"); metrics reflect no detections for them; see {args.out / 'summary.md'}",
                file=sys.stderr,
            )
            rc = 1
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
    if args.confusions:
        table = confusions_of(nusc, source, args.split, config)
        (out / "confusions.json").write_text(json.dumps(table.to_dict(), indent=2))
        lines = [f"| {g} | {p} | {c} of {n} |" for g, p, c, n in table.top(8)]
        text = "| object | reported as | count |\n|---|---|---|\n" + "\n".join(lines)
        md += "\n## Class confusions\n\n" + text + "\n"
        print(text)
    (out / "summary.md").write_text(md)
    if not args.no_plots:
        plot_curves(summary, out / "plots")
    print(f"mAP {summary.mean_ap:.4f}  NDS {summary.nd_score:.4f}  ({time.time() - t0:.1f} s)")
    for m, v in summary.tp_errors.items():
        print(f"  {m}: {v:.4f}")
    return rc


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse evaluate"))
