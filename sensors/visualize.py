"""Drawing helpers: LiDAR points projected into camera images, coloured by depth."""

from __future__ import annotations

import cv2
import numpy as np
from matplotlib import colormaps

from calibration.camera import PinholeCamera
from calibration.sample import CameraView, SyncedSample
from sensors.types import CAMERA_CHANNELS


def depth_colors(depth_m: np.ndarray, max_depth_m: float = 60.0, cmap: str = "turbo") -> np.ndarray:
    """(N, 3) uint8 RGB colours for depths (near = blue end of ``cmap``... far = red end)."""
    t = np.clip(np.asarray(depth_m, np.float64) / max_depth_m, 0.0, 1.0)
    return (colormaps[cmap](t)[:, :3] * 255).astype(np.uint8)


def project_to_view(points_ego: np.ndarray, view: CameraView, min_depth_m: float = 0.1):
    """Project (N, 3) reference-ego points into a camera view.

    Returns:
        ``(uv (M, 2) float64, depth_m (M,))`` of the points that land inside the image.

    """
    img = view.image
    cam = PinholeCamera(img.intrinsics, img.width, img.height, img.distortion)
    cam_pts = view.ref_SE3_cam.inverse().transform_points(np.asarray(points_ego, np.float64))
    uv, depth, valid = cam.project(cam_pts, min_depth_m)
    return uv[valid], depth[valid]


def draw_points(
    image_rgb: np.ndarray,
    uv: np.ndarray,
    depth_m: np.ndarray,
    radius_px: int = 2,
    max_depth_m: float = 60.0,
) -> np.ndarray:
    """A copy of ``image_rgb`` with points drawn as filled dots coloured by depth.

    Far points are drawn first so that near ones stay visible on top.
    """
    out = np.ascontiguousarray(image_rgb).copy()
    order = np.argsort(-depth_m)
    colors = depth_colors(depth_m[order], max_depth_m)
    for (u, v), c in zip(np.round(uv[order]).astype(int), colors):
        cv2.circle(out, (int(u), int(v)), radius_px, tuple(int(x) for x in c), -1, cv2.LINE_AA)
    return out


def lidar_overlays(
    sample: SyncedSample, radius_px: int | None = None, max_depth_m: float = 60.0
) -> dict[str, np.ndarray]:
    """Camera channel -> RGB image with the sample's LiDAR points projected and depth-coloured.

    Cameras that are missing in the sample are left out; with no LiDAR the images are plain.
    ``radius_px`` defaults to ~1/400 of the image width (2 px at 800, 4 px at 1600).
    """
    out: dict[str, np.ndarray] = {}
    for ch, view in zip(CAMERA_CHANNELS, sample.cameras):
        if view is None:
            continue
        r = radius_px if radius_px is not None else max(1, round(view.image.width / 400))
        if sample.lidar is None or sample.lidar.num_points == 0:
            out[ch] = np.array(view.image.image)
            continue
        uv, depth = project_to_view(sample.lidar.xyz, view)
        out[ch] = draw_points(view.image.image, uv, depth, r, max_depth_m)
    return out
