"""A tiny hand-made nuScenes-format dataroot, built in code with the devkit's own helpers.

One scene ("scene-0061", in mini_train) of 3 s: the ego drives a left arc (5 m/s, 0.3 rad/s);
LIDAR_TOP at 20 Hz, six 32x18 cameras at 12 Hz, optionally an ULTRASONIC channel at 20 Hz and
CAN bus files; 7 keyframes at 2 Hz with a moving car, a standing pedestrian and an unmapped
"animal" annotated. Geometry is built with pyquaternion and ``transform_matrix`` from the devkit,
independently of drivefuse's SE3, so that tests comparing the adapter to it are meaningful.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import points_in_box, transform_matrix
from pyquaternion import Quaternion

# The 13 tables the devkit loads (one list, shared with the generator).
from sensors.sim.writer import TABLES

SCENE_NAME = "scene-0061"
VERSION = "v1.0-mini"
DURATION_US = 3_000_000
T0_US = 1_600_000_000_000_000
SPEED_MPS = 5.0
YAW_RATE = 0.3
YAW0 = 0.7
ORIGIN = np.array([300.0, 600.0, 0.0])
CAM_W, CAM_H = 32, 18
CAM_K = [[20.0, 0.0, 15.5], [0.0, 20.0, 8.5], [0.0, 0.0, 1.0]]
CAMERAS = {  # channel -> yaw of the optical axis in the ego frame
    "CAM_FRONT": 0.0,
    "CAM_FRONT_RIGHT": -0.96,
    "CAM_FRONT_LEFT": 0.96,
    "CAM_BACK": np.pi,
    "CAM_BACK_LEFT": 1.9,
    "CAM_BACK_RIGHT": -1.9,
}
# nuScenes-like LiDAR mount: x right, y forward (-90 deg about z), on the roof.
LIDAR_Q = Quaternion(axis=[0, 0, 1], angle=-np.pi / 2)
LIDAR_T = [0.94, 0.0, 1.84]


def tok(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def ego_pose_at(t_us: int) -> tuple[np.ndarray, Quaternion]:
    """Analytic global ego pose: a left arc of radius SPEED/YAW_RATE starting at ORIGIN."""
    t = (t_us - T0_US) * 1e-6
    r = SPEED_MPS / YAW_RATE
    yaw_local = YAW_RATE * t
    local = np.array([r * np.sin(yaw_local), r * (1 - np.cos(yaw_local)), 0.0])
    rot0 = Quaternion(axis=[0, 0, 1], angle=YAW0)
    pos = ORIGIN + np.array(rot0.rotate(local))
    return pos, Quaternion(axis=[0, 0, 1], angle=YAW0 + yaw_local)


def cam_quaternion(yaw: float) -> Quaternion:
    # Camera (x right, y down, z forward) -> ego for a camera looking along +x, then yawed.
    base = Quaternion(matrix=np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float))
    return Quaternion(axis=[0, 0, 1], angle=yaw) * base


@dataclass
class Agent:
    token: str
    category: str
    size: tuple[float, float, float]
    attribute: str

    def pose(self, t_us: int) -> tuple[np.ndarray, Quaternion]:
        t = (t_us - T0_US) * 1e-6
        ego0, q0 = ego_pose_at(T0_US)
        fwd = np.array(q0.rotate([1.0, 0.0, 0.0]))
        left = np.array(q0.rotate([0.0, 1.0, 0.0]))
        if self.category == "vehicle.car":  # ahead-left, driving along the initial heading
            c = ego0 + fwd * (12.0 + 3.0 * t) + left * 4.0 + [0, 0, 0.8]
            return c, Quaternion(axis=[0, 0, 1], angle=YAW0 + 0.1)
        if self.category == "human.pedestrian.adult":
            c = ego0 + fwd * 6.0 - left * 5.0 + [0, 0, 0.9]
            return c, Quaternion(axis=[0, 0, 1], angle=YAW0 - 1.0)
        c = ego0 - fwd * 8.0 + [0, 0, 0.3]
        return c, Quaternion(axis=[0, 0, 1], angle=0.2)


AGENTS = (
    Agent(tok("inst", "car"), "vehicle.car", (1.9, 4.5, 1.6), "vehicle.moving"),
    Agent(tok("inst", "ped"), "human.pedestrian.adult", (0.7, 0.7, 1.8), "pedestrian.standing"),
    Agent(tok("inst", "dog"), "animal", (0.4, 0.8, 0.6), ""),
)


def lidar_points(t_us: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 5) float32 points in the LiDAR frame: a ground ring, ego-roof returns, agent hits."""
    ego_t, ego_q = ego_pose_at(t_us)
    global_from_lidar = transform_matrix(ego_t, ego_q) @ transform_matrix(LIDAR_T, LIDAR_Q)
    lidar_from_global = np.linalg.inv(global_from_lidar)
    pts = []
    ang = rng.uniform(-np.pi, np.pi, 60)
    rad = rng.uniform(3.0, 20.0, 60)
    pts.append(np.stack([rad * np.cos(ang), rad * np.sin(ang), np.full(60, -1.84)], 1))
    pts.append(rng.uniform(-0.8, 0.8, (10, 3)) * [1, 1, 0.1])  # own roof (removed as "close")
    for agent in AGENTS:
        c, q = agent.pose(t_us)
        w, length, h = agent.size
        local = rng.uniform(-0.45, 0.45, (12, 3)) * [length, w, h]
        pts_global = (q.rotation_matrix @ local.T).T + c
        pts.append(pts_global @ lidar_from_global[:3, :3].T + lidar_from_global[:3, 3])
    xyz = np.concatenate(pts)
    out = np.zeros((xyz.shape[0], 5), np.float32)
    out[:, :3] = xyz
    out[:, 3] = rng.uniform(0, 100, xyz.shape[0])
    out[:, 4] = rng.integers(0, 32, xyz.shape[0])
    return out


def build(root: Path, with_ultrasonic: bool = False, with_can_bus: bool = True) -> Path:
    """Write the dataroot under ``root`` and return it."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    tables: dict[str, list[dict]] = {k: [] for k in TABLES}
    log_token, scene_token = tok("log"), tok("scene")
    tables["log"].append(
        {
            "token": log_token,
            "logfile": "fixture",
            "vehicle": "n015",
            "date_captured": "2020-09-13",
            "location": "singapore-onenorth",
        }
    )
    (root / "maps").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "maps" / "fixture.png"), np.zeros((4, 4), np.uint8))
    tables["map"].append(
        {
            "token": tok("map"),
            "log_tokens": [log_token],
            "category": "semantic_prior",
            "filename": "maps/fixture.png",
        }
    )
    for name in ("vehicle.car", "human.pedestrian.adult", "animal"):
        tables["category"].append({"token": tok("cat", name), "name": name, "description": ""})
    for name in ("vehicle.moving", "pedestrian.standing"):
        tables["attribute"].append({"token": tok("attr", name), "name": name, "description": ""})
    tables["visibility"].append({"token": "4", "level": "v80-100", "description": ""})

    channels = {"LIDAR_TOP": "lidar", **{c: "camera" for c in CAMERAS}}
    if with_ultrasonic:
        channels["ULTRASONIC"] = "ultrasonic"
    cs_tokens = {}
    for ch, modality in channels.items():
        tables["sensor"].append({"token": tok("sensor", ch), "channel": ch, "modality": modality})
        cs = {"token": tok("cs", ch), "sensor_token": tok("sensor", ch), "camera_intrinsic": []}
        if ch == "LIDAR_TOP":
            cs.update(translation=LIDAR_T, rotation=list(LIDAR_Q.elements))
        elif modality == "camera":
            yaw = CAMERAS[ch]
            cs.update(
                translation=[1.0 + np.cos(yaw), 0.5 * np.sin(yaw), 1.5],
                rotation=list(cam_quaternion(yaw).elements),
                camera_intrinsic=CAM_K,
            )
        else:
            cs.update(translation=[0.0, 0.0, 0.0], rotation=[1.0, 0.0, 0.0, 0.0])
        tables["calibrated_sensor"].append(cs)
        cs_tokens[ch] = cs["token"]

    key_times = [T0_US + k * 500_000 for k in range(DURATION_US // 500_000 + 1)]
    sample_tokens = [tok("sample", t) for t in key_times]
    for i, t in enumerate(key_times):
        tables["sample"].append(
            {
                "token": sample_tokens[i],
                "timestamp": t,
                "scene_token": scene_token,
                "prev": sample_tokens[i - 1] if i else "",
                "next": sample_tokens[i + 1] if i + 1 < len(key_times) else "",
            }
        )
    tables["scene"].append(
        {
            "token": scene_token,
            "name": SCENE_NAME,
            "description": "fixture, left arc",
            "log_token": log_token,
            "nbr_samples": len(key_times),
            "first_sample_token": sample_tokens[0],
            "last_sample_token": sample_tokens[-1],
        }
    )

    def owner_sample(t: int) -> str:
        # nuScenes assigns a sweep to the next keyframe (the last one after the final keyframe).
        for kt, st in zip(key_times, sample_tokens):
            if kt >= t:
                return st
        return sample_tokens[-1]

    def add_stream(ch: str, times: list[int], keyset: dict[int, int], writer) -> None:
        prev = ""
        toks = [tok("sd", ch, t) for t in times]
        for i, t in enumerate(times):
            is_key = t in keyset
            folder = "samples" if is_key else "sweeps"
            ext = {"lidar": ".pcd.bin", "camera": ".jpg", "ultrasonic": ".bin"}[channels[ch]]
            fname = f"{folder}/{ch}/fixture__{ch}__{t}{ext}"
            (root / folder / ch).mkdir(parents=True, exist_ok=True)
            writer(root / fname, t)
            pos, q = ego_pose_at(t)
            ep = tok("ep", ch, t)
            tables["ego_pose"].append(
                {
                    "token": ep,
                    "timestamp": t,
                    "translation": list(pos),
                    "rotation": list(q.elements),
                }
            )
            tables["sample_data"].append(
                {
                    "token": toks[i],
                    "sample_token": sample_tokens[keyset[t]] if is_key else owner_sample(t),
                    "ego_pose_token": ep,
                    "calibrated_sensor_token": cs_tokens[ch],
                    "timestamp": t,
                    "fileformat": ext.lstrip(".").split(".")[0] if ch != "LIDAR_TOP" else "pcd",
                    "is_key_frame": is_key,
                    "height": CAM_H if channels[ch] == "camera" else 0,
                    "width": CAM_W if channels[ch] == "camera" else 0,
                    "filename": fname,
                    "prev": prev,
                    "next": toks[i + 1] if i + 1 < len(times) else "",
                }
            )
            prev = toks[i]

    lidar_times = [T0_US + k * 50_000 for k in range(DURATION_US // 50_000 + 1)]
    lidar_store: dict[int, np.ndarray] = {}

    def write_lidar(path: Path, t: int) -> None:
        pts = lidar_points(t, rng)
        lidar_store[t] = pts
        pts.tofile(path)

    add_stream("LIDAR_TOP", lidar_times, {t: i for i, t in enumerate(key_times)}, write_lidar)

    for ci, ch in enumerate(CAMERAS):
        offset = -30_000 + 8_000 * ci  # cameras fire around the LiDAR, as in nuScenes
        times = [T0_US + offset + round(k * 1e6 / 12) for k in range(37)]
        times = [t for t in times if T0_US - 40_000 <= t <= T0_US + DURATION_US + 40_000]
        keyset = {}
        for i, kt in enumerate(key_times):
            keyset[min(times, key=lambda t: abs(t - kt))] = i

        def write_cam(path: Path, t: int, ci: int = ci) -> None:
            img = np.zeros((CAM_H, CAM_W, 3), np.uint8)
            img[..., 1] = 40 * ci
            img[:, : CAM_W // 2, 2] = 255  # left half red in RGB (BGR order on disk)
            cv2.imwrite(str(path), img)

        add_stream(ch, times, keyset, write_cam)

    if with_ultrasonic:

        def write_us(path: Path, t: int) -> None:
            r = np.full(12, np.nan, np.float32)
            r[2] = 1.0 + (t - T0_US) * 1e-6
            r.astype("<f4").tofile(path)

        add_stream("ULTRASONIC", [t + 5_000 for t in lidar_times], {}, write_us)

    for agent in AGENTS:
        cat = tok("cat", agent.category)
        ann_toks = [tok("ann", agent.token, t) for t in key_times]
        for i, t in enumerate(key_times):
            c, q = agent.pose(t)
            box = Box(c, agent.size, q)
            pts = lidar_store[t]
            ego_t, ego_q = ego_pose_at(t)
            g = transform_matrix(ego_t, ego_q) @ transform_matrix(LIDAR_T, LIDAR_Q)
            pts_g = (g[:3, :3] @ pts[:, :3].astype(np.float64).T).T + g[:3, 3]
            n_in = int(points_in_box(box, pts_g.T).sum())
            tables["sample_annotation"].append(
                {
                    "token": ann_toks[i],
                    "sample_token": sample_tokens[i],
                    "instance_token": agent.token,
                    "visibility_token": "4",
                    "attribute_tokens": [tok("attr", agent.attribute)] if agent.attribute else [],
                    "translation": list(c),
                    "size": list(agent.size),
                    "rotation": list(q.elements),
                    "prev": ann_toks[i - 1] if i else "",
                    "next": ann_toks[i + 1] if i + 1 < len(key_times) else "",
                    "num_lidar_pts": n_in,
                    "num_radar_pts": 0,
                }
            )
        tables["instance"].append(
            {
                "token": agent.token,
                "category_token": cat,
                "nbr_annotations": len(key_times),
                "first_annotation_token": ann_toks[0],
                "last_annotation_token": ann_toks[-1],
            }
        )

    (root / VERSION).mkdir(exist_ok=True)
    for name, rows in tables.items():
        (root / VERSION / f"{name}.json").write_text(json.dumps(rows))

    if with_can_bus:
        can = root / "can_bus"
        can.mkdir(exist_ok=True)
        pose_msgs = []
        for k in range(-10, DURATION_US // 20_000 + 10):
            t = T0_US + k * 20_000
            pos, q = ego_pose_at(t)
            pose_msgs.append(
                {
                    "utime": t,
                    "pos": list(pos),
                    "orientation": list(q.elements),
                    "vel": [SPEED_MPS, 0.0, 0.0],
                    "accel": [0.2, 0.0, 9.8],
                    "rotation_rate": [0.0, 0.0, YAW_RATE],
                }
            )
        steer = [{"utime": T0_US + k * 10_000, "value": 0.5} for k in range(-5, 310)]
        vm = [
            {"utime": T0_US + k * 500_000, "vehicle_speed": SPEED_MPS * 3.6, "steering": 28.6}
            for k in range(8)
        ]
        for kind, msgs in (
            ("pose", pose_msgs),
            ("steeranglefeedback", steer),
            ("vehicle_monitor", vm),
        ):
            (can / f"{SCENE_NAME}_{kind}.json").write_text(json.dumps(msgs))
    return root
