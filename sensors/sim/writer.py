"""Write simulated drives as a nuScenes dataroot the official devkit loads unchanged.

Layout written under ``out_dir``::

    <version>/{category,attribute,visibility,instance,sensor,calibrated_sensor,ego_pose,log,
               scene,sample,sample_data,sample_annotation,map}.json
    samples/<CHANNEL>/<log>__<CHANNEL>__<timestamp_us>.{pcd.bin,jpg,bin}   keyframes (2 Hz)
    sweeps/<CHANNEL>/...                                                  all other readings
    maps/<token>.png                                                      ground material map
    can_bus/scene-XXXX_{pose,ms_imu,steeranglefeedback,vehicle_monitor,zoesensors,
                         zoe_veh_info,meta,route}.json

Scenes are independent (each has its own seeded random streams), so they are simulated as
units of ``eval.executor.run_units`` (local processes, or Ray tasks) and their tables merged
in scene order: output is byte-identical for a seed whatever the executor and worker count.
Each unit writes its scene's files itself, so on a Ray cluster ``out_dir`` must be a folder
every node sees (a shared file system).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import orjson
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import points_in_box
from nuscenes.utils.splits import create_splits_scenes
from pyquaternion import Quaternion

from calibration.se3 import SE3
from sensors.sim import rig
from sensors.sim.config import SimConfig
from sensors.sim.raycast import simulate_lidar, simulate_ultrasonic
from sensors.sim.render import CameraModel, RenderOutput, lighting_for, render_camera
from sensors.sim.scenarios import build_world
from sensors.sim.world import Primitives, World
from sensors.types import (
    CAMERA_CHANNELS,
    DETECTION_CLASS_CATEGORY,
    LIDAR_CHANNEL,
    ULTRASONIC_CHANNEL,
)
from sensors.ultrasonic_layout import default_layout

if TYPE_CHECKING:
    from eval.executor import ExecutorConfig

TABLES: tuple[str, ...] = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)

# nuScenes categories (all 23 + the static bicycle rack; descriptions abridged from nuScenes).
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("human.pedestrian.adult", "Adult subcategory."),
    ("human.pedestrian.child", "Child subcategory."),
    ("human.pedestrian.wheelchair", "Wheelchairs."),
    ("human.pedestrian.stroller", "Strollers."),
    ("human.pedestrian.personal_mobility", "Skateboards, segways, scooters."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.construction_worker", "Construction worker."),
    ("animal", "All animals."),
    ("vehicle.car", "Vehicle designed primarily for personal use."),
    ("vehicle.motorcycle", "Gasoline or electric powered 2-wheeled vehicle."),
    ("vehicle.bicycle", "Human or electric powered 2-wheeled vehicle."),
    ("vehicle.bus.bendy", "Bendy bus subcategory."),
    ("vehicle.bus.rigid", "Rigid bus subcategory."),
    ("vehicle.truck", "Vehicles primarily designed to haul cargo."),
    ("vehicle.construction", "Vehicles primarily designed for construction."),
    ("vehicle.emergency.ambulance", "All types of ambulances."),
    ("vehicle.emergency.police", "All types of police vehicles."),
    ("vehicle.trailer", "Any vehicle trailer."),
    ("movable_object.barrier", "Temporary road barrier placed in the scene."),
    ("movable_object.trafficcone", "All types of traffic cone."),
    ("movable_object.pushable_pullable", "Objects that a pedestrian may push or pull."),
    ("movable_object.debris", "Movable object that is left on the driveable surface."),
    ("static_object.bicycle_rack", "Area or device intended to park or secure bicycles."),
)
ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle, with a driver/rider in/on it, is currently stationary."),
    ("vehicle.parked", "Vehicle is stationary (usually for longer duration) with no rider."),
    ("cycle.with_rider", "There is a rider on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is NO rider on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The human is sitting or lying down."),
    ("pedestrian.standing", "The human is standing."),
    ("pedestrian.moving", "The human is moving."),
)
VISIBILITY: tuple[tuple[str, str, str], ...] = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)

ANNOTATION_RANGE_M = 75.0  # agents further from the ego than this are not annotated
MIN_VISIBLE_PIXELS = 30  # an agent with no LiDAR point is annotated when this visible
CAN_POSE_HZ, CAN_IMU_HZ, CAN_MONITOR_HZ = 50.0, 100.0, 2.0
STEERING_RATIO = 14.8
SCENE_EPOCH_US = 1_533_000_000_000_000  # nuScenes-era timestamps (2018)


def token(*parts: object) -> str:
    """Deterministic 32-hex-digit token from its parts (nuScenes tokens look the same)."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def scene_names(cfg: SimConfig) -> list[tuple[str, str]]:
    """(scene name, split) of each scene, taken from the devkit's split lists.

    Val scenes are spread so that any set of >= 2 scenes has one and so that they fall on
    different scenario kinds / conditions (scenario = index % 5, condition = index % 6):
    for v1.0-mini the order is train0, val0, train1..3, val1, train4..7 (val at indices 1 and
    5: curved urban road in clear weather, straight urban road at night); for v1.0-trainval
    scene i is a val scene when ``i % 5 == (1 + i // 5) % 5`` (one in five, rotating over the
    kinds). Scenes without CAN bus data in the real dataset are skipped so the devkit's
    ``NuScenesCanBus`` blacklist never rejects ours.
    """
    splits = create_splits_scenes()
    if cfg.version == "v1.0-mini":
        tr, va = splits["mini_train"], splits["mini_val"]
        order = [(tr[0], "mini_train"), (va[0], "mini_val")]
        order += [(n, "mini_train") for n in tr[1:4]] + [(va[1], "mini_val")]
        order += [(n, "mini_train") for n in tr[4:]]
        return order[: cfg.num_scenes]
    can_blacklist = set(range(161, 177)) | set(range(309, 315))
    tr = [n for n in splits["train"] if int(n[-4:]) not in can_blacklist]
    va = [n for n in splits["val"] if int(n[-4:]) not in can_blacklist]
    out: list[tuple[str, str]] = []
    it_tr, it_va = iter(tr), iter(va)
    for i in range(cfg.num_scenes):
        is_val = i % 5 == (1 + i // 5) % 5
        out.append((next(it_va), "val") if is_val else (next(it_tr), "train"))
    return out


def _yaw_quat(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2.0)), 0.0, 0.0, float(np.sin(yaw / 2.0))]


def _f(x: np.ndarray | list[float]) -> list[float]:
    return [float(v) for v in x]


@dataclass(frozen=True)
class _Rig:
    """Sensor geometry shared by all scenes of one config."""

    cameras: tuple[CameraModel, ...]
    lidar: SE3
    dirs_lidar_ego: np.ndarray  # (R, 3) unit rays in the ego frame, firing order
    ring: np.ndarray  # (R,)


def _make_rig(cfg: SimConfig) -> _Rig:
    cams = tuple(
        CameraModel.build(
            s.channel,
            rig.camera_intrinsics(s, cfg.image_width, cfg.image_height),
            cfg.image_width,
            cfg.image_height,
            rig.ego_SE3_camera(s),
        )
        for s in rig.CAMERA_SPECS
    )
    lc = cfg.lidar
    el = rig.lidar_beam_elevations_rad(lc.num_beams, lc.elevation_min_deg, lc.elevation_max_deg)
    # Firing order: the head spins clockwise seen from above starting behind the car, like
    # nuScenes' HDL-32E; all beams fire at each azimuth step.
    az = np.pi - np.arange(lc.azimuth_steps) * (2 * np.pi / lc.azimuth_steps)
    a, e = np.meshgrid(az, el, indexing="ij")
    dirs = np.stack([np.cos(a) * np.cos(e), np.sin(a) * np.cos(e), np.sin(e)], axis=-1)
    ring = np.broadcast_to(np.arange(lc.num_beams), a.shape)
    return _Rig(cams, rig.ego_SE3_lidar(), dirs.reshape(-1, 3), ring.reshape(-1).copy())


def _with_ego(prims: Primitives, world_SE3_ego: SE3) -> tuple[Primitives, np.ndarray]:  # noqa: N803
    """Append the ego body boxes (LiDAR self-occluders); also return their mask."""
    k = len(rig.EGO_BODY_BOXES)
    centres = world_SE3_ego.transform_points(np.array([c for c, _ in rig.EGO_BODY_BOXES]))
    halves = np.array([h for _, h in rig.EGO_BODY_BOXES])
    out = Primitives(
        np.concatenate([prims.center, centres]),
        np.concatenate([prims.half, halves]),
        np.concatenate([prims.yaw, np.full(k, world_SE3_ego.yaw_rad)]),
        np.concatenate([prims.rgb, np.zeros((k, 3), np.float32)]),
        np.concatenate([prims.reflectivity, np.zeros(k, np.float32)]),
        np.concatenate([prims.owner, np.full(k, -3, np.int32)]),
    )
    mask = np.zeros(len(out.yaw), dtype=bool)
    mask[-k:] = True
    return out, mask


class _SceneWriter:
    """Simulates one scene, writes its files, and returns its table records."""

    def __init__(self, cfg: SimConfig, index: int, name: str, out_dir: Path,
                 progress: Callable[[int], None]) -> None:
        self.cfg = cfg
        self.index = index
        self.name = name
        self.out = out_dir
        self.progress = progress
        self.seed = cfg.seed
        self.rig = _make_rig(cfg)
        scenario = cfg.scenario_for(index)
        condition = cfg.condition_for(index)
        self.world: World = build_world(
            scenario, condition, np.random.default_rng([cfg.seed, index, 0]),
            cfg.scene_duration_s, cfg.agents_scale,
        )
        self.light = lighting_for(condition, np.random.default_rng([cfg.seed, index, 4]))
        self.log_name = f"sim{cfg.seed:04d}-{index:04d}-{name}"
        self.t0_us = SCENE_EPOCH_US + index * 100_000_000 + cfg.seed * 10_000_000_000
        self.tables: dict[str, list[dict]] = {t: [] for t in TABLES}
        self.layout = default_layout()

    # -- tokens ------------------------------------------------------------------------------
    def tok(self, *parts: object) -> str:
        return token(self.seed, self.name, *parts)

    # -- main --------------------------------------------------------------------------------
    def run(self) -> dict[str, list[dict]]:
        cfg = self.cfg
        n_samples = max(1, int(round(cfg.scene_duration_s * cfg.keyframe_hz)))
        ratio = int(round(cfg.lidar_hz / cfg.keyframe_hz))
        cam_ratio = int(round(cfg.camera_hz / cfg.keyframe_hz))
        n_sweeps = n_samples * ratio
        sample_tokens = [self.tok("sample", j) for j in range(n_samples)]
        sample_ts = [self.t0_us + int(round(j * 1e6 / cfg.keyframe_hz)) for j in range(n_samples)]
        self._static_records(n_samples, sample_tokens)
        for j in range(n_samples):
            self.tables["sample"].append(
                {
                    "token": sample_tokens[j],
                    "timestamp": sample_ts[j],
                    "prev": sample_tokens[j - 1] if j > 0 else "",
                    "next": sample_tokens[j + 1] if j + 1 < n_samples else "",
                    "scene_token": self.tok("scene"),
                }
            )
        # Per-channel lists of sample_data records (linked at the end).
        channels = (LIDAR_CHANNEL, ULTRASONIC_CHANNEL, *CAMERA_CHANNELS)
        if not cfg.write_ultrasonic:
            channels = (LIDAR_CHANNEL, *CAMERA_CHANNELS)
        sd: dict[str, list[dict]] = {c: [] for c in channels}
        ann_by_agent: dict[int, list[dict]] = {}
        for k in range(n_sweeps):
            ts = self.t0_us + int(round(k * 1e6 / cfg.lidar_hz))
            key = k % ratio == 0
            j = k // ratio if key else min(int(round(k / ratio)), n_samples - 1)
            points, states, lidar_ego = self._lidar(k, ts, key, j, sample_tokens[j], sd)
            if cfg.write_ultrasonic:
                self._ultrasonic(k, ts, key, sample_tokens[j], sd)
            if key:
                visible, coverage = self._cameras_keyframe(j, sample_ts[j], sample_tokens[j], sd)
                self._annotate(j, sample_tokens[j], points, states, visible, coverage,
                               lidar_ego, ann_by_agent)
            self.progress(1)
        if cfg.camera_at_sweeps:
            self._camera_sweeps(n_samples, cam_ratio, sample_tokens, sample_ts, sd)
        for recs in sd.values():
            recs.sort(key=lambda r: r["timestamp"])
            for a, b in zip(recs[:-1], recs[1:]):
                a["next"] = b["token"]
                b["prev"] = a["token"]
            self.tables["sample_data"].extend(recs)
        self._instances(ann_by_agent)
        self._can_bus(n_samples)
        return self.tables

    # -- static tables -----------------------------------------------------------------------
    def _static_records(self, n_samples: int, sample_tokens: list[str]) -> None:
        cfg = self.cfg
        w = self.world
        log_tok = self.tok("log")
        map_tok = self.tok("map")
        self.tables["log"].append(
            {
                "token": log_tok,
                "logfile": self.log_name,
                "vehicle": "sim-zoe",
                "date_captured": "2018-08-01",
                "location": w.map_name,
            }
        )
        map_file = f"maps/{map_tok}.png"
        (self.out / "maps").mkdir(parents=True, exist_ok=True)
        # Semantic prior: the ground material raster as a grey-level PNG (raster frame, see
        # GroundMap; rows flipped so that the raster y axis points up in the image).
        mat = w.ground.material[::-1]
        png = np.array([255, 200, 120, 0, 180], dtype=np.uint8)[mat]
        ok, buf = cv2.imencode(".png", png)
        assert ok
        (self.out / map_file).write_bytes(buf.tobytes())
        self.tables["map"].append(
            {"token": map_tok, "log_tokens": [log_tok], "category": "semantic_prior",
             "filename": map_file}
        )
        self.tables["scene"].append(
            {
                "token": self.tok("scene"),
                "log_token": log_tok,
                "nbr_samples": n_samples,
                "first_sample_token": sample_tokens[0],
                "last_sample_token": sample_tokens[-1],
                "name": self.name,
                "description": w.description,
            }
        )
        cs = self.tables["calibrated_sensor"]
        lid = self.rig.lidar
        cs.append({"token": self.tok("cs", LIDAR_CHANNEL), "sensor_token": sensor_token(
            LIDAR_CHANNEL), "translation": _f(lid.translation), "rotation": _f(lid.quaternion()),
            "camera_intrinsic": []})
        if cfg.write_ultrasonic:
            # The ULTRASONIC "sensor frame" is the ego frame: the 12 transducer poses are
            # sensors.ultrasonic_layout.default_layout() (ego frame), in file order.
            cs.append({"token": self.tok("cs", ULTRASONIC_CHANNEL),
                       "sensor_token": sensor_token(ULTRASONIC_CHANNEL),
                       "translation": [0.0, 0.0, 0.0], "rotation": [1.0, 0.0, 0.0, 0.0],
                       "camera_intrinsic": []})
        for cam in self.rig.cameras:
            cs.append({"token": self.tok("cs", cam.channel),
                       "sensor_token": sensor_token(cam.channel),
                       "translation": _f(cam.ego_SE3_cam.translation),
                       "rotation": _f(cam.ego_SE3_cam.quaternion()),
                       "camera_intrinsic": [_f(r) for r in cam.intrinsics]})

    # -- poses -------------------------------------------------------------------------------
    def _ego(self, t_s: float) -> SE3:
        xy, yaw = self.world.ego_pose(t_s)
        return SE3.from_yaw(yaw, np.array([xy[0], xy[1], 0.0]))

    def _ego_record(self, channel: str, ts: int) -> tuple[str, SE3, dict]:
        pose = self._ego((ts - self.t0_us) * 1e-6)
        tok = self.tok("ego_pose", channel, ts)
        rec = {"token": tok, "timestamp": ts, "rotation": _yaw_quat(pose.yaw_rad),
               "translation": _f(pose.translation)}
        self.tables["ego_pose"].append(rec)
        # Re-derive the pose from the rounded record so files and tables agree exactly.
        return tok, SE3.from_quaternion(rec["rotation"], rec["translation"]), rec

    def _sd_record(self, channel: str, ts: int, key: bool, sample_token: str, filename: str,
                   fileformat: str, ego_tok: str, width: int = 0, height: int = 0) -> dict:
        return {
            "token": self.tok("sd", channel, ts),
            "sample_token": sample_token,
            "ego_pose_token": ego_tok,
            "calibrated_sensor_token": self.tok("cs", channel),
            "timestamp": ts,
            "fileformat": fileformat,
            "is_key_frame": key,
            "height": height,
            "width": width,
            "filename": filename,
            "prev": "",
            "next": "",
        }

    def _path(self, channel: str, ts: int, key: bool, ext: str) -> str:
        folder = "samples" if key else "sweeps"
        rel = f"{folder}/{channel}/{self.log_name}__{channel}__{ts}.{ext}"
        (self.out / folder / channel).mkdir(parents=True, exist_ok=True)
        return rel

    # -- sensors -----------------------------------------------------------------------------
    def _lidar(self, k, ts, key, j, sample_token, sd):
        cfg = self.cfg
        t_s = (ts - self.t0_us) * 1e-6
        ego_tok, world_SE3_ego, ego_rec = self._ego_record(LIDAR_CHANNEL, ts)  # noqa: N806
        states = self.world.agent_states(t_s)
        scene_prims = self.world.primitives(t_s, states)
        self._prims_cache = (ts, scene_prims)
        prims, own = _with_ego(scene_prims, world_SE3_ego)
        world_SE3_lidar = world_SE3_ego @ self.rig.lidar  # noqa: N806
        dirs = self.rig.dirs_lidar_ego @ world_SE3_ego.rotation.T
        lc = cfg.lidar
        cond = self.world.condition
        max_range = lc.max_range_m * (0.55 if cond == "fog" else 1.0)
        ret = simulate_lidar(
            world_SE3_lidar.translation, dirs, self.rig.ring, prims, self.world.ground,
            max_range, lc.range_noise_m, lc.dropout,
            np.random.default_rng([cfg.seed, self.index, 1, k]), own,
            fog=cond == "fog", rain=cond == "rain",
        )
        pts_l = world_SE3_lidar.inverse().transform_points(ret.points_world)
        cloud = np.concatenate(
            [pts_l, ret.intensity[:, None], ret.ring[:, None]], axis=1
        ).astype(np.float32)
        rel = self._path(LIDAR_CHANNEL, ts, key, "pcd.bin")
        cloud.tofile(self.out / rel)
        sd[LIDAR_CHANNEL].append(
            self._sd_record(LIDAR_CHANNEL, ts, key, sample_token, rel, "pcd", ego_tok)
        )
        return cloud, states, ego_rec

    def _ultrasonic(self, k, ts, key, sample_token, sd):
        cfg = self.cfg
        t_s = (ts - self.t0_us) * 1e-6
        ego_tok, world_SE3_ego, _ = self._ego_record(ULTRASONIC_CHANNEL, ts)  # noqa: N806
        cached = getattr(self, "_prims_cache", None)
        prims = cached[1] if cached is not None and cached[0] == ts else self.world.primitives(t_s)
        lay = self.layout
        pos = world_SE3_ego.transform_points(lay.position_ego_m)
        yaws = lay.yaw_ego_rad + world_SE3_ego.yaw_rad
        ranges = simulate_ultrasonic(
            pos, yaws, lay.half_fov_rad, lay.min_range_m, lay.max_range_m, prims,
            np.random.default_rng([cfg.seed, self.index, 2, k]),
        )
        rel = self._path(ULTRASONIC_CHANNEL, ts, key, "bin")
        ranges.astype("<f4").tofile(self.out / rel)
        sd[ULTRASONIC_CHANNEL].append(
            self._sd_record(ULTRASONIC_CHANNEL, ts, key, sample_token, rel, "bin", ego_tok)
        )

    def _render(self, cam_i: int, ts: int, frame_id: int) -> tuple[str, object]:
        cam = self.rig.cameras[cam_i]
        t_s = (ts - self.t0_us) * 1e-6
        ego_tok, world_SE3_ego, _ = self._ego_record(cam.channel, ts)  # noqa: N806
        prims = self.world.primitives(t_s)
        out = render_camera(
            cam, world_SE3_ego, prims, len(self.world.agents), self.world.ground, self.light,
            np.random.default_rng([self.cfg.seed, self.index, 3, frame_id, cam_i]),
            self.world.lamps_xy,
        )
        return ego_tok, out

    def _write_jpeg(self, rel: str, image: np.ndarray) -> None:
        ok, buf = cv2.imencode(
            ".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(self.cfg.jpeg_quality)]
        )
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {rel}")
        (self.out / rel).write_bytes(buf.tobytes())

    def _cameras_keyframe(self, j, sample_ts, sample_token, sd):
        n_agents = len(self.world.agents)
        visible = np.zeros(n_agents, dtype=np.int64)
        coverage = np.zeros(n_agents, dtype=np.int64)
        cam_ratio = int(round(self.cfg.camera_hz / self.cfg.keyframe_hz))
        for ci, spec in enumerate(rig.CAMERA_SPECS):
            ts = sample_ts + spec.time_offset_us
            ego_tok, out = self._render(ci, ts, j * cam_ratio)
            if n_agents:
                ids = out.instance[out.instance >= 0]
                visible += np.bincount(ids, minlength=n_agents)[:n_agents]
                coverage += out.coverage
            rel = self._path(spec.channel, ts, True, "jpg")
            self._write_jpeg(rel, out.image)
            sd[spec.channel].append(
                self._sd_record(spec.channel, ts, True, sample_token, rel, "jpg", ego_tok,
                                self.cfg.image_width, self.cfg.image_height)
            )
        return visible, coverage

    def _camera_sweeps(self, n_samples, cam_ratio, sample_tokens, sample_ts, sd):
        for m in range(n_samples * cam_ratio):
            if m % cam_ratio == 0:
                continue
            j = min(int(round(m / cam_ratio)), n_samples - 1)
            base = self.t0_us + int(round(m * 1e6 / self.cfg.camera_hz))
            for ci, spec in enumerate(rig.CAMERA_SPECS):
                ts = base + spec.time_offset_us
                ego_tok, out = self._render(ci, ts, m)
                rel = self._path(spec.channel, ts, False, "jpg")
                self._write_jpeg(rel, out.image)
                sd[spec.channel].append(
                    self._sd_record(spec.channel, ts, False, sample_tokens[j], rel, "jpg",
                                    ego_tok, self.cfg.image_width, self.cfg.image_height)
                )

    # -- annotations -------------------------------------------------------------------------
    def _annotate(self, j, sample_token, cloud, states, visible, coverage, ego_rec,
                  ann_by_agent) -> None:
        cs_rec = self.tables["calibrated_sensor"][0]
        ego_xy = np.asarray(ego_rec["translation"][:2])
        pts = cloud[:, :3].T  # float32, exactly what the devkit reads back
        for i, ag in enumerate(self.world.agents):
            c = states.center[i]
            if np.hypot(*(c[:2] - ego_xy)) > ANNOTATION_RANGE_M:
                continue
            rec_t = _f(c)
            rec_s = _f(ag.wlh)
            rec_r = _yaw_quat(float(states.yaw[i]))
            n_pts = count_points_in_box(pts, rec_t, rec_s, rec_r, ego_rec, cs_rec)
            if n_pts == 0 and visible[i] < MIN_VISIBLE_PIXELS:
                continue
            vis = visible[i] / coverage[i] if coverage[i] > 0 else 0.0
            vis_tok = "1" if vis < 0.4 else "2" if vis < 0.6 else "3" if vis < 0.8 else "4"
            attr = states.attributes[i]
            ann = {
                "token": self.tok("ann", i, j),
                "sample_token": sample_token,
                "instance_token": self.tok("instance", i),
                "visibility_token": vis_tok,
                "attribute_tokens": [attribute_token(attr)] if attr else [],
                "translation": rec_t,
                "size": rec_s,
                "rotation": rec_r,
                "prev": "",
                "next": "",
                "num_lidar_pts": int(n_pts),
                "num_radar_pts": 0,
            }
            ann_by_agent.setdefault(i, []).append(ann)

    def _instances(self, ann_by_agent: dict[int, list[dict]]) -> None:
        for i in sorted(ann_by_agent):
            anns = ann_by_agent[i]
            for a, b in zip(anns[:-1], anns[1:]):
                a["next"] = b["token"]
                b["prev"] = a["token"]
            self.tables["sample_annotation"].extend(anns)
            self.tables["instance"].append(
                {
                    "token": self.tok("instance", i),
                    "category_token": category_token(
                        DETECTION_CLASS_CATEGORY[self.world.agents[i].cls]
                    ),
                    "nbr_annotations": len(anns),
                    "first_annotation_token": anns[0]["token"],
                    "last_annotation_token": anns[-1]["token"],
                }
            )
        # Annotations grouped by sample (nuScenes order) for stable, readable tables.
        order = {r["token"]: n for n, r in enumerate(self.tables["sample"])}
        self.tables["sample_annotation"].sort(key=lambda a: (order[a["sample_token"]],
                                                             a["instance_token"]))

    # -- CAN bus -----------------------------------------------------------------------------
    def _can_bus(self, n_samples: int) -> None:
        ego = self.world.ego
        dur = n_samples / self.cfg.keyframe_hz
        can = self.out / "can_bus"
        can.mkdir(parents=True, exist_ok=True)

        def states(hz: float):
            t = np.arange(0.0, dur, 1.0 / hz)
            return t, ego.at(t)

        def utime(t: np.ndarray) -> list[int]:
            return [self.t0_us + int(round(x * 1e6)) for x in t]

        def steer_rad(st) -> np.ndarray:
            # Bicycle model: road-wheel angle = atan(wheelbase * curvature), times ratio.
            curv = np.where(st["v"] > 0.1, st["yaw_rate"] / np.maximum(st["v"], 0.1), 0.0)
            return np.arctan(rig.EGO_WHEELBASE_M * curv) * STEERING_RATIO

        t, st = states(CAN_POSE_HZ)
        pose = [
            {
                "utime": u,
                "pos": [float(st["xy"][n, 0]), float(st["xy"][n, 1]), 0.0],
                "orientation": _yaw_quat(float(st["yaw"][n])),
                "vel": [float(st["v"][n]), 0.0, 0.0],
                "accel": [float(st["a"][n]), float(st["v"][n] * st["yaw_rate"][n]), 9.81],
                "rotation_rate": [0.0, 0.0, float(st["yaw_rate"][n])],
            }
            for n, u in enumerate(utime(t))
        ]
        t, st = states(CAN_IMU_HZ)
        steer = steer_rad(st)
        imu = [
            {
                "utime": u,
                "linear_accel": [float(st["a"][n]), float(st["v"][n] * st["yaw_rate"][n]), 9.81],
                "q": _yaw_quat(float(st["yaw"][n])),
                "rotation_rate": [0.0, 0.0, float(st["yaw_rate"][n])],
            }
            for n, u in enumerate(utime(t))
        ]
        steer_msgs = [{"utime": u, "value": float(steer[n])} for n, u in enumerate(utime(t))]
        throttle = np.clip(st["a"] / 2.0, 0.0, 1.0)
        zoe = [
            {
                "utime": u,
                "brake_sensor": float(0.15 + 0.85 * st["brake"][n]),
                "steering_sensor": float(steer[n]),
                "throttle_sensor": float(throttle[n] * 200.0),
                "aeb": bool(st["aeb"][n]),
            }
            for n, u in enumerate(utime(t))
        ]
        wheel_rpm = st["v"] / (2 * np.pi * 0.305) * 60.0
        veh = [
            {
                "utime": u,
                "FL_wheel_speed": float(wheel_rpm[n]),
                "FR_wheel_speed": float(wheel_rpm[n]),
                "RL_wheel_speed": float(wheel_rpm[n]),
                "RR_wheel_speed": float(wheel_rpm[n]),
                "left_solar": 0.0,
                "right_solar": 0.0,
                "longitudinal_accel": float(st["a"][n]),
                "transversal_accel": float(st["v"][n] * st["yaw_rate"][n]),
                "meanEffTorque": float(throttle[n] * 220.0),
                "requestedTorqueAfterProc": float(throttle[n] * 220.0),
                "yaw_rate": float(np.degrees(st["yaw_rate"][n])),
                "steer_corrected": float(np.degrees(steer[n])),
            }
            for n, u in enumerate(utime(t))
        ]
        t, st = states(CAN_MONITOR_HZ)
        steer = steer_rad(st)
        odom = np.interp(t, ego.t, ego.s)
        monitor = [
            {
                "utime": u,
                "vehicle_speed": float(st["v"][n] * 3.6),
                "steering": float(np.degrees(steer[n])),
                "steering_speed": 0.0,
                "throttle": int(round(np.clip(st["a"][n] / 2.0, 0, 1) * 200)),
                "brake": int(round(st["brake"][n] * 126)),
                "aeb": bool(st["aeb"][n]),
                "gear_position": 7 if st["v"][n] > 0.01 else 0,
                "left_signal": 0,
                "right_signal": 0,
                "available_distance": 150,
                "battery_level": 80,
                "odom": float(odom[n] * 100.0),
                "odom_speed": float(st["v"][n] * 3.6),
                "rear_left_rpm": float(st["v"][n] / (2 * np.pi * 0.305) * 60.0),
                "rear_right_rpm": float(st["v"][n] / (2 * np.pi * 0.305) * 60.0),
                "yaw_rate": float(np.degrees(st["yaw_rate"][n])),
            }
            for n, u in enumerate(utime(t))
        ]
        aeb_t = ego.t[ego.aeb]
        intervals: list[list[int]] = []
        if len(aeb_t):
            breaks = np.flatnonzero(np.diff(aeb_t) > 1.5 * ego.DT)
            starts = np.concatenate([[aeb_t[0]], aeb_t[breaks + 1]])
            ends = np.concatenate([aeb_t[breaks], [aeb_t[-1]]])
            intervals = [[self.t0_us + int(round(a * 1e6)), self.t0_us + int(round(b * 1e6))]
                         for a, b in zip(starts, ends)]
        meta = {
            "distance": float(odom[-1]),
            "duration": float(dur),
            "mean_speed": float(np.mean(ego.at(np.arange(0, dur, 0.1))["v"])),
            "sim_scenario": self.world.scenario,
            "sim_condition": self.world.condition,
            "sim_description": self.world.description,
            "sim_aeb_intervals_utime": intervals,
        }
        route_s = np.arange(0.0, ego.path.length, 5.0)
        route_xy, _ = ego.path.pose(route_s)
        route = [[float(x), float(y)] for x, y in route_xy]
        for msg, data in (
            ("pose", pose), ("ms_imu", imu), ("steeranglefeedback", steer_msgs),
            ("vehicle_monitor", monitor), ("zoesensors", zoe), ("zoe_veh_info", veh),
            ("meta", meta), ("route", route),
        ):
            (can / f"{self.name}_{msg}.json").write_bytes(orjson.dumps(data))


def count_points_in_box(
    points_lidar: np.ndarray, translation: list[float], size: list[float],
    rotation: list[float], ego_pose: dict, calibrated_sensor: dict,
) -> int:
    """LiDAR points inside an annotation box, exactly as the devkit would count them.

    The box (global frame, from its table values) is moved into the sensor frame with the
    same operations as ``NuScenes.get_sample_data`` and tested with the devkit's
    ``points_in_box`` against the float32 points as written to the file.

    Args:
        points_lidar: (3, N) float32 points in the LiDAR frame.
        translation: the annotation record's ``translation`` (global frame).
        size: its ``size`` (w, l, h).
        rotation: its ``rotation`` quaternion (w, x, y, z).
        ego_pose: the ego_pose record of the LiDAR sample_data.
        calibrated_sensor: the LiDAR's calibrated_sensor record.

    Returns:
        Number of points inside.

    """
    box = Box(translation, size, Quaternion(rotation))
    box.translate(-np.array(ego_pose["translation"]))
    box.rotate(Quaternion(ego_pose["rotation"]).inverse)
    box.translate(-np.array(calibrated_sensor["translation"]))
    box.rotate(Quaternion(calibrated_sensor["rotation"]).inverse)
    # Conservative pre-selection (bounding sphere + 10 cm) keeps the devkit test cheap; the
    # devkit's per-point arithmetic decides every candidate, so the count is unchanged.
    radius = 0.5 * float(np.linalg.norm(box.wlh)) + 0.1
    d = points_lidar - box.center[:, None]
    cand = np.flatnonzero((np.abs(d[0]) <= radius) & (np.abs(d[1]) <= radius)
                          & (np.abs(d[2]) <= radius))
    if len(cand) == 0:
        return 0
    return int(points_in_box(box, points_lidar[:, cand]).sum())


@functools.lru_cache(maxsize=2)
def _scene_for_rerender(cfg: SimConfig, scene_index: int) -> _SceneWriter:
    name = scene_names(cfg)[scene_index][0]
    return _SceneWriter(cfg, scene_index, name, Path("/nonexistent"), lambda n: None)


def rerender_camera(
    cfg: SimConfig, scene_index: int, channel: str, timestamp_us: int
) -> tuple[RenderOutput, World]:
    """Render one camera frame of a generated dataset again, with its instance-id buffer.

    The world is rebuilt from ``cfg`` (deterministic), so this reproduces the written JPEG
    (before compression) and tells which agent each pixel shows; agent ``i`` has the instance
    token ``token(cfg.seed, scene_name, "instance", i)``.

    Args:
        cfg: the config the dataset was generated with.
        scene_index: scene position in the dataset (0-based).
        channel: camera channel, e.g. ``"CAM_FRONT"``.
        timestamp_us: the camera sample_data's timestamp.

    Returns:
        The rendered frame and the scene's world.

    """
    sw = _scene_for_rerender(cfg, scene_index)
    cam_i = CAMERA_CHANNELS.index(channel)
    offset = rig.CAMERA_SPECS[cam_i].time_offset_us
    m = int(round((timestamp_us - offset - sw.t0_us) * 1e-6 * cfg.camera_hz))
    _, out = sw._render(cam_i, timestamp_us, m)
    return out, sw.world


def sensor_token(channel: str) -> str:
    """Token of a sensor channel (shared by all datasets)."""
    return token("sensor", channel)


def category_token(name: str) -> str:
    """Token of a category."""
    return token("category", name)


def attribute_token(name: str) -> str:
    """Token of an attribute."""
    return token("attribute", name)


def _global_tables(with_ultrasonic: bool) -> dict[str, list[dict]]:
    sensors = [{"token": sensor_token(c), "channel": c, "modality": "camera"}
               for c in CAMERA_CHANNELS]
    sensors.append({"token": sensor_token(LIDAR_CHANNEL), "channel": LIDAR_CHANNEL,
                    "modality": "lidar"})
    if with_ultrasonic:
        sensors.append({"token": sensor_token(ULTRASONIC_CHANNEL),
                        "channel": ULTRASONIC_CHANNEL, "modality": "ultrasonic"})
    return {
        "category": [{"token": category_token(n), "name": n, "description": d}
                     for n, d in CATEGORIES],
        "attribute": [{"token": attribute_token(n), "name": n, "description": d}
                      for n, d in ATTRIBUTES],
        "visibility": [{"token": t, "level": lv, "description": d} for t, lv, d in VISIBILITY],
        "sensor": sensors,
    }


def simulate_scene(cfg: SimConfig, out_dir: str, index: int) -> dict[str, list[dict]]:
    """Simulate scene ``index`` of ``cfg`` and write its files; returns its table records.

    One unit of work for ``generate_dataset``: a pure function of its inputs (the scene's
    random streams are seeded from ``cfg.seed`` and the scene name), so any process may run it.
    """
    name = scene_names(cfg)[index][0]
    return _SceneWriter(cfg, index, name, Path(out_dir), lambda n: None).run()


def generate_dataset(
    cfg: SimConfig, out_dir: Path, progress: bool = True, executor: ExecutorConfig | None = None
) -> Path:
    """Simulate ``cfg.num_scenes`` drives and write them as a nuScenes dataroot.

    Args:
        cfg: what to generate.
        out_dir: dataroot to write (created; existing files with the same names are
            overwritten, others are left alone).
        progress: show a tqdm progress bar (in scenes).
        executor: where the scenes run (``eval.executor``); None = a local process pool of
            ``cfg.num_workers`` processes (0: up to 2), or this process for one.

    Returns:
        ``out_dir`` (load it with ``NuScenes(version=cfg.version, dataroot=out_dir)``).

    Raises:
        UnitsFailedError: some scenes failed (named, with their errors); the tables are not
            written, the other scenes' sensor files are.

    """
    from eval.executor import INLINE, ExecutorConfig, run_units

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = scene_names(cfg)
    if executor is None:
        workers = cfg.num_workers or min(2, os.cpu_count() or 1)
        workers = max(1, min(workers, len(names)))
        executor = INLINE if workers == 1 else ExecutorConfig("processes", workers=workers)
    results = run_units(
        functools.partial(simulate_scene, cfg, str(out_dir.resolve())), range(len(names)),
        executor, desc="simulating scenes", progress=progress,
    ).require_all()
    tables = _global_tables(cfg.write_ultrasonic)
    for t in TABLES:
        tables.setdefault(t, [])
    for res in results:
        for t, recs in res.items():
            tables[t].extend(recs)
    table_dir = out_dir / cfg.version
    table_dir.mkdir(parents=True, exist_ok=True)
    for t in TABLES:
        (table_dir / f"{t}.json").write_bytes(orjson.dumps(tables[t], option=orjson.OPT_INDENT_2))
    return out_dir
