"""Class confusions: which class a model reports where a ground-truth object of another is.

For every ground-truth box that survives the devkit's filters, the highest-scoring
prediction of the same sample whose centre lies within ``radius_m`` (BEV) and whose score is
at least ``min_score`` decides: its class is counted against the object's (the diagonal:
correct), or the object is ``missed`` when there is none. Predictions pass the devkit's
filters too (class range, bike racks). This is a diagnostic beside the devkit's metrics, not
one of them: mAP already charges a confusion as a false positive plus a miss; this says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.detection.data import EvalBoxSet
from sensors.types import DETECTION_CLASSES

MISSED = "missed"


@dataclass(frozen=True)
class ConfusionTable:
    """counts[i, j]: objects of class i reported as class j; column 10 is ``missed``."""

    counts: np.ndarray
    radius_m: float
    min_score: float

    def objects(self, cls: str) -> int:
        """Ground-truth objects of ``cls``."""
        return int(self.counts[DETECTION_CLASSES.index(cls)].sum())

    def count(self, gt_cls: str, pred_cls: str) -> int:
        """Objects of ``gt_cls`` reported as ``pred_cls`` (or ``missed``)."""
        j = len(DETECTION_CLASSES) if pred_cls == MISSED else DETECTION_CLASSES.index(pred_cls)
        return int(self.counts[DETECTION_CLASSES.index(gt_cls), j])

    def top(self, n: int = 8) -> list[tuple[str, str, int, int]]:
        """The ``n`` largest off-diagonal confusions: (object class, reported class, count,
        objects of that class).
        """
        k = len(DETECTION_CLASSES)
        off = [(self.counts[i, j], i, j) for i in range(k) for j in range(k) if i != j]
        off.sort(key=lambda t: -t[0])
        return [(DETECTION_CLASSES[i], DETECTION_CLASSES[j], int(c), int(self.counts[i].sum()))
                for c, i, j in off[:n] if c > 0]

    def to_dict(self) -> dict:
        """JSON-ready: the matrix by class name and the settings."""
        cols = [*DETECTION_CLASSES, MISSED]
        return {
            "radius_m": self.radius_m,
            "min_score": self.min_score,
            "counts": {c: dict(zip(cols, map(int, row)))
                       for c, row in zip(DETECTION_CLASSES, self.counts)},
        }


def class_confusions(
    gt: EvalBoxSet, pred: EvalBoxSet, radius_m: float = 2.0, min_score: float = 0.3
) -> ConfusionTable:
    """The confusion counts of ``pred`` against ``gt`` (module docstring); predictions are
    matched to the ground truth's samples by token.
    """
    gt_id = {t: i for i, t in enumerate(gt.sample_tokens)}
    unknown = [t for t in pred.sample_tokens if t not in gt_id]
    if unknown:
        raise ValueError(f"class_confusions: predictions for samples without ground truth "
                         f"(e.g. {unknown[:3]})")
    k = len(DETECTION_CLASSES)
    counts = np.zeros((k, k + 1), np.int64)
    to_gt = np.array([gt_id[t] for t in pred.sample_tokens], np.int64)
    p_idx = np.flatnonzero(pred.score >= min_score)
    p_sample = to_gt[pred.sample_index[p_idx]]
    order = np.argsort(p_sample, kind="stable")
    p_idx, p_sample = p_idx[order], p_sample[order]
    starts = np.searchsorted(p_sample, np.arange(len(gt.sample_tokens) + 1))
    for g in range(len(gt.label)):
        si = gt.sample_index[g]
        cand = p_idx[starts[si]:starts[si + 1]]
        if len(cand):
            d = np.hypot(*(pred.translation[cand, :2] - gt.translation[g, :2]).T)
            cand = cand[d <= radius_m]
        if len(cand) == 0:
            counts[gt.label[g], k] += 1
            continue
        best = cand[np.argmax(pred.score[cand])]
        counts[gt.label[g], pred.label[best]] += 1
    return ConfusionTable(counts, radius_m, min_score)
