"""Greedy centre-distance matching of predictions to ground truth (one class at a time).

The official rule: predictions are visited in descending confidence (equal confidences: the
later box in file order first); each takes the nearest not yet taken ground-truth box of its
sample (equal distances: the earlier annotation), and is a true positive if that distance is
below the threshold. Visiting order couples samples only through the order itself, so the loop
is one pass over the predictions with the ground truth of each sample as a contiguous slice.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def confidence_order(scores: np.ndarray) -> np.ndarray:
    """Indices sorting ``scores`` descending; ties put the higher index first."""
    idx = np.arange(scores.shape[0])
    # lexsort: last key is primary. Ascending (score, index), then reversed.
    return np.lexsort((idx, scores))[::-1].copy()


def group_by_sample(sample_index: np.ndarray, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) row ranges per sample of rows grouped (sorted) by ``sample_index``."""
    counts = np.bincount(sample_index, minlength=num_samples)
    end = np.cumsum(counts).astype(np.int64)
    return end - counts, end


@njit(cache=True)
def greedy_match(
    order: np.ndarray,
    pred_sample: np.ndarray,
    pred_xy: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    gt_xy: np.ndarray,
    dist_th: float,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled; see greedy_match_reference
    """Match predictions to ground truth greedily by confidence.

    Args:
        order: (P,) int64 prediction rows in visiting (confidence) order.
        pred_sample: (P,) int64 sample id of each prediction row.
        pred_xy: (P, 2) float64 prediction centres.
        gt_start: (S,) int64 first ground-truth row of each sample id.
        gt_end: (S,) int64 one past the last ground-truth row of each sample id.
        gt_xy: (G, 2) float64 ground-truth centres, grouped by sample.
        dist_th: match if the nearest free ground truth is strictly closer than this (m).

    Returns:
        matched: (P,) int64 per visit rank, the ground-truth row taken, -1 for a false positive.
        dist: (P,) float64 per visit rank, centre distance of the match (NaN if none).

    """
    p_count = order.shape[0]
    matched = np.full(p_count, -1, np.int64)
    dist = np.full(p_count, np.nan)
    taken = np.zeros(gt_xy.shape[0], np.bool_)
    for r in range(p_count):
        p = order[r]
        s = pred_sample[p]
        best = np.inf
        best_j = -1
        px = pred_xy[p, 0]
        py = pred_xy[p, 1]
        for j in range(gt_start[s], gt_end[s]):
            if taken[j]:
                continue
            dx = px - gt_xy[j, 0]
            dy = py - gt_xy[j, 1]
            d = np.sqrt(dx * dx + dy * dy)
            if d < best:
                best = d
                best_j = j
        if best < dist_th:
            taken[best_j] = True
            matched[r] = best_j
            dist[r] = best
    return matched, dist


def greedy_match_reference(
    order: np.ndarray,
    pred_sample: np.ndarray,
    pred_xy: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    gt_xy: np.ndarray,
    dist_th: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy/Python version of :func:`greedy_match` (same arguments and results)."""
    matched = np.full(order.shape[0], -1, np.int64)
    dist = np.full(order.shape[0], np.nan)
    taken = np.zeros(gt_xy.shape[0], bool)
    for r, p in enumerate(order):
        s = pred_sample[p]
        rows = np.arange(gt_start[s], gt_end[s])
        rows = rows[~taken[rows]]
        if rows.size == 0:
            continue
        delta = pred_xy[p] - gt_xy[rows]
        d = np.sqrt(delta[:, 0] * delta[:, 0] + delta[:, 1] * delta[:, 1])
        k = int(np.argmin(d))  # first minimum: the earlier annotation wins a tie
        if d[k] < dist_th:
            taken[rows[k]] = True
            matched[r] = rows[k]
            dist[r] = d[k]
    return matched, dist
