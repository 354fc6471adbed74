"""Crop geometry: windows against an independent projection (real nuScenes keyframe and a
synthetic rig), unseen boxes skipped, and the pixels a crop samples."""

from dataclasses import replace

import numpy as np
import pytest

from calibration.sample import Boxes3D
from perception.config import RefineConfig
from perception.refine.crops import choose_windows, extract_crops
from sensors.datasets.frame_json import load_frame_json
from sensors.synthetic_sample import make_sample
from sensors.types import CAMERA_CHANNELS

CFG = RefineConfig()


def _project(k: np.ndarray, ego2cam: np.ndarray, pts_ego: np.ndarray) -> tuple:
    """Plain pinhole projection, written apart from the module under test."""
    p = np.c_[pts_ego, np.ones(len(pts_ego))] @ ego2cam.T
    uvw = p[:, :3] @ k.T
    return uvw[:, :2] / uvw[:, 2:3], p[:, 2]


@pytest.fixture(scope="module")
def real_sample(frame_dir):
    return load_frame_json(frame_dir, image_reduction=2)  # 800x450, the refiner's source


def test_real_frame_windows_contain_projected_corners(real_sample, frame, frame_matrices):
    boxes = real_sample.boxes
    lidar2ego = np.array(frame["lidar"]["lidar2ego"])
    camera, window = choose_windows(boxes, real_sample, CFG)
    seen = np.flatnonzero(camera >= 0)
    assert len(seen) >= 60  # 68 boxes around the car; a few straddle the ring's gaps
    checked = 0
    for i in seen:
        ch = CAMERA_CHANNELS[camera[i]]
        m = frame_matrices[ch]
        # The sample's ego frame is the ego at the LiDAR time: ego -> LiDAR -> camera with the
        # frame's motion-compensated lidar2cam; its full-resolution K (1600x900), and a 1/2
        # decode keeps pixel centres aligned.
        ego2cam = m["lidar2cam"] @ np.linalg.inv(lidar2ego)
        uv_full, depth = _project(m["intrinsics"], ego2cam, boxes.corners()[i])
        uv = (uv_full + 0.5) / 2 - 0.5
        front = depth > 0.1
        u0, v0, side = window[i]
        assert side >= CFG.min_window_px
        inside = ((uv[front, 0] >= u0 - 1e-6) & (uv[front, 0] <= u0 + side + 1e-6)
                  & (uv[front, 1] >= v0 - 1e-6) & (uv[front, 1] <= v0 + side + 1e-6))
        assert inside.all(), (i, ch, uv[front], window[i])
        # ...centred on their bounding rectangle, (1 + margin) times its larger side.
        lo, hi = uv[front].min(axis=0), uv[front].max(axis=0)
        assert np.allclose([u0 + side / 2, v0 + side / 2], (lo + hi) / 2, atol=1e-3)
        want_side = max((hi - lo).max() * (1 + CFG.margin), CFG.min_window_px)
        assert side == pytest.approx(min(want_side, 1600.0), rel=1e-5)
        # The centre is in front of the chosen camera and inside its image.
        cuv_full, cdepth = _project(m["intrinsics"], ego2cam, boxes.center_m[i:i + 1])
        cuv = (cuv_full[0] + 0.5) / 2 - 0.5
        assert cdepth[0] > 0.5 and 0 <= cuv[0] < 800 and 0 <= cuv[1] < 450
        checked += 1
    crops = extract_crops(boxes, real_sample, CFG)
    assert len(crops) == checked and crops.crops.shape[1:] == (32, 32, 3)
    # Real objects are not black: every crop samples image pixels.
    assert (crops.crops.reshape(len(crops), -1).max(axis=1) > 0).all()


def test_real_frame_box_behind_every_camera_is_skipped(real_sample):
    # Straight above the roof (every camera looks sideways or along the ground) and at the
    # ego origin itself: no camera has its centre in front and inside its image.
    unseen = Boxes3D([[0.0, 0.0, 40.0], [0.5, 0.0, 1.0]], [[0.6, 0.6, 1.7]] * 2, [0.0, 0.0],
                     np.zeros((2, 2)), [8, 8], [0.5, 0.5])
    camera, window = choose_windows(unseen, real_sample, CFG)
    assert (camera == -1).all() and np.isnan(window).all()
    assert len(extract_crops(unseen, real_sample, CFG)) == 0


def test_no_cameras_no_crops():
    s = make_sample(0)
    blind = replace(s, cameras=(None,) * 6)
    assert len(extract_crops(s.boxes, blind, CFG)) == 0
    camera, _ = choose_windows(s.boxes, blind, CFG)
    assert (camera == -1).all()


def test_front_camera_is_chosen_for_a_box_ahead_and_window_scales_with_range():
    s = make_sample(0, image_hw=(450, 800))
    # The front camera sits at x = 1.5 m: near faces 9.7 m and 39.7 m ahead of it.
    near = Boxes3D([[11.5, 0.0, 1.5], [41.5, 0.0, 1.5]], [[0.6, 0.6, 1.7]] * 2, [0.0, 0.0],
                   np.zeros((2, 2)), [8, 8], [0.9, 0.9])
    camera, window = choose_windows(near, s, CFG)
    assert (camera == 0).all()  # CAM_FRONT looks along +x
    # A pinhole window (the box's height at its near face) shrinks as 1 / depth.
    assert window[0, 2] / window[1, 2] == pytest.approx(39.7 / 9.7, rel=0.02)


@pytest.mark.parametrize("x_m, size_m", [(12.0, 1.5), (40.0, 0.5)])  # shrunk / enlarged
def test_crop_samples_the_window_pixels(x_m, size_m):
    """Columns of a horizontal ramp image: the crop's columns must read the window's span."""
    s = make_sample(0, image_hw=(450, 800))
    ramp = np.broadcast_to((np.arange(800) // 4).astype(np.uint8)[None, :, None],
                           (450, 800, 3)).copy()
    views = list(s.cameras)
    views[0] = replace(views[0], image=replace(views[0].image, image=ramp))
    s = replace(s, cameras=tuple(views))
    box = Boxes3D([[x_m, 1.0, 0.0]], [[size_m] * 3], [0.0], np.zeros((1, 2)), [0], [0.9])
    crops = extract_crops(box, s, CFG)
    assert len(crops) == 1 and crops.camera[0] == 0
    u0, v0, side = crops.window_px[0]
    assert u0 > 0 and v0 > 0 and u0 + side < 800 and v0 + side < 450  # inside the image
    got = crops.crops[0, 16, :, 0].astype(float) * 4  # ramp value -> source column
    # Crop pixel j averages source columns around u0 + (j + 0.5) * side / 32; the ramp's
    # 4-column steps read 1.5 columns low on average.
    want = u0 + (np.arange(32) + 0.5) * side / 32 - 1.5
    assert np.abs(got - want).max() <= 2.6


def test_window_pixels_outside_the_image_are_zero():
    s = make_sample(0, image_hw=(450, 800))
    white = [replace(v, image=replace(v.image, image=np.full((450, 800, 3), 255, np.uint8)))
             for v in s.cameras]
    s = replace(s, cameras=tuple(white))
    # A 5 m tall box 6 m ahead of the camera (at its height): its ~500 px window runs past
    # the top and the bottom of the 450 px image, not past its sides.
    box = Boxes3D([[8.0, 0.0, 1.5]], [[1.0, 1.0, 5.0]], [0.0], np.zeros((1, 2)), [0], [0.9])
    crops = extract_crops(box, s, CFG)
    assert len(crops) == 1
    u0, v0, side = crops.window_px[0]
    assert v0 < 0 and v0 + side > 450
    assert 0 <= u0 and u0 + side <= 800
    col = crops.crops[0, :, 16, 0]
    assert col[0] == 0 and col[-1] == 0 and col[16] == 255
    assert (crops.crops[0, 16, :, 0] == 255).all()
