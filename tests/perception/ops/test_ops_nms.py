import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.ops.nms import circle_nms, circle_nms_reference


def test_known_answer():
    centers = np.array([[0, 0], [0.5, 0], [3, 0], [3.9, 0], [10, 10], [0, 1.0]], np.float32)
    scores = np.array([0.5, 0.9, 0.3, 0.8, 0.1, 0.7])
    keep = circle_nms(centers, scores, radius_m=1.0)
    # 1 (0.9) suppresses 0 (d=0.5) and 5 (d=1.118 > 1: kept); 3 (0.8) suppresses 2 (d=0.9).
    np.testing.assert_array_equal(keep, [1, 3, 5, 4])
    assert keep.dtype == np.int64
    # Distance exactly equal to the radius is suppressed.
    np.testing.assert_array_equal(circle_nms([[0, 0], [1, 0]], [1.0, 0.5], 1.0), [0])


def test_ties_nan_empty():
    np.testing.assert_array_equal(circle_nms([[0, 0], [5, 0], [0.1, 0]], [0.5, 0.5, 0.5], 1.0),
                                  [0, 1])
    keep = circle_nms([[0, 0], [0.1, 0], [np.nan, 0]], [np.nan, 0.2, 0.9], 1.0)
    np.testing.assert_array_equal(keep, [1])
    assert circle_nms(np.zeros((0, 2)), np.zeros(0), 1.0).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400),
       radius=st.sampled_from([0.0, 0.5, 1.0, 4.0]))
def test_random_matches_reference(seed, n, radius):
    rng = np.random.default_rng(seed)
    centers = np.round(rng.uniform(-10, 10, (n, 2)) * 2) / 2  # many exact-radius distances
    scores = np.round(rng.random(n), 1)  # many ties
    keep = circle_nms(centers, scores, radius)
    np.testing.assert_array_equal(keep, circle_nms_reference(centers, scores, radius))
    assert np.all(np.diff(scores[keep]) <= 0)
    d2 = ((centers[keep, None] - centers[None, keep]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    assert np.all(d2 > radius**2)
