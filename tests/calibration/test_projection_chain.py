import numpy as np
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from calibration.projection import cam_SE3_lidar, lidar2img, ref_SE3_cam
from calibration.se3 import SE3


def _rand_pose(rng):
    q = Quaternion(rng.normal(size=4)).normalised
    t = rng.uniform(-500, 500, 3)
    return q, t, SE3.from_quaternion(q.elements, t)


def test_chain_matches_devkit_map_pointcloud_to_image_order():
    """The devkit's map_pointcloud_to_image applies, in order: lidar->ego(t_l), ego->global,
    global->ego(t_c), ego->camera. Rebuild those four matrices with the devkit's
    transform_matrix and compare."""
    rng = np.random.default_rng(0)
    (ql, tl, e_l), (qg, tg, g_l), (qc, tc, g_c), (qk, tk, e_c) = (_rand_pose(rng) for _ in range(4))
    ref = (
        transform_matrix(tk, qk, inverse=True)
        @ transform_matrix(tc, qc, inverse=True)
        @ transform_matrix(tg, qg)
        @ transform_matrix(tl, ql)
    )
    got = cam_SE3_lidar(e_l, g_l, g_c, e_c)
    np.testing.assert_allclose(got.as_matrix(), ref, atol=1e-9)
    k = np.array([[800.0, 0, 400], [0, 800, 225], [0, 0, 1]])
    l2i = lidar2img(k, got)
    np.testing.assert_allclose(l2i[:3, :3], k @ ref[:3, :3], atol=1e-7)
    np.testing.assert_allclose(l2i[3], [0, 0, 0, 1])
    # ref_SE3_cam is the same chain seen from the reference ego frame.
    ref_cam = ref_SE3_cam(g_l, g_c, e_c)
    np.testing.assert_allclose((ref_cam.inverse() @ e_l).as_matrix(), ref, atol=1e-9)
