"""LiDAR depth supervision of the camera lift: targets and loss."""

from __future__ import annotations

import numpy as np
import torch

from perception.backbones.camera_inputs import lidar_depth_target
from perception.heads.losses import depth_loss

# A camera at the ego origin looking along +x (camera z = ego x, camera x = -ego y,
# camera y = -ego z), K with f = 10 feature pixels and the principal point at (4, 3) on an
# 8 x 6 feature map.
_K = np.array([[10.0, 0.0, 4.0], [0.0, 10.0, 3.0], [0.0, 0.0, 1.0]])
_CAM_FROM_EGO = np.array(
    [[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
)
_PROJ = (_K @ _CAM_FROM_EGO)[None].astype(np.float32)  # (1, 3, 4)
_BINS = (2.0, 50.0, 25)  # centres every 2 m


def _pts(rows):
    return np.array(rows, np.float32).reshape(-1, 5)


def test_nearest_current_return_per_pixel_gives_the_bin():
    pts = _pts([
        [10.0, 0.0, 0.0, 1.0, 0.0],  # pixel (row 3, col 4), 10 m -> bin 4
        [30.0, 0.0, 0.0, 1.0, 0.0],  # same pixel, behind it: hidden
        [20.0, 0.0, 0.0, 1.0, 0.05],  # same pixel, nearer than 30 m but an older sweep
        [20.0, -6.0, 0.0, 1.0, 0.0],  # u = 4 + 10 * 6 / 20 = 7 -> col 7, 20 m -> bin 9
        [60.0, 0.0, 1.0, 1.0, 0.0],  # beyond the last bin (+ half a bin): left out
        [-5.0, 0.0, 0.0, 1.0, 0.0],  # behind the camera
    ])
    t = lidar_depth_target(pts, _PROJ, np.array([True]), (6, 8), _BINS)
    assert t.shape == (1, 6, 8)
    assert t[0, 3, 4] == 4
    assert t[0, 3, 7] == 9
    assert (t >= 0).sum() == 2


def test_bin_edges_round_to_the_nearest_centre_and_masked_cameras_get_nothing():
    pts = _pts([
        [2.9, 0.0, 0.0, 1.0, 0.0],
        [50.9, -10.0, 0.0, 1.0, 0.0],  # u = 4 + 100 / 50.9 -> col 5
        [51.5, 0.0, -20.0, 1.0, 0.0],  # v = 3 + 200 / 51.5 -> row 6 (off the map anyway)
    ])
    t = lidar_depth_target(pts, _PROJ, np.array([True]), (6, 8), _BINS)
    assert t[0, 3, 4] == 0  # 2.9 m is nearer the 2 m centre than the 4 m one
    assert t[0, 3, 5] == 24  # 50.9 m: the last (50 m) bin
    assert (t >= 0).sum() == 2
    none = lidar_depth_target(pts, _PROJ, np.array([False]), (6, 8), _BINS)
    assert (none == -1).all()


def test_depth_loss_ignores_unsupervised_pixels_and_pulls_towards_the_target():
    logits = torch.zeros(1, 1, 5, 2, 2, requires_grad=True)
    target = torch.full((1, 1, 2, 2), -1, dtype=torch.int64)
    target[0, 0, 1, 1] = 3
    loss = depth_loss(logits, target)
    assert abs(float(loss) - np.log(5)) < 1e-6
    loss.backward()
    g = logits.grad[0, 0]
    assert torch.all(g[:, 0, 0] == 0) and torch.all(g[:, 0, 1] == 0)
    assert g[3, 1, 1] < 0 and torch.all(g[[0, 1, 2, 4], 1, 1] > 0)
    empty = depth_loss(logits, torch.full_like(target, -1))
    assert float(empty) == 0.0
