"""``evaluate_detections``: nuScenes detection metrics equal to the devkit's ``DetectionEval``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import orjson

from eval.detection.config import TP_METRICS, DetectionConfig, default_config
from eval.detection.confusion import ConfusionTable, class_confusions
from eval.detection.data import DetectionMetricsSummary, EvalBoxSet, MetricCurves
from eval.detection.loading import (
    ResultsFormatError,
    ego_translations,
    filter_boxes,
    load_gt_and_bike_racks,
    load_results,
    split_sample_tokens,
)
from eval.detection.matching import confidence_order, greedy_match, group_by_sample
from eval.detection.metrics import (
    average_precision,
    curves_from_matches,
    is_undefined,
    match_errors,
    quaternion_yaw,
    summarize,
    tp_error,
)
from sensors.scene_description import Condition, parse_scene_description
from sensors.types import DETECTION_CLASSES

if TYPE_CHECKING:
    from nuscenes import NuScenes

_T = TypeVar("_T")


def _progress(
    iterable: Iterable[_T], verbose: bool, desc: str, total: int | None = None
) -> Iterable[_T]:
    if not verbose:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def _class_curves(
    class_name: str,
    gt: EvalBoxSet,
    pred: EvalBoxSet,
    pred_to_gt_sample: np.ndarray,
    config: DetectionConfig,
) -> dict[float, MetricCurves]:
    """Curves at every distance threshold for one class."""
    cid = DETECTION_CLASSES.index(class_name)
    g = np.nonzero(gt.label == cid)[0]
    p = np.nonzero(pred.label == cid)[0]
    num_gt = int(g.size)
    if num_gt == 0:
        return {th: MetricCurves.no_predictions() for th in config.dist_ths_m}
    gt_xy = np.ascontiguousarray(gt.translation[g, :2])
    gt_start, gt_end = group_by_sample(gt.sample_index[g], len(gt.sample_tokens))
    pred_xy = np.ascontiguousarray(pred.translation[p, :2])
    pred_sample = pred_to_gt_sample[pred.sample_index[p]]
    scores = pred.score[p]
    order = confidence_order(scores)
    scores_in_order = scores[order]
    gt_yaw = quaternion_yaw(gt.rotation[g])
    pred_yaw = quaternion_yaw(pred.rotation[p])
    out = {}
    for th in config.dist_ths_m:
        matched, dist = greedy_match(
            order, pred_sample, pred_xy, gt_start, gt_end, gt_xy, float(th)
        )
        is_tp = matched >= 0
        gi = matched[is_tp]
        pi = order[is_tp]
        errors = {"trans_err": dist[is_tp]}
        if gi.size:
            errors.update(
                match_errors(
                    class_name,
                    gt.size[g][gi],
                    gt_yaw[gi],
                    gt.velocity[g][gi],
                    gt.attribute[g][gi],
                    pred.size[p][pi],
                    pred_yaw[pi],
                    pred.velocity[p][pi],
                    pred.attribute[p][pi],
                )
            )
        out[th] = curves_from_matches(num_gt, scores_in_order, is_tp, errors)
    return out


def evaluate_boxes(
    gt: EvalBoxSet,
    pred: EvalBoxSet,
    config: DetectionConfig,
    meta: dict | None = None,
    verbose: bool = False,
) -> DetectionMetricsSummary:
    """Metrics of already loaded and filtered boxes (same samples on both sides)."""
    start = time.time()
    gt_id = {t: i for i, t in enumerate(gt.sample_tokens)}
    pred_to_gt_sample = np.array([gt_id[t] for t in pred.sample_tokens], np.int64)
    label_aps: dict[str, dict[float, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    curves: dict[tuple[str, float], MetricCurves] = {}
    num_gt, num_pred = {}, {}
    for c in _progress(config.class_names, verbose, "classes"):
        cid = DETECTION_CLASSES.index(c)
        num_gt[c] = int(np.count_nonzero(gt.label == cid))
        num_pred[c] = int(np.count_nonzero(pred.label == cid))
        by_th = _class_curves(c, gt, pred, pred_to_gt_sample, config)
        label_aps[c] = {}
        for th in config.dist_ths_m:
            curves[(c, th)] = by_th[th]
            label_aps[c][th] = average_precision(by_th[th], config)
        tp_curves = by_th[config.dist_th_tp_m]
        label_tp[c] = {
            m: float("nan") if is_undefined(c, m) else tp_error(tp_curves, config, m)
            for m in TP_METRICS
        }
    mean_dist_aps, mean_ap, tp_errors, tp_scores, nds = summarize(label_aps, label_tp, config)
    return DetectionMetricsSummary(
        label_aps=label_aps,
        mean_dist_aps=mean_dist_aps,
        mean_ap=mean_ap,
        label_tp_errors=label_tp,
        tp_errors=tp_errors,
        tp_scores=tp_scores,
        nd_score=nds,
        eval_time_s=time.time() - start,
        config=config,
        meta=dict(meta or {}),
        curves=curves,
        num_gt=num_gt,
        num_pred=num_pred,
    )


# Filtered ground truth by (database, samples, settings): the benchmark scores hundreds of
# cells of one split against the same annotations. EvalBoxSet columns are read-only, so the
# cells share them safely; the database itself is kept in the entry, so that a new database
# at a recycled id() is a miss.
_GT_CACHE: dict[tuple, tuple] = {}
_GT_CACHE_SIZE = 4


def _filtered_gt(
    nusc: NuScenes, sample_tokens: list[str], config: DetectionConfig
) -> tuple[EvalBoxSet, dict, np.ndarray]:
    """Ground truth of ``sample_tokens`` after the devkit's filters, its bike racks and the
    ego translations (cached, see ``_GT_CACHE``).
    """
    key = (id(nusc), tuple(sample_tokens), repr(config))
    hit = _GT_CACHE.get(key)
    if hit is not None and hit[0] is nusc:
        return hit[1]
    gt, racks = load_gt_and_bike_racks(nusc, sample_tokens)
    ego_gt = ego_translations(nusc, sample_tokens)
    ego_gt.setflags(write=False)
    value = (filter_boxes(nusc, gt, config, ego_gt, racks), racks, ego_gt)
    if len(_GT_CACHE) >= _GT_CACHE_SIZE:
        _GT_CACHE.pop(next(iter(_GT_CACHE)))
    _GT_CACHE[key] = (nusc, value)
    return value


def _load_filtered(
    nusc: NuScenes,
    results: dict | str | Path | EvalBoxSet,
    eval_set: str,
    config: DetectionConfig,
    verbose: bool,
) -> tuple[EvalBoxSet, EvalBoxSet, dict, list[str]]:
    """Ground truth and predictions of ``eval_set`` after the devkit's filters, the results'
    meta, and the split's sample tokens (see ``evaluate_detections`` for the errors).
    """
    if isinstance(results, EvalBoxSet):  # already columns (``results_boxes``): no meta
        pred, meta = results, dict[str, object]()
    else:
        pred, meta = load_results(results, config.max_boxes_per_sample, progress=verbose)
    sample_tokens = split_sample_tokens(nusc, eval_set)
    missing = set(sample_tokens) - set(pred.sample_tokens)
    extra = set(pred.sample_tokens) - set(sample_tokens)
    if missing or extra:
        raise ResultsFormatError(
            f"results do not cover split {eval_set!r} exactly: {len(missing)} of its "
            f"{len(sample_tokens)} samples missing (e.g. {sorted(missing)[:3]}), {len(extra)} "
            f"samples not in it (e.g. {sorted(extra)[:3]}); include every sample of the split, "
            "with an empty list where there is no detection"
        )
    gt, racks, ego_gt = _filtered_gt(nusc, sample_tokens, config)
    gt_id = {t: i for i, t in enumerate(sample_tokens)}
    pred_to_gt = np.array([gt_id[t] for t in pred.sample_tokens], np.int64)
    pred_racks = {}
    inverse = {g: i for i, g in enumerate(pred_to_gt.tolist())}
    for si, recs in racks.items():
        pred_racks[inverse[si]] = recs
    pred = filter_boxes(nusc, pred, config, ego_gt[pred_to_gt], pred_racks)
    return gt, pred, meta, sample_tokens


def evaluate_detections(
    nusc: NuScenes,
    results: dict | str | Path | EvalBoxSet,
    eval_set: str,
    config: DetectionConfig | None = None,
    verbose: bool = False,
) -> DetectionMetricsSummary:
    """The nuScenes detection metrics of a results file, equal to the devkit's ``DetectionEval``.

    Args:
        nusc: the loaded ``nuscenes.NuScenes`` database holding the ground truth.
        results: a results JSON path or its dict (``{"meta": ..., "results": ...}``), or its
            columns (``eval.detection.results.results_boxes``; the summary's meta is then
            empty); every sample of ``eval_set`` must be present (possibly with no boxes),
            no other sample.
        eval_set: predefined split name (``"val"``, ``"mini_val"``, ...) or a custom split
            defined in ``<dataroot>/<version>/splits.json`` (as nuscenes-devkit 1.2.0).
        config: scoring settings; the official ``detection_cvpr_2019`` when None.
        verbose: progress bars on stderr.

    Returns:
        Every number of ``metrics_summary.json`` plus the curves.

    Raises:
        ResultsFormatError: malformed results, wrong sample set, too many boxes per sample.

    """
    config = config or default_config()
    t0 = time.time()
    gt, pred, meta, sample_tokens = _load_filtered(nusc, results, eval_set, config, verbose)
    summary = evaluate_boxes(gt, pred, config, meta, verbose)
    if verbose:
        import sys

        print(
            f"evaluated {len(sample_tokens)} samples in {time.time() - t0:.2f} s", file=sys.stderr
        )
    return summary


def confusions_of(
    nusc: NuScenes, results: dict | str | Path, eval_set: str,
    config: DetectionConfig | None = None, radius_m: float = 2.0, min_score: float = 0.3,
) -> ConfusionTable:
    """Class confusions (``eval.detection.confusion``) of a results file on ``eval_set``,
    ground truth and predictions filtered as the devkit filters them.
    """
    gt, pred, _, _ = _load_filtered(nusc, results, eval_set, config or default_config(), False)
    return class_confusions(gt, pred, radius_m, min_score)


# The usual robustness breakdown: rain / night (/ fog, simulator only) vs the rest. The
# conditions come from the scene descriptions, parsed once (``sensors.scene_description``).
ADVERSE_CONDITIONS: tuple[Condition, ...] = (Condition.RAIN, Condition.NIGHT, Condition.FOG)
OTHER_CONDITION = "other"


def scene_conditions(
    nusc: NuScenes,
    sample_tokens: list[str],
    conditions: tuple[Condition, ...] = ADVERSE_CONDITIONS,
) -> dict[str, list[str]]:
    """Group samples by the driving conditions of their scene.

    A sample goes to every one of ``conditions`` its scene description names (a nuScenes
    scene can be rainy and at night), and to ``"other"`` when it names none of them (clear
    daylight); groups with no sample are left out.

    Args:
        nusc: the loaded database.
        sample_tokens: the samples to group.
        conditions: the conditions to give a group of their own.

    Returns:
        Group name (the condition's value, or "other") -> sample tokens, in
        ``sample_tokens`` order; ``conditions`` first, then "other".

    """
    tags = {s["token"]: parse_scene_description(s["description"]) for s in nusc.scene}
    groups: dict[str, list[str]] = {k: [] for k in (*(c.value for c in conditions),
                                                    OTHER_CONDITION)}
    for tok in sample_tokens:
        found = tags[nusc.get("sample", tok)["scene_token"]].conditions
        hits = [c.value for c in conditions if c in found]
        for k in hits or [OTHER_CONDITION]:
            groups[k].append(tok)
    return {k: v for k, v in groups.items() if v}


def _on_samples(boxes: EvalBoxSet, tokens: set[str]) -> EvalBoxSet:
    """The rows of ``boxes`` that belong to samples in ``tokens``."""
    keep = np.array([t in tokens for t in boxes.sample_tokens], dtype=bool)
    return boxes.subset(keep[boxes.sample_index])


def _condition_groups(
    nusc: NuScenes,
    gt: EvalBoxSet,
    pred: EvalBoxSet,
    meta: dict,
    sample_tokens: list[str],
    config: DetectionConfig,
    conditions: tuple[Condition, ...],
) -> dict[str, tuple[int, DetectionMetricsSummary]]:
    """Score already loaded and filtered boxes on each condition group of their samples."""
    groups = {}
    for name, tokens in scene_conditions(nusc, sample_tokens, conditions).items():
        wanted = set(tokens)
        groups[name] = (
            len(tokens),
            evaluate_boxes(_on_samples(gt, wanted), _on_samples(pred, wanted), config, meta),
        )
    return groups


def evaluate_with_conditions(
    nusc: NuScenes,
    results: dict | str | Path,
    eval_set: str,
    config: DetectionConfig | None = None,
    conditions: tuple[Condition, ...] = ADVERSE_CONDITIONS,
    verbose: bool = False,
) -> tuple[DetectionMetricsSummary, dict[str, tuple[int, DetectionMetricsSummary]]]:
    """The whole split's metrics and each condition group's (``evaluate_by_condition``), from
    one read and filtering of the results and the ground truth.
    """
    config = config or default_config()
    gt, pred, meta, sample_tokens = _load_filtered(nusc, results, eval_set, config, verbose)
    whole = evaluate_boxes(gt, pred, config, meta, verbose)
    return whole, _condition_groups(nusc, gt, pred, meta, sample_tokens, config, conditions)


def evaluate_by_condition(
    nusc: NuScenes,
    results: dict | str | Path,
    eval_set: str,
    config: DetectionConfig | None = None,
    conditions: tuple[Condition, ...] = ADVERSE_CONDITIONS,
    verbose: bool = False,
) -> dict[str, tuple[int, DetectionMetricsSummary]]:
    """The official metrics of ``results`` on each condition group of ``eval_set``.

    Each group is scored as if it were the whole split (as ``DetectionEval`` would score a
    split made of just those samples); the results file is read and filtered once, and the
    whole split is not scored (``evaluate_with_conditions`` gives both).

    Returns:
        Group name (see ``scene_conditions``) -> (number of samples, metrics summary).

    """
    config = config or default_config()
    gt, pred, meta, sample_tokens = _load_filtered(nusc, results, eval_set, config, verbose)
    return _condition_groups(nusc, gt, pred, meta, sample_tokens, config, conditions)


def write_metrics(summary: DetectionMetricsSummary, output_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics_summary.json`` and ``metrics_details.json`` (devkit layouts)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out / "metrics_summary.json",
        "details": out / "metrics_details.json",
    }
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    # orjson writes NaN as null; the devkit's json.dump writes NaN. Keep the devkit's spelling so
    # that files diff cleanly against the official tool.
    paths["summary"].write_text(_json_with_nan(summary.to_dict()))
    paths["details"].write_bytes(orjson.dumps(summary.details_dict(), option=opts))
    return paths


def read_metrics(output_dir: str | Path) -> DetectionMetricsSummary:
    """Read ``metrics_summary.json`` (and ``metrics_details.json`` when present) back.

    Works on the devkit's output folders too. Errors name the file and the field.
    """
    import json

    out = Path(output_dir)
    summary_path, details_path = out / "metrics_summary.json", out / "metrics_details.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: metrics summary not found")
    try:
        summary = json.loads(summary_path.read_text())  # json: reads NaN literals too
        details = json.loads(details_path.read_text()) if details_path.is_file() else None
        return DetectionMetricsSummary.from_dict(summary, details)
    except ValueError as e:
        raise ValueError(f"{summary_path} / {details_path.name}: {e}") from None


def _json_with_nan(obj: dict) -> str:
    import json

    return json.dumps(obj, indent=2)
