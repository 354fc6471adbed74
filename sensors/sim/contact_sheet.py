"""Contact sheet of one sample: six cameras with projected boxes, BEV LiDAR, ultrasonic.

Everything is read back through the devkit (``NuScenes``) from the written dataroot, so the
sheet checks the files and tables, not the simulator's memory.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from nuscenes import NuScenes  # noqa: E402
from nuscenes.utils.data_classes import LidarPointCloud  # noqa: E402
from nuscenes.utils.geometry_utils import BoxVisibility, view_points  # noqa: E402
from pyquaternion import Quaternion  # noqa: E402

from sensors.types import CAMERA_CHANNELS, LIDAR_CHANNEL, ULTRASONIC_CHANNEL  # noqa: E402
from sensors.ultrasonic_layout import default_layout  # noqa: E402

CLASS_COLOURS = {
    "car": "tab:orange",
    "truck": "tab:red",
    "bus": "gold",
    "trailer": "tab:brown",
    "construction_vehicle": "yellow",
    "pedestrian": "tab:blue",
    "motorcycle": "tab:purple",
    "bicycle": "magenta",
    "traffic_cone": "tab:olive",
    "barrier": "tab:gray",
}


def _detection_name(category: str) -> str:
    from nuscenes.eval.detection.utils import category_to_detection_name

    return category_to_detection_name(category) or "car"


def contact_sheet(
    dataroot: Path, version: str, out_path: Path, sample_token: str | None = None,
    scene_index: int = 0, sample_index: int | None = None,
) -> Path:
    """Write a PNG with one sample's six cameras (boxes overlaid), BEV LiDAR and ultrasonic.

    Args:
        dataroot: nuScenes dataroot (e.g. written by ``generate_dataset``).
        version: table folder, e.g. ``"v1.0-mini"``.
        out_path: PNG to write.
        sample_token: sample to show; default: ``sample_index`` of scene ``scene_index``.
        scene_index: scene to take the sample from when no token is given.
        sample_index: keyframe index in that scene (default: the middle one).

    Returns:
        ``out_path``.

    """
    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    if sample_token is None:
        scene = nusc.scene[scene_index]
        toks = [scene["first_sample_token"]]
        while nusc.get("sample", toks[-1])["next"]:
            toks.append(nusc.get("sample", toks[-1])["next"])
        sample_token = toks[len(toks) // 2 if sample_index is None else sample_index]
    sample = nusc.get("sample", sample_token)
    scene = nusc.get("scene", sample["scene_token"])
    fig = plt.figure(figsize=(18, 13), dpi=80)
    grid = fig.add_gridspec(3, 6, height_ratios=[1, 1, 1.9])
    order = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK",
             "CAM_BACK_RIGHT"]
    assert set(order) == set(CAMERA_CHANNELS)
    for n, ch in enumerate(order):
        ax = fig.add_subplot(grid[n // 3, 2 * (n % 3) : 2 * (n % 3) + 2])
        path, boxes, k = nusc.get_sample_data(sample["data"][ch], box_vis_level=BoxVisibility.ANY)
        ax.imshow(plt.imread(path))
        for box in boxes:
            c = CLASS_COLOURS[_detection_name(box.name)]
            corners = view_points(box.corners(), k, normalize=True)[:2]
            if (box.corners()[2] < 0.1).any():
                continue
            for a, b in ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                         (0, 4), (1, 5), (2, 6), (3, 7)):
                ax.plot(corners[0, [a, b]], corners[1, [a, b]], color=c, lw=0.8)
        ax.set_title(ch, fontsize=10)
        ax.set_xlim(0, plt.imread(path).shape[1])
        ax.set_ylim(plt.imread(path).shape[0], 0)
        ax.axis("off")
    # BEV LiDAR in the ego frame with boxes.
    ax = fig.add_subplot(grid[2, :4])
    lid_tok = sample["data"][LIDAR_CHANNEL]
    sd = nusc.get("sample_data", lid_tok)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(lid_tok))
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    pc.translate(np.array(cs["translation"]))
    pts = pc.points
    ax.set_facecolor("black")
    ax.scatter(pts[0], pts[1], s=1.2, c=np.clip(pts[2], -0.5, 3.0), cmap="turbo", linewidths=0)
    _, boxes, _ = nusc.get_sample_data(lid_tok, use_flat_vehicle_coordinates=True)
    for box in boxes:
        c = CLASS_COLOURS[_detection_name(box.name)]
        bc = box.bottom_corners()
        ax.plot(np.r_[bc[0], bc[0, :1]], np.r_[bc[1], bc[1, :1]], color=c, lw=1.0)
    ax.add_patch(plt.Rectangle((-0.85, -0.87), 4.3, 1.74, fill=False, color="white", lw=1.2))
    ax.set_xlim(-40, 60)
    ax.set_ylim(-30, 30)
    ax.set_aspect("equal")
    ax.set_title(f"LIDAR_TOP BEV (ego frame, colour = height), {pts.shape[1]} points; "
                 f"{scene['name']}: {scene['description'].split('. ')[0]}", fontsize=9)
    # Ultrasonic cones in the ego frame.
    ax = fig.add_subplot(grid[2, 4:])
    us_path = nusc.get_sample_data_path(sample["data"][ULTRASONIC_CHANNEL])
    ranges = np.fromfile(us_path, dtype="<f4")
    lay = default_layout()
    low = (pts[2] > 0.1) & (pts[2] < 1.0)
    ax.scatter(pts[0][low], pts[1][low], s=2, c="gray", linewidths=0)
    ax.add_patch(plt.Rectangle((-0.85, -0.87), 4.3, 1.74, fill=False, color="red", lw=1.2))
    for i in range(len(ranges)):
        p = lay.position_ego_m[i]
        yaw = lay.yaw_ego_rad[i]
        hit = np.isfinite(ranges[i])
        r = float(ranges[i]) if hit else lay.max_range_m
        ang = np.linspace(yaw - lay.half_fov_rad, yaw + lay.half_fov_rad, 12)
        xs = np.r_[p[0], p[0] + r * np.cos(ang), p[0]]
        ys = np.r_[p[1], p[1] + r * np.sin(ang), p[1]]
        ax.fill(xs, ys, color="tab:red" if hit else "tab:green", alpha=0.35 if hit else 0.12)
        if hit:
            ax.text(p[0] + (r + 0.3) * np.cos(yaw), p[1] + (r + 0.3) * np.sin(yaw),
                    f"{r:.2f}", fontsize=7, ha="center")
    ax.set_xlim(-7, 10)
    ax.set_ylim(-7.5, 7.5)
    ax.set_aspect("equal")
    ax.set_title("ULTRASONIC (red: echo, range in m; green: no echo); grey: LiDAR 0.1-1 m",
                 fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
