"""The Numba greedy matcher against its plain reference, and the devkit's sort tie rule."""

from __future__ import annotations

import numpy as np
import pytest

from eval.detection.matching import (
    confidence_order,
    greedy_match,
    greedy_match_reference,
    group_by_sample,
)
from eval.detection.metrics import angle_diff, cummean, quaternion_yaw


def test_confidence_order_breaks_ties_like_the_devkit():
    rng = np.random.default_rng(0)
    scores = rng.choice([0.1, 0.5, 0.5, 0.9, 0.0], 500)
    # The official evaluation sorts (score, index) pairs ascending and reverses the list.
    devkit = [i for (v, i) in sorted((v, i) for (i, v) in enumerate(scores.tolist()))][::-1]
    assert confidence_order(scores).tolist() == devkit


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dist_th", [0.5, 2.0, 4.0])
def test_numba_matcher_equals_reference(seed, dist_th):
    rng = np.random.default_rng(seed)
    num_samples = 30
    gt_sample = np.sort(rng.integers(0, num_samples, 400))
    # Integer grid positions: many exactly equal distances and distances exactly at threshold.
    gt_xy = rng.integers(0, 8, (400, 2)).astype(float)
    pred_sample = rng.integers(0, num_samples, 700)
    pred_xy = rng.integers(0, 8, (700, 2)).astype(float) + rng.choice([0, 0.5], (700, 2))
    scores = rng.choice([0.2, 0.4, 0.6], 700)
    order = confidence_order(scores)
    start, end = group_by_sample(gt_sample, num_samples)
    a = greedy_match(order, pred_sample, pred_xy, start, end, gt_xy, dist_th)
    b = greedy_match_reference(order, pred_sample, pred_xy, start, end, gt_xy, dist_th)
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[1], b[1], equal_nan=True)
    matched = a[0][a[0] >= 0]
    assert matched.size == np.unique(matched).size  # a ground truth is taken at most once
    assert np.all(a[1][a[0] >= 0] < dist_th)


def test_quaternion_yaw_and_barrier_period():
    from nuscenes.eval.common.utils import angle_diff as dk_angle_diff
    from nuscenes.eval.common.utils import quaternion_yaw as dk_yaw
    from pyquaternion import Quaternion

    rng = np.random.default_rng(1)
    q = rng.normal(size=(200, 4))
    ours = quaternion_yaw(q)
    ref = np.array([dk_yaw(Quaternion(x)) for x in q])
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    a, b = rng.uniform(-7, 7, 200), rng.uniform(-7, 7, 200)
    for period in (np.pi, 2 * np.pi):
        ref = np.array([dk_angle_diff(x, y, period) for x, y in zip(a, b)])
        np.testing.assert_allclose(angle_diff(a, b, period), ref, atol=1e-12)


def test_cummean_nan_rules():
    assert cummean(np.array([np.nan, np.nan])).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(cummean(np.array([np.nan, 1.0, np.nan, 3.0])), [0, 1, 1, 2])
