import numpy as np

from calibration.sample import Boxes3D


def _boxes(num_lidar_pts):
    n = 3
    return Boxes3D(
        center_m=np.arange(n * 3, dtype=np.float64).reshape(n, 3),
        wlh_m=np.ones((n, 3)),
        yaw_rad=np.array([0.1, 0.2, 0.3]),
        velocity_mps=np.zeros((n, 2)),
        labels=np.array([0, 1, 2]),
        scores=np.array([0.9, 0.5, 0.7]),
        attributes=("a", "b", "c"),
        num_lidar_pts=num_lidar_pts,
        instance_tokens=("t0", "t1", "t2"),
    )


def test_subset_keeps_rows_in_index_order_with_their_point_counts():
    sub = _boxes(np.array([5, 6, 7])).subset(np.array([2, 0]))
    np.testing.assert_array_equal(sub.center_m[:, 0], [6.0, 0.0])
    np.testing.assert_array_equal(sub.num_lidar_pts, [7, 5])
    assert sub.attributes == ("c", "a") and sub.instance_tokens == ("t2", "t0")


def test_subset_of_boxes_without_point_counts_keeps_them_unknown():
    # Predictions carry no point counts: they are -1 (unknown), also after a selection.
    sub = _boxes(None).subset(np.array([False, True, True]))
    np.testing.assert_array_equal(sub.num_lidar_pts, [-1, -1])
    np.testing.assert_array_equal(sub.scores, [0.5, 0.7])
