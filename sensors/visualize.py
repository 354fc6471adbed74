"""Drawing helpers: LiDAR points projected into camera images, coloured by depth."""

from __future__ import annotations

import cv2
import numpy as np
from matplotlib import colormaps

from calibration.camera import PinholeCamera
from calibration.sample import Boxes3D, CameraView, SyncedSample
from sensors.types import CAMERA_CHANNELS

# Box edges over Boxes3D.corners(): bottom face, top face, verticals. Corners 0, 3, 4, 7 are
# the front face (+x of the box).
BOX_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 0),
    (4, 5), (5, 6), (6, 7), (7, 4),
    (0, 4), (1, 5), (2, 6), (3, 7),
)  # fmt: skip


def depth_colors(depth_m: np.ndarray, max_depth_m: float = 60.0, cmap: str = "turbo") -> np.ndarray:
    """(N, 3) uint8 RGB colours for depths: 0 m -> start of ``cmap``, ``max_depth_m`` -> end."""
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


def class_color(label: int) -> tuple[int, int, int]:
    """A fixed RGB colour per detection class (matplotlib's tab10)."""
    r, g, b, _ = colormaps["tab10"](label % 10)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(
    image_rgb: np.ndarray,
    boxes: Boxes3D,
    view: CameraView,
    thickness_px: int = 2,
    min_depth_m: float = 0.1,
) -> np.ndarray:
    """A copy of ``image_rgb`` with reference-ego-frame ``boxes`` drawn as wireframes.

    Colour by class; the front face gets an X so the heading is visible. Edges with an end
    closer than ``min_depth_m`` in front of the camera are skipped (no near-plane clipping:
    boxes straddling the camera are rare and only lose some edges).
    """
    out = np.ascontiguousarray(image_rgb).copy()
    if len(boxes) == 0:
        return out
    img = view.image
    cam = PinholeCamera(img.intrinsics, img.width, img.height, img.distortion)
    corners = boxes.corners().reshape(-1, 3)
    cam_pts = view.ref_SE3_cam.inverse().transform_points(corners)
    uv, depth, _ = cam.project(cam_pts, min_depth_m)
    uv = uv.reshape(len(boxes), 8, 2)
    front = depth.reshape(len(boxes), 8) > min_depth_m
    h, w = out.shape[:2]
    for b in range(len(boxes)):
        if not front[b].any():
            continue
        pts = uv[b]
        finite = pts[front[b]]
        # Skip boxes entirely outside the image (cheap bounding-rectangle test).
        if finite[:, 0].max() < 0 or finite[:, 1].max() < 0:
            continue
        if finite[:, 0].min() >= w or finite[:, 1].min() >= h:
            continue
        color = class_color(int(boxes.labels[b]))
        for i, j in (*BOX_EDGES, (0, 7), (3, 4)):
            if front[b, i] and front[b, j]:
                p0 = tuple(int(v) for v in np.round(pts[i]))
                p1 = tuple(int(v) for v in np.round(pts[j]))
                cv2.line(out, p0, p1, color, thickness_px, cv2.LINE_AA)
    return out


def lidar_overlays(
    sample: SyncedSample,
    radius_px: int | None = None,
    max_depth_m: float = 60.0,
    boxes: Boxes3D | None = None,
) -> dict[str, np.ndarray]:
    """Camera channel -> RGB image with the sample's LiDAR points projected and depth-coloured.

    Cameras that are missing in the sample are left out; with no LiDAR the images are plain.
    ``radius_px`` defaults to ~1/400 of the image width (2 px at 800, 4 px at 1600).
    ``boxes`` (reference ego frame: ground truth or detections) are drawn on top if given.
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
    if boxes is not None:
        for ch, view in zip(CAMERA_CHANNELS, sample.cameras):
            if ch in out:
                out[ch] = draw_boxes(out[ch], boxes, view, max(1, round(view.image.width / 800)))
    return out
