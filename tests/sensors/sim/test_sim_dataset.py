"""The generated dataroot against the official devkit: loading, evaluation, point counts."""

import json

import cv2
import numpy as np
import pytest
from nuscenes.can_bus.can_bus_api import NuScenesCanBus
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box
from nuscenes.utils.splits import create_splits_scenes
from pyquaternion import Quaternion

from sensors.sim.writer import TABLES
from sensors.types import CAMERA_CHANNELS, DETECTION_CLASSES, LIDAR_CHANNEL, ULTRASONIC_CHANNEL
from sensors.ultrasonic_layout import default_layout


def test_devkit_loads_all_tables_and_files(tiny_nusc, tiny_root, tiny_cfg):
    nusc = tiny_nusc
    for t in TABLES:
        assert len(getattr(nusc, t)) > 0, t
    assert [s["name"] for s in nusc.scene] == ["scene-0061", "scene-0103"]
    assert len(nusc.sample) == 16
    channels = {LIDAR_CHANNEL, ULTRASONIC_CHANNEL, *CAMERA_CHANNELS}
    for sample in nusc.sample:
        assert set(sample["data"]) == channels
    modalities = {s["channel"]: s["modality"] for s in nusc.sensor}
    assert modalities[ULTRASONIC_CHANNEL] == "ultrasonic"
    n_key = {c: 0 for c in channels}
    for sd in nusc.sample_data:
        path = tiny_root / sd["filename"]
        assert path.is_file(), path
        assert sd["filename"].startswith("samples/" if sd["is_key_frame"] else "sweeps/")
        n_key[sd["channel"]] += sd["is_key_frame"]
        if sd["channel"] == LIDAR_CHANNEL:
            assert sd["fileformat"] == "pcd" and path.stat().st_size % 20 == 0
        elif sd["channel"] == ULTRASONIC_CHANNEL:
            assert sd["fileformat"] == "bin" and path.stat().st_size == 12 * 4
    assert all(v == 16 for v in n_key.values())
    # 20 Hz LiDAR and ultrasonic: 10 readings per keyframe interval, linked in time order.
    lidar = [sd for sd in nusc.sample_data if sd["channel"] == LIDAR_CHANNEL]
    assert len(lidar) == 160
    first = nusc.get("sample_data", nusc.sample[0]["data"][LIDAR_CHANNEL])
    chain, tok = [], first["token"]
    while tok:
        rec = nusc.get("sample_data", tok)
        chain.append(rec["timestamp"])
        tok = rec["next"]
    assert len(chain) == 80 and np.allclose(np.diff(chain), 50_000, atol=1)
    # Camera images decode at the recorded size with nuScenes-like intrinsics.
    sd = nusc.get("sample_data", nusc.sample[3]["data"]["CAM_FRONT"])
    img = cv2.imread(str(tiny_root / sd["filename"]))
    assert img.shape == (sd["height"], sd["width"], 3) == (450, 800, 3)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    k = np.array(cs["camera_intrinsic"])
    assert abs(k[0, 0] - 1266.4 / 2) < 1 and abs(k[0, 2] - 400) < 10
    back = nusc.get("calibrated_sensor", nusc.get(
        "sample_data", nusc.sample[3]["data"]["CAM_BACK"])["calibrated_sensor_token"])
    assert np.array(back["camera_intrinsic"])[0, 0] < k[0, 0] * 0.7  # wider lens


def test_scene_names_follow_devkit_splits(tiny_nusc):
    splits = create_splits_scenes()
    names = {s["name"] for s in tiny_nusc.scene}
    assert names & set(splits["mini_val"]) and names & set(splits["mini_train"])


def test_detection_eval_of_ground_truth_is_perfect(tiny_nusc, tmp_path):
    nusc = tiny_nusc
    val_scenes = {s["token"] for s in nusc.scene if s["name"] in create_splits_scenes()["mini_val"]}
    attr = {a["token"]: a["name"] for a in nusc.attribute}
    results = {s["token"]: [] for s in nusc.sample if s["scene_token"] in val_scenes}
    for ann in nusc.sample_annotation:
        if ann["sample_token"] not in results or ann["num_lidar_pts"] == 0:
            continue  # the devkit drops GT without points; such a prediction would be an FP
        vel = nusc.box_velocity(ann["token"])[:2]
        results[ann["sample_token"]].append({
            "sample_token": ann["sample_token"],
            "translation": ann["translation"],
            "size": ann["size"],
            "rotation": ann["rotation"],
            "velocity": [0.0, 0.0] if np.isnan(vel).any() else vel.tolist(),
            "detection_name": category_to_detection_name(ann["category_name"]),
            "detection_score": 1.0,
            "attribute_name": attr[ann["attribute_tokens"][0]] if ann["attribute_tokens"] else "",
        })
    path = tmp_path / "results.json"
    meta = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False,
            "use_external": False}
    path.write_text(json.dumps({"meta": meta, "results": results}))
    ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), "mini_val",
                       str(tmp_path / "eval"), verbose=False)
    metrics, _ = ev.evaluate()
    # Every class is present in the val scene, so a perfect mAP needs all ten.
    assert set(metrics.mean_dist_aps) == set(DETECTION_CLASSES)
    for cls, ap in metrics.mean_dist_aps.items():
        assert ap == pytest.approx(1.0, abs=1e-9), cls
    assert metrics.mean_ap == pytest.approx(1.0, abs=1e-9)
    assert metrics.nd_score == pytest.approx(1.0, abs=1e-9)


def test_num_lidar_pts_equals_devkit_count_on_written_sweep(tiny_nusc):
    nusc = tiny_nusc
    n_checked = n_nonzero = 0
    for sample in nusc.sample:
        tok = sample["data"][LIDAR_CHANNEL]
        path, boxes, _ = nusc.get_sample_data(tok)
        pc = LidarPointCloud.from_file(path)
        for box in boxes:
            ann = nusc.get("sample_annotation", box.token)
            count = int(points_in_box(box, pc.points[:3]).sum())
            assert count == ann["num_lidar_pts"], (ann["category_name"], count)
            n_checked += 1
            n_nonzero += count > 0
    assert n_checked > 100 and n_nonzero > 0.6 * n_checked


def test_annotations_are_consistent_tracks(tiny_nusc):
    nusc = tiny_nusc
    for inst in nusc.instance:
        toks, tok = [], inst["first_annotation_token"]
        while tok:
            toks.append(tok)
            tok = nusc.get("sample_annotation", tok)["next"]
        assert len(toks) == inst["nbr_annotations"] and toks[-1] == inst["last_annotation_token"]
        sizes = {tuple(nusc.get("sample_annotation", t)["size"]) for t in toks}
        assert len(sizes) == 1  # rigid objects keep their size along the track
    for ann in nusc.sample_annotation:
        name = category_to_detection_name(ann["category_name"])
        assert name in DETECTION_CLASSES
        attrs = [nusc.get("attribute", a)["name"] for a in ann["attribute_tokens"]]
        if name in ("traffic_cone", "barrier"):
            assert attrs == []
        elif name == "pedestrian":
            assert attrs[0].startswith("pedestrian.")
        elif name in ("bicycle", "motorcycle"):
            assert attrs[0].startswith("cycle.")
        else:
            assert attrs[0].startswith("vehicle.")
        assert ann["visibility_token"] in {"1", "2", "3", "4"}
        assert abs(np.linalg.norm(ann["rotation"]) - 1) < 1e-9


def test_class_sizes_are_nuscenes_like(tiny_nusc):
    mean_wlh = {"car": (1.95, 4.62, 1.73), "pedestrian": (0.67, 0.73, 1.77),
                "bus": (2.94, 11.19, 3.47), "traffic_cone": (0.41, 0.42, 1.07),
                "barrier": (2.53, 0.50, 0.98)}
    for ann in tiny_nusc.sample_annotation:
        name = category_to_detection_name(ann["category_name"])
        if name in mean_wlh:
            np.testing.assert_allclose(ann["size"], mean_wlh[name], rtol=0.25, err_msg=name)


def test_ego_motion_is_smooth_and_realistic(tiny_nusc):
    nusc = tiny_nusc
    for scene in nusc.scene:
        tok = nusc.get("sample", scene["first_sample_token"])["data"][LIDAR_CHANNEL]
        xy, ts = [], []
        while tok:
            sd = nusc.get("sample_data", tok)
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            xy.append(pose["translation"][:2])
            ts.append(pose["timestamp"] * 1e-6)
            tok = sd["next"]
        xy, ts = np.array(xy), np.array(ts)
        v = np.linalg.norm(np.diff(xy, axis=0), axis=1) / np.diff(ts)
        assert v.max() < 40.0 and v.mean() > 1.0
        acc = np.diff(v) / np.diff(ts)[1:]
        assert np.abs(acc).max() < 10.0


def test_can_bus_readable_by_devkit_and_matches_ego_poses(tiny_nusc, tiny_root):
    can = NuScenesCanBus(dataroot=str(tiny_root))
    nusc = tiny_nusc
    for scene in nusc.scene:
        pose = can.get_messages(scene["name"], "pose")
        monitor = can.get_messages(scene["name"], "vehicle_monitor")
        steer = can.get_messages(scene["name"], "steeranglefeedback")
        assert len(pose) == 200 and len(monitor) == 8 and len(steer) == 400
        by_time = {m["utime"]: m for m in pose}
        sample = nusc.get("sample", scene["first_sample_token"])
        n_match = 0
        while True:
            sd = nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
            ego = nusc.get("ego_pose", sd["ego_pose_token"])
            m = by_time.get(ego["timestamp"])
            if m is not None:
                np.testing.assert_allclose(m["pos"], ego["translation"], atol=1e-6)
                np.testing.assert_allclose(m["orientation"], ego["rotation"], atol=1e-9)
                n_match += 1
            if not sample["next"]:
                break
            sample = nusc.get("sample", sample["next"])
        assert n_match == 8
        # vehicle_monitor speed (km/h) agrees with the pose velocity (m/s).
        by_time_speed = {m["utime"]: m["vel"][0] for m in pose}
        for m in monitor:
            assert m["vehicle_speed"] / 3.6 == pytest.approx(by_time_speed[m["utime"]], abs=1e-6)
    meta = can.get_messages(nusc.scene[0]["name"], "meta")
    assert meta["sim_scenario"] in nusc.scene[0]["description"]


def test_ultrasonic_file_format(tiny_nusc, tiny_root):
    lay = default_layout()
    n_echo = 0
    for sd in tiny_nusc.sample_data:
        if sd["channel"] != ULTRASONIC_CHANNEL:
            continue
        r = np.fromfile(tiny_root / sd["filename"], dtype="<f4")
        assert r.shape == (12,)
        fin = r[np.isfinite(r)]
        assert np.all((fin >= lay.min_range_m) & (fin <= lay.max_range_m))
        n_echo += len(fin)
    assert n_echo > 0


def _bev_corners(translation, size, rotation):
    yaw = Quaternion(rotation).yaw_pitch_roll[0]
    w, length = size[0], size[1]
    loc = np.array([[length / 2, w / 2], [-length / 2, w / 2], [-length / 2, -w / 2],
                    [length / 2, -w / 2]])
    c, s = np.cos(yaw), np.sin(yaw)
    return loc @ np.array([[c, -s], [s, c]]).T + np.asarray(translation[:2])


def _overlap(a, b):
    """Separating-axis test of two convex quadrilaterals (touching is not overlapping)."""
    for poly in (a, b):
        for i in range(4):
            e = poly[(i + 1) % 4] - poly[i]
            n = np.array([-e[1], e[0]])
            pa, pb = a @ n, b @ n
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def test_no_two_agents_and_no_agent_and_ego_overlap(tiny_nusc):
    nusc = tiny_nusc
    for sample in nusc.sample:
        quads = [_bev_corners(a["translation"], a["size"], a["rotation"])
                 for a in (nusc.get("sample_annotation", t) for t in sample["anns"])]
        pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])[
            "ego_pose_token"])
        yaw = Quaternion(pose["rotation"]).yaw_pitch_roll[0]
        ego_centre = np.asarray(pose["translation"][:2]) + 1.3 * np.array([np.cos(yaw),
                                                                           np.sin(yaw)])
        ego = _bev_corners([*ego_centre, 0.0], [1.74, 4.3, 1.56], pose["rotation"])
        for i, qa in enumerate(quads):
            assert not _overlap(qa, ego)
            for qb in quads[i + 1:]:
                assert not _overlap(qa, qb)
