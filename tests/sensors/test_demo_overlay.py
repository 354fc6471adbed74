from pathlib import Path

import numpy as np

from sensors.datasets.frame_json import load_frame_json
from sensors.types import CAMERA_CHANNELS
from sensors.visualize import lidar_overlays, project_to_view

REPO = Path(__file__).resolve().parents[2]


def test_frame_json_sample_projects_like_lidar2cam(frame_dir, frame, frame_lidar):
    """The SyncedSample of the real frame reproduces the README's per-camera counts.

    Its LiDAR is in the ego frame with ego-body returns removed, so project the raw sweep
    (moved to ego with lidar2ego) through each CameraView instead.
    """
    from calibration.se3 import SE3

    s = load_frame_json(frame_dir)
    assert s.lidar.frame == "ego" and s.camera_mask.all() and s.ultrasonic.derived
    assert len(s.boxes) == 68  # the one "ignore" box is not a detection class
    ego_pts = SE3.from_matrix(np.array(frame["lidar"]["lidar2ego"])).transform_points(
        frame_lidar.xyz.astype(np.float64)
    )
    counts = [len(project_to_view(ego_pts, v, min_depth_m=0.0)[1]) for v in s.cameras]
    assert counts == [3067, 3079, 3704, 4826, 4097, 3379]
    # Boxes moved to the ego frame still contain their annotated points.
    diff = np.abs(s.boxes.points_in_boxes(ego_pts).sum(1) - s.boxes.num_lidar_pts).sum()
    assert diff <= 35  # 29 in the LiDAR frame over all 69 boxes (README)


def test_overlays_draw_points(frame_dir):
    s = load_frame_json(frame_dir, image_reduction=4)
    over = lidar_overlays(s)
    assert list(over) == list(CAMERA_CHANNELS)
    for ch, view in zip(CAMERA_CHANNELS, s.cameras):
        assert over[ch].shape == view.image.image.shape
        changed = np.any(over[ch] != view.image.image, axis=2).mean()
        assert 0.05 < changed < 0.9, ch


def test_demo_writes_six_overlays(frame_dir, tmp_path):
    # The demo's first step, in-process (the rest of the demo generates a data set: too slow
    # for the unit tests).
    from eval.commands.demo import write_overlays  # `drivefuse demo`

    written = write_overlays(frame_dir, tmp_path)
    files = sorted(tmp_path.glob("overlay_*.jpg"))
    assert len(files) == 6 and sorted(written) == files
    for f in files:
        assert f.stat().st_size > 10_000


def test_draw_boxes_in_front_only():
    from calibration.sample import Boxes3D, CameraView
    from calibration.se3 import SE3
    from sensors.types import CameraImage
    from sensors.visualize import class_color, draw_boxes

    k = np.array([[100.0, 0, 99.5], [0, 100.0, 49.5], [0, 0, 1]])
    img = CameraImage(np.zeros((100, 200, 3), np.uint8), k, 0, "CAM_FRONT")
    # Camera looking along ego +x (camera z), x right = ego -y, y down = ego -z.
    ego_SE3_cam = SE3(np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]]), [0, 0, 0])
    view = CameraView(img, ego_SE3_cam)

    def boxes(x):
        return Boxes3D([[x, 0, 0]], [[2, 4, 2]], [0.0], [[0, 0]], [0], [1.0])

    ahead = draw_boxes(img.image, boxes(10.0), view, thickness_px=1)
    drawn = np.argwhere(ahead.any(axis=2))
    assert len(drawn) > 50
    colors = ahead[ahead.any(axis=2)]  # anti-aliased: full colour on the line centres
    assert (colors == class_color(0)).all(axis=1).sum() > 20
    # Box spans y in [-1, 1], x in [8, 12]: u in [99.5 - 12.5, 99.5 + 12.5] at most.
    assert drawn[:, 1].min() >= 86 and drawn[:, 1].max() <= 113
    behind = draw_boxes(img.image, boxes(-10.0), view)
    assert not behind.any()
