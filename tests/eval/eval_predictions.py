"""Prediction sets for the parity tests, built from the fixture database's annotations, and
the annotation-only databases they run on."""

from __future__ import annotations

import numpy as np

from eval.detection.synthetic import write_annotation_tables
from sensors.types import CATEGORY_TO_DETECTION_CLASS

META = {
    "use_camera": False,
    "use_lidar": True,
    "use_radar": False,
    "use_map": False,
    "use_external": False,
}
CLASSES = sorted(set(CATEGORY_TO_DETECTION_CLASS.values()))


def annotation_nusc(tmp_path_factory, name: str, **tables):
    """A devkit ``NuScenes`` over annotation-only ``v1.0-mini`` tables written in a temp dir."""
    from nuscenes import NuScenes

    root = tmp_path_factory.mktemp(name)
    write_annotation_tables(root, "v1.0-mini", **tables)
    return NuScenes("v1.0-mini", str(root), verbose=False)


def gt_records(nusc):
    """sample token -> list of (annotation, detection class, attribute name) in split order."""
    attr = {a["token"]: a["name"] for a in nusc.attribute}
    val_scenes = {sc["token"] for sc in nusc.scene if sc["name"] in ("scene-0103", "scene-0916")}
    out = {}
    for s in nusc.sample:
        if s["scene_token"] not in val_scenes:
            continue
        rows = []
        for at in s["anns"]:
            a = nusc.get("sample_annotation", at)
            cls = CATEGORY_TO_DETECTION_CLASS.get(a["category_name"])
            if cls is not None:
                name = attr[a["attribute_tokens"][0]] if a["attribute_tokens"] else ""
                rows.append((a, cls, name))
        out[s["token"]] = rows
    return out


def ego_xyz(nusc, sample_token):
    s = nusc.get("sample", sample_token)
    sd = nusc.get("sample_data", s["data"]["LIDAR_TOP"])
    return np.array(nusc.get("ego_pose", sd["ego_pose_token"])["translation"])


def _box(token, t, size, yaw, vel, cls, score, attr):
    return {
        "sample_token": token,
        "translation": [float(v) for v in t],
        "size": [float(v) for v in size],
        "rotation": [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))],
        "velocity": [float(v) for v in vel],
        "detection_name": cls,
        "detection_score": float(score),
        "attribute_name": attr,
    }


def _yaw(q):
    w, x, y, z = q
    return float(np.arctan2(2 * (x * y + w * z), w * w + x * x - y * y - z * z))


def make_predictions(nusc, kind: str, seed: int = 0) -> dict:
    """A results dict of the given kind over every sample of the database."""
    rng = np.random.default_rng(seed)
    recs = gt_records(nusc)
    results = {}
    for si, (token, rows) in enumerate(recs.items()):
        boxes = []
        ego = ego_xyz(nusc, token)
        for a, cls, attr in rows:
            vel = nusc.box_velocity(a["token"])[:2]
            vel = np.where(np.isfinite(vel), vel, 0.0)
            t = np.array(a["translation"])
            size = np.array(a["size"])
            yaw = _yaw(a["rotation"])
            score = rng.uniform(0.05, 1.0)
            if kind == "perfect":
                if a["num_lidar_pts"] + a["num_radar_pts"] == 0:
                    continue  # not evaluated: a prediction here would be a false positive
                boxes.append(_box(token, t, size, yaw, vel, cls, score, attr))
                continue
            if kind == "empty_samples" and si % 2 == 0:
                continue
            if kind == "missing_classes" and cls in ("bus", "trailer", "barrier", "pedestrian"):
                continue
            if rng.random() < 0.15:  # missed detection
                continue
            t = t + rng.normal(0, 0.7, 3)
            size = size * rng.uniform(0.7, 1.3, 3)
            yaw = yaw + rng.normal(0, 0.4) + (np.pi if rng.random() < 0.1 else 0.0)
            vel = vel + rng.normal(0, 0.8, 2)
            if kind == "ties":
                score = rng.choice([0.25, 0.5, 0.75])
                # An exact duplicate of the box: equal distance to every ground truth.
                boxes.append(_box(token, t, size, yaw, vel, cls, score, attr))
            if rng.random() < 0.2:  # wrong attribute
                attr = "" if rng.random() < 0.5 else attr
                if cls in ("car", "truck", "bus", "trailer", "construction_vehicle"):
                    attr = str(rng.choice(["vehicle.moving", "vehicle.parked", "vehicle.stopped"]))
            boxes.append(_box(token, t, size, yaw, vel, cls, score, attr))
        n_fp = {"many_false_positives": 150, "perfect": 0}.get(kind, 6)
        if kind == "ties":
            n_fp = 10
        for _ in range(n_fp):
            cls = str(rng.choice(CLASSES))
            t = ego + np.array([*rng.uniform(-60, 60, 2), rng.uniform(-1, 2)])
            score = rng.choice([0.25, 0.5]) if kind == "ties" else rng.uniform(0, 0.9)
            boxes.append(
                _box(
                    token,
                    t,
                    rng.uniform(0.3, 5, 3),
                    rng.uniform(-3, 3),
                    rng.normal(0, 2, 2),
                    cls,
                    score,
                    "",
                )
            )
        if kind == "edges":
            # Exactly at the class range, and exactly 0.5/1/2/4 m from the planted ground truth
            # car at ego + (29, 40) on the first sample of each scene (integer coordinates).
            boxes.append(
                _box(token, ego + [30.0, 40.0, 0.5], [1.9, 4.6, 1.7], 0.3, [0, 0], "car", 0.9, "")
            )
            boxes.append(
                _box(
                    token,
                    ego + [18.0, -24.0, 0.3],
                    [0.4, 0.4, 1.0],
                    0.0,
                    [0, 0],
                    "traffic_cone",
                    0.85,
                    "",
                )
            )
            # (29 + 2, 40) is beyond the 50 m range: dropped before matching.
            for off, sc in ((2.0, 0.95), (4.0, 0.94), (0.5, 0.3), (1.0, 0.31), (-2.0, 0.2)):
                boxes.append(
                    _box(
                        token,
                        ego + [29.0 - off, 40.0, 0.5],
                        [1.9, 4.6, 1.7],
                        1.0,
                        [0, 0],
                        "car",
                        sc,
                        "vehicle.parked",
                    )
                )
            # A prediction that states zero points is dropped by the official filter.
            b = _box(token, ego + [5.0, 5.0, 0.0], [1.9, 4.6, 1.7], 0.0, [0, 0], "car", 0.99, "")
            b["num_pts"] = 0
            boxes.append(b)
            # Score exactly 0 and barrier headings a half-turn apart.
            boxes.append(
                _box(token, ego + [3.0, -3.0, 0.0], [1.9, 4.6, 1.7], 0.0, [0, 0], "car", 0.0, "")
            )
        results[token] = boxes
    return {"meta": dict(META), "results": results}
