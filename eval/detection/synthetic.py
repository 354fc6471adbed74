"""Annotation-only nuScenes databases, for evaluation tests and benchmarks.

``write_annotation_tables`` writes the 13 nuScenes tables (no sensor files) so that
``nuscenes.NuScenes`` loads them and the devkit's ``DetectionEval`` runs on them: scenes named
after a devkit split, a keyframe LiDAR sample_data with an ego pose per sample, and tracked
objects of all ten detection classes plus unevaluated categories and bike racks. Edge cases
the official filters care about are planted on purpose: objects exactly at a class range,
annotations with zero points, single-frame instances (NaN velocity), a time gap too long for a
velocity, missing attributes, bicycles inside a bike rack.

For full sensor data use ``sensors.sim.generate_dataset`` instead; this is for speed (a
validation-sized database of 6,000 samples takes seconds).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from eval.detection.config import ATTRIBUTE_NAMES
from sensors.types import CATEGORY_TO_DETECTION_CLASS

# Category per detection class (first match) and categories the detection task ignores.
_CATEGORY_OF_CLASS = {}
for _cat, _cls in CATEGORY_TO_DETECTION_CLASS.items():
    _CATEGORY_OF_CLASS.setdefault(_cls, _cat)
_IGNORED_CATEGORIES = ("movable_object.debris", "vehicle.emergency.police")
_RACK = "static_object.bicycle_rack"
_CATEGORIES = tuple(CATEGORY_TO_DETECTION_CLASS) + _IGNORED_CATEGORIES + (_RACK,)
_SIZES = {
    "car": (1.9, 4.6, 1.7),
    "truck": (2.5, 7.0, 3.0),
    "bus": (2.9, 11.0, 3.5),
    "trailer": (2.9, 12.0, 3.8),
    "construction_vehicle": (2.8, 6.5, 3.2),
    "pedestrian": (0.7, 0.7, 1.75),
    "motorcycle": (0.8, 2.1, 1.5),
    "bicycle": (0.6, 1.7, 1.3),
    "traffic_cone": (0.4, 0.4, 1.0),
    "barrier": (2.5, 0.5, 1.0),
    "ignored": (1.0, 1.0, 1.0),
    "rack": (1.5, 3.0, 1.2),
}
_CLASS_WEIGHTS = {
    "car": 0.30,
    "truck": 0.07,
    "bus": 0.03,
    "trailer": 0.03,
    "construction_vehicle": 0.03,
    "pedestrian": 0.18,
    "motorcycle": 0.05,
    "bicycle": 0.05,
    "traffic_cone": 0.10,
    "barrier": 0.10,
    "ignored": 0.06,
}


def _token(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def _yaw_quaternion(yaw: float, tilt: float = 0.0) -> list[float]:
    """Quaternion (w, x, y, z) of a yaw, optionally with a small roll ``tilt`` after it."""
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    cr, sr = np.cos(tilt / 2), np.sin(tilt / 2)
    # q_yaw * q_roll
    return [float(cy * cr), float(cy * sr), float(sy * sr), float(sy * cr)]


def _tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class AnnotationTablesInfo:
    """What ``write_annotation_tables`` wrote.

    Attributes:
        dataroot: folder to pass to ``NuScenes(dataroot=...)``.
        version: table folder name.
        scene_names: scenes written, in order.
        num_samples: samples written.
        num_annotations: sample_annotation records written.

    """

    dataroot: Path
    version: str
    scene_names: tuple[str, ...]
    num_samples: int
    num_annotations: int


def write_annotation_tables(
    out_dir: str | Path,
    version: str = "v1.0-mini",
    scene_names: tuple[str, ...] | None = None,
    samples_per_scene: int = 10,
    objects_per_scene: int = 30,
    seed: int = 0,
    descriptions: tuple[str, ...] | None = None,
) -> AnnotationTablesInfo:
    """Write an annotation-only nuScenes database.

    Args:
        out_dir: dataroot to create (tables go to ``out_dir/version``).
        version: ``"v1.0-mini"`` or ``"v1.0-trainval"``.
        scene_names: names from the devkit's split lists; default ``mini_val`` for mini and
            ``val`` for trainval.
        samples_per_scene: keyframes per scene (2 Hz).
        objects_per_scene: tracked objects per scene (each visible in a random sample range).
        seed: random seed (same seed, same bytes).
        descriptions: one scene description per scene name (default ``"synthetic"``), e.g.
            to give scenes the condition words that ``evaluate_by_condition`` groups by.

    Returns:
        What was written.

    """
    from nuscenes.utils.splits import create_splits_scenes

    if scene_names is None:
        split = "mini_val" if version.endswith("mini") else "val"
        scene_names = tuple(create_splits_scenes()[split])
    if descriptions is not None and len(descriptions) != len(scene_names):
        raise ValueError(
            f"descriptions: {len(descriptions)} given for {len(scene_names)} scenes"
        )
    rng = np.random.default_rng(seed)
    root = Path(out_dir)
    table_dir = root / version
    table_dir.mkdir(parents=True, exist_ok=True)
    (root / "maps").mkdir(exist_ok=True)
    (root / "maps" / "synthetic.png").write_bytes(_tiny_png())

    category = [{"token": _token("category", c), "name": c, "description": c} for c in _CATEGORIES]
    cat_token = {c["name"]: c["token"] for c in category}
    attribute = [{"token": _token("attr", a), "name": a, "description": a} for a in ATTRIBUTE_NAMES]
    attr_token = {a["name"]: a["token"] for a in attribute}
    visibility = [
        {"token": str(i), "level": lvl, "description": lvl}
        for i, lvl in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), start=1)
    ]
    sensor = [{"token": _token("sensor", "LIDAR_TOP"), "channel": "LIDAR_TOP", "modality": "lidar"}]
    calibrated_sensor = [
        {
            "token": _token("cs", "LIDAR_TOP"),
            "sensor_token": sensor[0]["token"],
            "translation": [0.94, 0.0, 1.84],
            "rotation": [0.7071067811865476, 0.0, 0.0, -0.7071067811865476],
            "camera_intrinsic": [],
        }
    ]
    log = [
        {
            "token": _token("log", 0),
            "logfile": "synthetic",
            "vehicle": "synthetic",
            "date_captured": "2026-01-01",
            "location": "singapore-onenorth",
        }
    ]
    map_table = [
        {
            "token": _token("map", 0),
            "log_tokens": [log[0]["token"]],
            "category": "semantic_prior",
            "filename": "maps/synthetic.png",
        }
    ]
    scene, sample, sample_data, ego_pose, instance, sample_annotation = [], [], [], [], [], []
    classes = list(_CLASS_WEIGHTS)
    weights = np.array([_CLASS_WEIGHTS[c] for c in classes])
    weights /= weights.sum()
    t0_us = 1_533_000_000_000_000
    for si, name in enumerate(scene_names):
        scene_token = _token("scene", name)
        # Timestamps at 2 Hz; the 3rd scene has a 2 s gap (too long for a velocity estimate).
        dt_us = np.full(samples_per_scene, 500_000, np.int64)
        if si == 2 and samples_per_scene > 4:
            dt_us[3] = 2_000_000
        times = t0_us + si * 100_000_000 + np.cumsum(dt_us) - dt_us[0]
        # Ego drives along a gentle arc from a map-sized offset, at integer-friendly origins so
        # that planted distances come out exact.
        origin = np.array([400.0 + 64.0 * si, 1100.0 + 32.0 * (si % 7), 0.0])
        heading0 = float(rng.uniform(-np.pi, np.pi))
        yaw_rate = float(rng.uniform(-0.05, 0.05))
        speed = float(rng.uniform(0.0, 8.0))
        sample_tokens = [_token("sample", name, k) for k in range(samples_per_scene)]
        ego_xyz = []
        for k, tok in enumerate(sample_tokens):
            t_s = (times[k] - times[0]) * 1e-6
            yaw = heading0 + yaw_rate * t_s
            # Sample 0 sits exactly on the integer origin so planted offsets stay exact.
            xyz = origin + np.array([speed * t_s * np.cos(yaw), speed * t_s * np.sin(yaw), 0.0])
            ego_xyz.append(xyz)
            pose_token = _token("pose", name, k)
            sd_token = _token("sd", name, k)
            ego_pose.append(
                {
                    "token": pose_token,
                    "timestamp": int(times[k]),
                    "translation": xyz.tolist(),
                    "rotation": _yaw_quaternion(yaw),
                }
            )
            sample_data.append(
                {
                    "token": sd_token,
                    "sample_token": tok,
                    "ego_pose_token": pose_token,
                    "calibrated_sensor_token": calibrated_sensor[0]["token"],
                    "timestamp": int(times[k]),
                    "fileformat": "pcd",
                    "is_key_frame": True,
                    "height": 0,
                    "width": 0,
                    "filename": f"samples/LIDAR_TOP/{sd_token}.pcd.bin",
                    "prev": _token("sd", name, k - 1) if k > 0 else "",
                    "next": _token("sd", name, k + 1) if k + 1 < samples_per_scene else "",
                }
            )
            sample.append(
                {
                    "token": tok,
                    "timestamp": int(times[k]),
                    "prev": sample_tokens[k - 1] if k > 0 else "",
                    "next": sample_tokens[k + 1] if k + 1 < samples_per_scene else "",
                    "scene_token": scene_token,
                }
            )
        scene.append(
            {
                "token": scene_token,
                "log_token": log[0]["token"],
                "nbr_samples": samples_per_scene,
                "first_sample_token": sample_tokens[0],
                "last_sample_token": sample_tokens[-1],
                "name": name,
                "description": descriptions[si] if descriptions else "synthetic",
            }
        )

        objects: list[tuple[str, str, np.ndarray, np.ndarray, float, int, int, float]] = []
        for _ in range(objects_per_scene):
            cls = str(rng.choice(classes, p=weights))
            cat = (
                _CATEGORY_OF_CLASS[cls]
                if cls != "ignored"
                else str(rng.choice(_IGNORED_CATEGORIES))
            )
            r = float(rng.uniform(2.0, 62.0))
            a = float(rng.uniform(-np.pi, np.pi))
            start = origin + np.array([r * np.cos(a), r * np.sin(a), float(rng.uniform(0, 1))])
            moving = cls in ("car", "truck", "bus", "pedestrian", "motorcycle", "bicycle")
            vel = (
                np.array([*rng.normal(0, 3.0 if cls != "pedestrian" else 1.0, 2), 0.0])
                if moving and rng.random() < 0.6
                else np.zeros(3)
            )
            first = int(rng.integers(0, samples_per_scene))
            # One object in ten lives for a single frame (NaN velocity).
            last = first if rng.random() < 0.1 else int(rng.integers(first, samples_per_scene))
            objects.append(
                (cls, cat, start, vel, float(rng.uniform(-np.pi, np.pi)), first, last, 0.0)
            )
        # Planted: a car exactly at its 50 m range and a cone exactly at 30 m at sample 0
        # (both filtered: the range is exclusive), and one just inside.
        objects.append(
            (
                "car",
                _CATEGORY_OF_CLASS["car"],
                origin + [30.0, 40.0, 0.5],
                np.zeros(3),
                0.3,
                0,
                0,
                0.0,
            )
        )
        objects.append(
            (
                "traffic_cone",
                _CATEGORY_OF_CLASS["traffic_cone"],
                origin + [18.0, -24.0, 0.3],
                np.zeros(3),
                0.0,
                0,
                0,
                0.0,
            )
        )
        objects.append(
            (
                "car",
                _CATEGORY_OF_CLASS["car"],
                origin + [29.0, 40.0, 0.5],
                np.zeros(3),
                1.0,
                0,
                0,
                0.05,
            )
        )
        # A bike rack with one bicycle parked in it and one beside it, for a few samples.
        rack_at = origin + np.array([8.0, 6.0, 0.6])
        last_k = min(2, samples_per_scene - 1)
        objects.append(("rack", _RACK, rack_at, np.zeros(3), 0.0, 0, last_k, 0.0))
        objects.append(
            (
                "bicycle",
                _CATEGORY_OF_CLASS["bicycle"],
                rack_at + [0.3, 0.2, 0.0],
                np.zeros(3),
                0.0,
                0,
                last_k,
                0.0,
            )
        )
        objects.append(
            (
                "motorcycle",
                _CATEGORY_OF_CLASS["motorcycle"],
                rack_at + [0.0, 4.0, 0.0],
                np.zeros(3),
                0.0,
                0,
                last_k,
                0.0,
            )
        )

        for oi, (cls, cat, start, vel, yaw, first, last, tilt) in enumerate(objects):
            inst_token = _token("inst", name, oi)
            size = _SIZES["ignored" if cls == "ignored" else cls]
            size = (
                [float(s * rng.uniform(0.85, 1.15)) for s in size]
                if oi < objects_per_scene
                else list(size)
            )
            ann_tokens = [_token("ann", name, oi, k) for k in range(first, last + 1)]
            if cls in ("car", "truck", "bus", "trailer", "construction_vehicle"):
                attr_pool = ["vehicle.moving", "vehicle.parked", "vehicle.stopped"]
            elif cls == "pedestrian":
                attr_pool = [
                    "pedestrian.moving",
                    "pedestrian.standing",
                    "pedestrian.sitting_lying_down",
                ]
            elif cls in ("bicycle", "motorcycle"):
                attr_pool = ["cycle.with_rider", "cycle.without_rider"]
            else:
                attr_pool = []
            for j, k in enumerate(range(first, last + 1)):
                t_s = (times[k] - times[0]) * 1e-6
                xyz = start + vel * t_s
                if attr_pool and rng.random() < 0.93:
                    attrs = [attr_token[attr_pool[int(rng.integers(len(attr_pool)))]]]
                else:
                    attrs = []
                n_lidar = int(rng.integers(0, 400)) if rng.random() < 0.9 else 0
                n_radar = int(rng.integers(0, 3)) if rng.random() < 0.3 else 0
                if oi >= objects_per_scene:
                    n_lidar, n_radar = 10, 0
                sample_annotation.append(
                    {
                        "token": ann_tokens[j],
                        "sample_token": sample_tokens[k],
                        "instance_token": inst_token,
                        "visibility_token": "4",
                        "attribute_tokens": attrs,
                        "translation": [float(v) for v in xyz],
                        "size": size,
                        "rotation": _yaw_quaternion(yaw, tilt),
                        "prev": ann_tokens[j - 1] if j > 0 else "",
                        "next": ann_tokens[j + 1] if j + 1 < len(ann_tokens) else "",
                        "num_lidar_pts": n_lidar,
                        "num_radar_pts": n_radar,
                    }
                )
            instance.append(
                {
                    "token": inst_token,
                    "category_token": cat_token[cat],
                    "nbr_annotations": len(ann_tokens),
                    "first_annotation_token": ann_tokens[0],
                    "last_annotation_token": ann_tokens[-1],
                }
            )

    tables = {
        "category": category,
        "attribute": attribute,
        "visibility": visibility,
        "instance": instance,
        "sensor": sensor,
        "calibrated_sensor": calibrated_sensor,
        "ego_pose": ego_pose,
        "log": log,
        "scene": scene,
        "sample": sample,
        "sample_data": sample_data,
        "sample_annotation": sample_annotation,
        "map": map_table,
    }
    for name, rows in tables.items():
        (table_dir / f"{name}.json").write_bytes(orjson.dumps(rows))
    return AnnotationTablesInfo(
        root, version, tuple(scene_names), len(sample), len(sample_annotation)
    )
