"""Camera projection with ego motion folded in, the nuScenes way.

A camera fires at its own timestamp, up to ~40 ms away from the LiDAR sweep; at 15 m/s the
ego moves 0.6 m in that time. nuScenes (and BEVFusion/BEVDet after it) therefore chains
LiDAR -> ego at t_lidar -> global -> ego at t_cam -> camera instead of using the static
extrinsics alone.
"""

from __future__ import annotations

import numpy as np

from calibration.se3 import SE3


def ref_SE3_cam(  # noqa: N802 - frame naming convention
    global_SE3_ego_ref: SE3,  # noqa: N803
    global_SE3_ego_cam: SE3,  # noqa: N803
    ego_SE3_cam: SE3,  # noqa: N803
) -> SE3:
    """Camera frame at the camera's time -> ego frame at the reference (LiDAR) time.

    Args:
        global_SE3_ego_ref: ego pose at the reference timestamp.
        global_SE3_ego_cam: ego pose at the camera timestamp.
        ego_SE3_cam: camera extrinsics.

    """
    return global_SE3_ego_ref.inverse() @ global_SE3_ego_cam @ ego_SE3_cam


def cam_SE3_lidar(  # noqa: N802 - frame naming convention
    ego_SE3_lidar: SE3,  # noqa: N803
    global_SE3_ego_lidar: SE3,  # noqa: N803
    global_SE3_ego_cam: SE3,  # noqa: N803
    ego_SE3_cam: SE3,  # noqa: N803
) -> SE3:
    """LiDAR frame at t_lidar -> camera frame at t_cam (nuScenes' ``lidar2cam``)."""
    return (
        ego_SE3_cam.inverse() @ global_SE3_ego_cam.inverse() @ global_SE3_ego_lidar @ ego_SE3_lidar
    )


def lidar2img(intrinsics: np.ndarray, cam_from_lidar: SE3) -> np.ndarray:
    """(4, 4) float64 ``lidar2img = K4 @ lidar2cam`` as mmdetection3d/BEVFusion store it.

    ``K4`` is ``intrinsics`` padded to 4x4. Multiply ``[x, y, z, 1]`` in the LiDAR frame and
    divide the first two rows by the third to get pixels; the third row is the depth (metres).
    """
    k4 = np.eye(4)
    k4[:3, :3] = np.asarray(intrinsics, np.float64)
    return k4 @ cam_from_lidar.as_matrix()


def project_with_matrix(
    points_xyz: np.ndarray, proj: np.ndarray, width: int, height: int, min_depth_m: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project (N, 3) points with a (3, 4) or (4, 4) projection matrix (no distortion).

    Returns:
        ``(uv (N, 2), depth_m (N,), valid (N,) bool)``; valid = depth > ``min_depth_m`` and
        ``0 <= u < width``, ``0 <= v < height``. ``uv`` is NaN behind the camera.

    """
    p = np.asarray(points_xyz, np.float64).reshape(-1, 3)
    m = np.asarray(proj, np.float64)[:3]
    uvw = p @ m[:, :3].T + m[:, 3]
    depth = uvw[:, 2]
    front = depth > min_depth_m
    uv = np.full((p.shape[0], 2), np.nan)
    uv[front] = uvw[front, :2] / depth[front, None]
    with np.errstate(invalid="ignore"):
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    return uv, depth, front & inside
