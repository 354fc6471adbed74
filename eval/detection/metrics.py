"""From matches to curves, AP, TP errors, mAP and NDS (the official definitions)."""

from __future__ import annotations

import numpy as np

from eval.detection.config import (
    CURVE_POINTS,
    HALF_PERIOD_YAW_CLASSES,
    TP_METRICS,
    UNDEFINED_TP_METRICS,
    DetectionConfig,
)
from eval.detection.data import MetricCurves


def quaternion_yaw(q_wxyz: np.ndarray) -> np.ndarray:
    """(N,) heading of the rotated x axis in the xy-plane, for (N, 4) quaternions (w, x, y, z).

    Uses the homogeneous form of the rotation matrix entries, so a non-unit quaternion gives
    the heading of its normalised rotation.
    """
    w, x, y, z = q_wxyz[:, 0], q_wxyz[:, 1], q_wxyz[:, 2], q_wxyz[:, 3]
    r00 = w * w + x * x - y * y - z * z
    r10 = 2.0 * (x * y + w * z)
    return np.arctan2(r10, r00)


def angle_diff(to_rad: np.ndarray, from_rad: np.ndarray, period: float) -> np.ndarray:
    """Signed smallest difference ``to - from`` modulo ``period``, in [-period/2, period/2)."""
    diff = (to_rad - from_rad + period / 2) % period - period / 2
    return np.where(diff > np.pi, diff - 2 * np.pi, diff)


def cummean(x: np.ndarray) -> np.ndarray:
    """Running mean ignoring NaN; all ones when every value is NaN (no information)."""
    nan = np.isnan(x)
    if nan.all():
        return np.ones(x.shape[0])
    sums = np.nancumsum(x.astype(float))
    counts = np.cumsum(~nan)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


def match_errors(
    class_name: str,
    gt_size: np.ndarray,
    gt_yaw: np.ndarray,
    gt_velocity: np.ndarray,
    gt_attribute: np.ndarray,
    pred_size: np.ndarray,
    pred_yaw: np.ndarray,
    pred_velocity: np.ndarray,
    pred_attribute: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per matched pair (rows aligned): scale, orientation, velocity and attribute errors."""
    if np.any(gt_size <= 0) or np.any(pred_size <= 0):
        raise ValueError(f"{class_name}: a matched box has a size <= 0; sizes must be positive")
    inter = np.minimum(gt_size, pred_size)
    vol_gt = gt_size[:, 0] * gt_size[:, 1] * gt_size[:, 2]
    vol_pred = pred_size[:, 0] * pred_size[:, 1] * pred_size[:, 2]
    vol_inter = inter[:, 0] * inter[:, 1] * inter[:, 2]
    iou = vol_inter / (vol_gt + vol_pred - vol_inter)
    period = np.pi if class_name in HALF_PERIOD_YAW_CLASSES else 2 * np.pi
    dv = pred_velocity - gt_velocity
    # Attribute accuracy is undefined (NaN, skipped by the running mean) when the ground truth
    # has no attribute.
    attr_err = np.where(gt_attribute < 0, np.nan, (gt_attribute != pred_attribute).astype(float))
    return {
        "scale_err": 1 - iou,
        "orient_err": np.abs(angle_diff(gt_yaw, pred_yaw, period)),
        "vel_err": np.sqrt(dv[:, 0] * dv[:, 0] + dv[:, 1] * dv[:, 1]),
        "attr_err": attr_err,
    }


def curves_from_matches(
    num_gt: int,
    scores_in_order: np.ndarray,
    is_tp: np.ndarray,
    errors: dict[str, np.ndarray],
) -> MetricCurves:
    """Precision/recall and TP-error curves resampled at recall 0, 0.01, .., 1.

    Args:
        num_gt: ground-truth boxes of the class (after filtering).
        scores_in_order: (P,) prediction confidences in visiting order.
        is_tp: (P,) bool, true positive at each visit rank.
        errors: TP metric -> (K,) error of each match in visiting order (K = is_tp.sum()),
            ``trans_err`` included.

    """
    if num_gt == 0 or not is_tp.any():
        return MetricCurves.no_predictions()
    tp = np.cumsum(is_tp.astype(np.int64)).astype(float)
    fp = np.cumsum((~is_tp).astype(np.int64)).astype(float)
    precision = tp / (fp + tp)
    recall = tp / float(num_gt)
    recall_grid = np.linspace(0, 1, CURVE_POINTS)
    precision_i = np.interp(recall_grid, recall, precision, right=0)
    confidence_i = np.interp(recall_grid, recall, scores_in_order, right=0)
    match_conf = scores_in_order[is_tp]
    # Errors are running means over matches in confidence order, read off at the confidence
    # reaching each recall (interpolation needs ascending x, hence the reversals).
    resampled = {
        name: np.interp(confidence_i[::-1], match_conf[::-1], cummean(errors[name])[::-1])[::-1]
        for name in TP_METRICS
    }
    return MetricCurves(recall_grid, precision_i, confidence_i, **resampled)


def average_precision(curves: MetricCurves, config: DetectionConfig) -> float:
    """AP: mean precision above min recall, less min precision (clipped at 0), normalised."""
    prec = curves.precision[config.first_curve_index :] - config.min_precision
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - config.min_precision)


def tp_error(curves: MetricCurves, config: DetectionConfig, metric: str) -> float:
    """Mean error over the curve from just above min recall up to the highest recall reached.

    1.0 when the class never gets past min recall.
    """
    first = config.first_curve_index
    last = curves.max_recall_index
    if last < first:
        return 1.0
    return float(np.mean(getattr(curves, metric)[first : last + 1]))


def summarize(
    label_aps: dict[str, dict[float, float]],
    label_tp_errors: dict[str, dict[str, float]],
    config: DetectionConfig,
) -> tuple[dict[str, float], float, dict[str, float], dict[str, float], float]:
    """(mean_dist_aps, mAP, tp_errors, tp_scores, NDS) from the per-class numbers."""
    mean_dist_aps = {c: float(np.mean(list(label_aps[c].values()))) for c in label_aps}
    mean_ap = float(np.mean(list(mean_dist_aps.values())))
    tp_errors = {}
    for metric in TP_METRICS:
        values = [label_tp_errors[c][metric] for c in config.class_names]
        finite = [v for v in values if not np.isnan(v)]
        # nanmean without the all-NaN RuntimeWarning; same value.
        tp_errors[metric] = float(np.nanmean(values)) if finite else float("nan")
    tp_scores = {m: max(0.0, 1.0 - tp_errors[m]) for m in TP_METRICS}
    total = float(config.mean_ap_weight * mean_ap + np.sum(list(tp_scores.values())))
    nds = total / float(config.mean_ap_weight + len(tp_scores))
    return mean_dist_aps, mean_ap, tp_errors, tp_scores, nds


def is_undefined(class_name: str, metric: str) -> bool:
    """True where a TP metric does not apply to a class (reported as NaN)."""
    return metric in UNDEFINED_TP_METRICS.get(class_name, frozenset())
