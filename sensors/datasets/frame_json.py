"""Single-keyframe bundles (``frame.json`` + JPEGs + ``.pcd.bin``) -> ``SyncedSample``.

The format is the one in ``../shared/data/nuscenes-frame``: mmdetection3d-style matrices
(``lidar2ego``, ``ego2global``, per camera ``intrinsics``, ``cam2ego`` and ``lidar2cam`` with the
ego motion between LiDAR and camera time already folded in) and boxes in the LiDAR frame. It
lets the demo and tests run the whole pipeline on one real frame without a nuScenes dataroot.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from calibration.accumulate import accumulate_sweeps
from calibration.sample import Boxes3D, CameraView, SyncedSample
from calibration.se3 import SE3
from sensors.readers import read_camera_image, read_lidar_file
from sensors.types import CAMERA_CHANNELS, DETECTION_CLASSES
from sensors.virtual_ultrasonic import virtual_ultrasonic


def load_frame_json(
    folder: str | Path, image_reduction: int = 1, min_distance_m: float = 1.0
) -> SyncedSample:
    """Load a ``frame.json`` bundle as a ``SyncedSample`` in the ego frame at the LiDAR time.

    Args:
        folder: directory holding ``frame.json`` and the files it names.
        image_reduction: camera decode reduction (1, 2, 4, 8).
        min_distance_m: drop ego-body LiDAR returns (``|x|, |y|`` below this, sensor frame).

    Returns:
        ``SyncedSample`` with one LiDAR sweep (``time_lag_s`` = 0), the six cameras (missing
        files -> None), virtual ultrasonic, ground-truth boxes (categories outside the 10
        detection classes dropped); no CAN bus, no future trajectory.

    Raises:
        FileNotFoundError: ``frame.json`` or the LiDAR file is missing.
        ValueError: a matrix is not a rigid transform (names the channel).

    """
    folder = Path(folder)
    meta_path = folder / "frame.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: frame.json not found")
    meta = json.loads(meta_path.read_text())
    lid = meta["lidar"]
    ref_us = int(lid["timestamp_us"])
    ego_SE3_lidar = SE3.from_matrix(np.array(lid["lidar2ego"]), f"{meta_path} lidar2ego")
    global_SE3_ego = SE3.from_matrix(np.array(meta["ego2global"]), f"{meta_path} ego2global")
    sweep = read_lidar_file(folder / lid["file"], ref_us)
    lidar = accumulate_sweeps([sweep], [ego_SE3_lidar], ref_us, min_distance_m)

    cameras: list[CameraView | None] = []
    for ch in CAMERA_CHANNELS:
        c = meta["cameras"].get(ch)
        if c is None or not (folder / c["file"]).is_file():
            cameras.append(None)
            continue
        image = read_camera_image(
            folder / c["file"], np.array(c["intrinsics"]), ch, c["timestamp_us"], image_reduction
        )
        # lidar2cam maps LiDAR@t_lidar to camera@t_cam, so camera -> ego@t_lidar is
        # lidar2ego @ inv(lidar2cam).
        cam_SE3_lidar = SE3.from_matrix(np.array(c["lidar2cam"]), f"{meta_path} {ch} lidar2cam")
        cameras.append(
            CameraView(
                image=image,
                ref_SE3_cam=ego_SE3_lidar @ cam_SE3_lidar.inverse(),
                time_offset_us=int(c["timestamp_us"]) - ref_us,
            )
        )

    boxes_json = [b for b in meta.get("boxes", []) if b["category"] in DETECTION_CLASSES]
    boxes = None
    if "boxes" in meta:
        n = len(boxes_json)
        boxes_lidar = Boxes3D(
            center_m=np.array([b["center"] for b in boxes_json]).reshape(n, 3),
            wlh_m=np.array([b["wlh"] for b in boxes_json]).reshape(n, 3),
            yaw_rad=np.array([b["yaw"] for b in boxes_json]).reshape(n),
            velocity_mps=np.array([b["velocity"] for b in boxes_json], np.float64).reshape(n, 2),
            labels=np.array([DETECTION_CLASSES.index(b["category"]) for b in boxes_json], np.int64),
            scores=np.ones(n),
            num_lidar_pts=np.array([b.get("num_lidar_pts", -1) for b in boxes_json], np.int64),
        )
        boxes = boxes_lidar.transformed(ego_SE3_lidar)

    return SyncedSample(
        token=str(meta.get("sample_token", meta_path)),
        scene_token=str(meta.get("log", "")),
        timestamp_us=ref_us,
        global_SE3_ego=global_SE3_ego,
        lidar=lidar,
        cameras=tuple(cameras),
        ultrasonic=virtual_ultrasonic(lidar.xyz, timestamp_us=ref_us),
        boxes=boxes,
        is_keyframe=True,
    )
