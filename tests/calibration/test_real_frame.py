"""Known answers on the real nuScenes keyframe (../shared/data/nuscenes-frame/README.md)."""

import numpy as np
import pytest

from calibration.camera import PinholeCamera, project_points
from calibration.projection import cam_SE3_lidar, lidar2img, project_with_matrix
from calibration.sample import Boxes3D
from calibration.se3 import SE3
from sensors.readers import read_camera_image
from sensors.types import CAMERA_CHANNELS

IN_IMAGE = {
    "CAM_FRONT": 3067,
    "CAM_FRONT_RIGHT": 3079,
    "CAM_FRONT_LEFT": 3704,
    "CAM_BACK": 4826,
    "CAM_BACK_LEFT": 4097,
    "CAM_BACK_RIGHT": 3379,
}
# The README's "depth > 0" counts; they are reproduced with depth > 1 mm (a handful of points
# lie within a millimetre of each image plane, where the README's tool evidently used an epsilon).
IN_FRONT = {
    "CAM_FRONT": 12308,
    "CAM_FRONT_RIGHT": 12071,
    "CAM_FRONT_LEFT": 13446,
    "CAM_BACK": 11992,
    "CAM_BACK_LEFT": 14407,
    "CAM_BACK_RIGHT": 12514,
}


def _camera(frame, ch):
    c = frame["cameras"][ch]
    return PinholeCamera(np.array(c["intrinsics"]), c["width"], c["height"])


@pytest.mark.parametrize("channel", CAMERA_CHANNELS)
def test_projection_counts_per_camera(frame, frame_lidar, frame_matrices, channel):
    cam = _camera(frame, channel)
    cam_from_lidar = SE3.from_matrix(frame_matrices[channel]["lidar2cam"], channel)
    _, depth, valid = project_points(frame_lidar.xyz, cam, cam_from_lidar, min_depth_m=0.0)
    assert int(valid.sum()) == IN_IMAGE[channel]
    assert int((depth > 1e-3).sum()) == IN_FRONT[channel]
    # The same through the 4x4 lidar2img matrix (mmdetection3d's storage).
    proj = lidar2img(cam.intrinsics, cam_from_lidar)
    uv2, _, valid2 = project_with_matrix(frame_lidar.xyz, proj, cam.width, cam.height, 0.0)
    assert np.array_equal(valid, valid2)


def test_points_in_boxes_match_num_lidar_pts(frame, frame_lidar):
    boxes = frame["boxes"]
    n = len(boxes)
    assert n == 69
    b = Boxes3D(
        center_m=[x["center"] for x in boxes],
        wlh_m=[x["wlh"] for x in boxes],
        yaw_rad=[x["yaw"] for x in boxes],
        velocity_mps=[x["velocity"] for x in boxes],
        labels=np.zeros(n, np.int64),
        scores=np.ones(n),
    )
    counts = b.points_in_boxes(frame_lidar.xyz).sum(axis=1)
    expected = np.array([x["num_lidar_pts"] for x in boxes])
    assert int(np.abs(counts - expected).sum()) == 29
    # Reading z as the box bottom (a classic mmdet3d confusion) is clearly worse.
    shifted = Boxes3D(
        b.center_m + np.c_[np.zeros((n, 2)), b.wlh_m[:, 2] / 2],
        b.wlh_m,
        b.yaw_rad,
        b.velocity_mps,
        b.labels,
        b.scores,
    )
    assert int(np.abs(shifted.points_in_boxes(frame_lidar.xyz).sum(1) - expected).sum()) == 537


def test_points_within_one_metre(frame_lidar):
    assert int((np.linalg.norm(frame_lidar.xyz, axis=1) < 1.0).sum()) == 8029


def test_lidar2cam_is_the_motion_compensated_chain(frame, frame_matrices):
    """frame.json's lidar2cam = our chain with the ego moving at one constant velocity.

    The ego displacement between the LiDAR and each camera time is recovered per camera and
    must be one velocity for all six; rebuilding lidar2cam with ``cam_SE3_lidar`` from that
    single velocity must reproduce every camera's matrix to a centimetre. Getting the chain
    order or a direction wrong gives errors of ~0.3-0.8 m.
    """
    ego_SE3_lidar = SE3.from_matrix(np.array(frame["lidar"]["lidar2ego"]), "LIDAR_TOP")
    global_SE3_ego_l = SE3.from_matrix(np.array(frame["ego2global"]), "ego2global")
    t_lidar = frame["lidar"]["timestamp_us"]
    dts, disps = [], []
    for ch, m in frame_matrices.items():
        rel = m["cam2ego"] @ m["lidar2cam"] @ np.linalg.inv(ego_SE3_lidar.as_matrix())
        dts.append((frame["cameras"][ch]["timestamp_us"] - t_lidar) * 1e-6)
        disps.append(rel[:3, 3])
    dts, disps = np.array(dts), np.array(disps)
    # rel maps ego@t_lidar to ego@t_cam: the displacement is -v * dt (ego frame).
    v = -np.linalg.lstsq(dts[:, None], disps, rcond=None)[0][0]
    assert 9.0 < v[0] < 9.5 and abs(v[1]) < 0.2
    for ch, m in frame_matrices.items():
        dt = (frame["cameras"][ch]["timestamp_us"] - t_lidar) * 1e-6
        global_SE3_ego_c = global_SE3_ego_l @ SE3(np.eye(3), v * dt)
        ego_SE3_cam = SE3.from_matrix(m["cam2ego"], ch)
        got = cam_SE3_lidar(ego_SE3_lidar, global_SE3_ego_l, global_SE3_ego_c, ego_SE3_cam)
        assert np.abs(got.translation - m["lidar2cam"][:3, 3]).max() < 0.01, ch
        # Rotation: the ego also pitches slightly in 40 ms (not in a constant-velocity model).
        assert np.abs(got.rotation - m["lidar2cam"][:3, :3]).max() < 3e-3, ch
        static = ego_SE3_cam.inverse() @ ego_SE3_lidar
        if abs(dt) > 0.02:
            assert np.abs(static.translation - m["lidar2cam"][:3, 3]).max() > 0.15, ch


@pytest.mark.parametrize("reduction", [2, 4, 8])
def test_reduced_decode_projections_are_scaled(
    frame_dir, frame, frame_lidar, frame_matrices, reduction
):
    ch = "CAM_FRONT"
    c = frame["cameras"][ch]
    full = read_camera_image(frame_dir / c["file"], np.array(c["intrinsics"]), ch, 0, 1)
    red = read_camera_image(frame_dir / c["file"], np.array(c["intrinsics"]), ch, 0, reduction)
    assert red.height == -(-full.height // reduction) and red.width == -(-full.width // reduction)
    assert red.scale == 1 / reduction
    cam_from_lidar = SE3.from_matrix(frame_matrices[ch]["lidar2cam"], ch)
    cam_full = PinholeCamera(full.intrinsics, full.width, full.height)
    cam_red = PinholeCamera(red.intrinsics, red.width, red.height)
    uv_f, _, valid_f = project_points(frame_lidar.xyz, cam_full, cam_from_lidar)
    uv_r, _, valid_r = project_points(frame_lidar.xyz, cam_red, cam_from_lidar)
    ok = valid_f
    # Exactly the pixel-centre rule, and within half a reduced pixel of "full / r".
    np.testing.assert_allclose(uv_r[ok], (uv_f[ok] + 0.5) / reduction - 0.5, atol=1e-9)
    assert np.abs(uv_r[ok] - uv_f[ok] / reduction).max() <= 0.5
    # Only points within one reduced pixel (r full pixels) of the border may change in/out
    # status: the reduced grid covers ceil(W/r)*r full pixels, shifted by (r-1)/2.
    changed = valid_f != valid_r
    u, v = uv_f[changed, 0], uv_f[changed, 1]
    margin = np.minimum.reduce(
        [
            u,
            v,
            full.width - u,
            full.height - v,
        ]
    )
    assert np.all(np.abs(margin) <= reduction)
    # PinholeCamera.scaled gives the same camera.
    np.testing.assert_allclose(cam_full.scaled(reduction).intrinsics, red.intrinsics)


@pytest.mark.parametrize("reduction", [2, 4])
def test_reduced_decode_pixel_grid_is_centre_aligned(frame_dir, frame, reduction):
    """libjpeg's reduced pixels are block averages centred at r*i + (r-1)/2 (our K rule).

    Model the reduced image from the full one under our convention and under the naive
    "u/r" convention; ours must fit the decoded image clearly better.
    """
    import cv2

    ch = "CAM_FRONT"
    c = frame["cameras"][ch]
    full = read_camera_image(frame_dir / c["file"], np.eye(3), ch, 0, 1).image.astype(np.float32)
    red = read_camera_image(frame_dir / c["file"], np.eye(3), ch, 0, reduction).image
    red = red.astype(np.float32)
    h, w = red.shape[:2]
    # Box average over r x r centred on each full-resolution pixel position (float32 exact).
    box = cv2.boxFilter(
        full,
        -1,
        (reduction, reduction),
        anchor=(0, 0),
        normalize=True,
        borderType=cv2.BORDER_REPLICATE,
    )
    jj, ii = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def err(offset):
        # anchor=(0, 0) makes box[y, x] the block starting at (x, y): sample its start.
        mx, my = reduction * jj + offset, reduction * ii + offset
        pred = cv2.remap(box, mx, my, cv2.INTER_LINEAR)
        return float(np.mean((pred[2:-2, 2:-2] - red[2:-2, 2:-2]) ** 2))

    ours = err(0.0)  # block r*i .. r*i+r-1, centre r*i + (r-1)/2
    naive = err(-(reduction - 1) / 2)  # centre at r*i
    assert ours < 0.7 * naive
