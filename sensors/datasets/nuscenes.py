"""nuScenes adapter: a dataroot in nuScenes format -> ``SyncedSample`` per keyframe or sweep.

Everything goes through the official nuscenes-devkit (tables, splits, category mapping, box
velocities, CAN bus expansion), so that what we train and evaluate on is exactly what the
devkit's evaluation sees. The output is in the ego frame at the reference LiDAR timestamp.

Works unchanged on our synthetic datasets (``sensors.sim``), which add an ``ULTRASONIC``
channel; on real nuScenes, which has none, ultrasonic ranges are derived from the LiDAR sweep
and marked ``derived=True``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.nuscenes import NuScenes

from calibration.accumulate import accumulate_sweeps, remove_close
from calibration.camera import PinholeCamera
from calibration.ego_pose import EgoPoseTrack
from calibration.projection import ref_SE3_cam
from calibration.rig import SensorRig
from calibration.sample import Boxes3D, CameraView, CanBusState, SyncedSample
from calibration.se3 import SE3
from calibration.sync import TimestampStream
from sensors.datasets.splits import split_scene_names
from sensors.readers import (
    LidarLayout,
    SensorFileError,
    read_camera_image,
    read_lidar_file,
    read_ultrasonic_file,
)
from sensors.types import (
    CAMERA_CHANNELS,
    DETECTION_CLASSES,
    LIDAR_CHANNEL,
    ULTRASONIC_CHANNEL,
    LidarSweep,
    UltrasonicScan,
)
from sensors.ultrasonic_layout import default_layout
from sensors.virtual_ultrasonic import virtual_ultrasonic

log = logging.getLogger(__name__)

# Planning target: 6 future ego positions, 0.5 s apart (VAD / UniAD / ST-P3 convention).
FUTURE_STEPS = 6
FUTURE_DT_US = 500_000
# Driving command from the lateral offset of the final future point (VAD's rule: 2 m).
COMMAND_RIGHT, COMMAND_LEFT, COMMAND_STRAIGHT = 0, 1, 2
COMMAND_LATERAL_THRESHOLD_M = 2.0


@dataclass(frozen=True)
class MissingFile:
    """A sensor file the tables reference but the disk lacks (recorded, then treated as absent).

    Attributes:
        token: the sample (or sweep) being loaded.
        channel: the sensor channel.
        path: the missing file.

    """

    token: str
    channel: str
    path: str


# The CAN bus as a channel name in ``SensorReading`` (it has no sample_data of its own).
CAN_BUS_CHANNEL = "CAN_BUS"


@dataclass(frozen=True)
class CausalSync:
    """Replay's sync rule: every sensor's newest reading at or before the tick, never a later one.

    A reading older than its limit counts as missing. The defaults are one period of the
    sensor plus jitter: cameras run at 12 Hz (83 ms), ultrasonic at 20 Hz (50 ms), the CAN bus
    pose message at 50 Hz (20 ms; the nuScenes expansion has occasional gaps).

    Attributes:
        camera_max_age_us: oldest camera frame accepted, microseconds.
        ultrasonic_max_age_us: oldest ultrasonic scan accepted.
        can_bus_max_age_us: oldest CAN bus pose message accepted.

    """

    camera_max_age_us: int = 100_000
    ultrasonic_max_age_us: int = 75_000
    can_bus_max_age_us: int = 100_000


@dataclass(frozen=True)
class SensorReading:
    """Which reading of one sensor a causal tick uses, and how old it is.

    Attributes:
        channel: sensor channel (``CAN_BUS`` for the CAN bus expansion).
        sample_data_token: the chosen sample_data (None for the CAN bus, a derived
            ultrasonic scan, or when nothing was recorded at or before the tick).
        timestamp_us: the chosen reading's timestamp, or None when there is none.
        age_us: tick minus reading timestamp (``>= 0``), or None when there is none.
        max_age_us: the limit it is checked against.
        derived: True for nuScenes' virtual ultrasonic (computed from the tick's own sweep).

    """

    channel: str
    sample_data_token: str | None
    timestamp_us: int | None
    age_us: int | None
    max_age_us: int
    derived: bool = False

    @property
    def fresh(self) -> bool:
        """There is a reading and it is no older than ``max_age_us``."""
        return self.age_us is not None and self.age_us <= self.max_age_us


@dataclass(frozen=True)
class SensorFault:
    """A sensor file that exists but could not be read (recorded, then treated as absent).

    Attributes:
        token: the sample (or sweep) being loaded.
        channel: the sensor channel.
        path: the file.
        reason: the reader's error (names the fault: truncated, undecodable, wrong layout).

    """

    token: str
    channel: str
    path: str
    reason: str


# What a corrupt sensor file does to the sample: "mask" treats it like a missing file (that
# camera / sweep / ultrasonic frame is absent, the fault is recorded in ``sensor_faults``);
# "raise" lets the reader's SensorFileError through (the whole sample fails).
ON_SENSOR_ERROR = ("mask", "raise")


@dataclass
class _SceneIndex:
    """Per-scene, per-channel sample_data tokens sorted by time, plus the ego pose track."""

    tokens: dict[str, list[str]]
    streams: dict[str, TimestampStream]
    ego_track: EgoPoseTrack | None


def _quaternions_to_matrices(q_wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (w, x, y, z) -> (N, 3, 3) rotation matrices."""
    w, x, y, z = q_wxyz.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def driving_command(future_xy_ego_m: np.ndarray) -> int:
    """0 = right, 1 = left, 2 = straight from the last known future point's lateral offset.

    ``y`` (left) beyond +-2 m at the last finite future point means a turn (VAD's rule, in our
    ego frame where +y is left). All-NaN (no future) is "straight".
    """
    xy = np.asarray(future_xy_ego_m, dtype=np.float64).reshape(-1, 2)
    finite = np.flatnonzero(np.isfinite(xy).all(axis=1))
    if finite.size == 0:
        return COMMAND_STRAIGHT
    y = xy[finite[-1], 1]
    if y <= -COMMAND_LATERAL_THRESHOLD_M:
        return COMMAND_RIGHT
    if y >= COMMAND_LATERAL_THRESHOLD_M:
        return COMMAND_LEFT
    return COMMAND_STRAIGHT


class NuScenesDataset:
    """Reads a nuScenes-format dataroot into ``SyncedSample`` objects.

    Args:
        dataroot: folder holding ``<version>/`` tables, ``samples/``, ``sweeps/`` and
            optionally ``can_bus/`` (the devkit's CAN bus layout: ``dataroot/can_bus/``).
        version: table folder, e.g. ``"v1.0-mini"``.
        num_sweeps: LiDAR sweeps accumulated per sample, the reference one included
            (CenterPoint/BEVFusion use 10); fewer at the start of a scene.
        image_reduction: decode cameras at 1/1, 1/2, 1/4 or 1/8 resolution (intrinsics scaled).
        verbose: let the devkit print its loading summary.
        min_distance_m: LiDAR points with ``|x|, |y|`` below this in the sensor frame are
            ego-body returns and dropped (the devkit's ``remove_close``); 0 keeps all.
        camera_tolerance_us: largest camera-to-LiDAR offset accepted when picking cameras for a
            non-key sweep (nuScenes cameras run at 12 Hz: nearest is always within ~42 ms).
        ultrasonic_tolerance_us: the same for the ULTRASONIC channel.
        can_bus_root: folder containing ``can_bus/``; defaults to ``dataroot``.
        io_threads: threads decoding the six cameras while the LiDAR is read (1 = all in
            the calling thread). 2-4 nearly halves the latency per sample on a free
            multi-core machine; keep 1 inside multi-process data loaders.
        on_sensor_error: ``"mask"`` (default; degrade, do not discard): a corrupt file of one
            camera, one sweep or the ultrasonic frame is treated like a missing one (the
            camera / ultrasonic is absent in the presence mask, the sweep is left out of the
            accumulation; without the reference sweep there is no LiDAR) and recorded in
            ``sensor_faults`` with file and reason; the sample still loads. ``"raise"``:
            the reader's ``SensorFileError`` ends the sample.
        lidar_layout: row layout of every ``LIDAR_TOP`` file whatever its extension
            (``"nuscenes"``: 5 columns; Lyft and other nuScenes-format datasets store them
            as ``.bin``); see ``sensors.readers.LIDAR_LAYOUTS``.

    Attributes:
        nusc: the devkit's ``NuScenes`` object.
        can_bus: the devkit's ``NuScenesCanBus`` or None when the expansion is absent.
        has_ultrasonic: whether the dataset has a measured ULTRASONIC channel.
        missing_files: every referenced-but-absent sensor file met so far.
        sensor_faults: every corrupt sensor file masked so far (``on_sensor_error="mask"``).

    """

    def __init__(
        self,
        dataroot: str | Path,
        version: str = "v1.0-mini",
        num_sweeps: int = 10,
        image_reduction: int = 1,
        verbose: bool = False,
        min_distance_m: float = 1.0,
        camera_tolerance_us: int = 50_000,
        ultrasonic_tolerance_us: int = 50_000,
        can_bus_root: str | Path | None = None,
        io_threads: int = 1,
        on_sensor_error: str = "mask",
        lidar_layout: LidarLayout = "nuscenes",
    ) -> None:
        if on_sensor_error not in ON_SENSOR_ERROR:
            raise ValueError(
                f"on_sensor_error must be one of {ON_SENSOR_ERROR}, got {on_sensor_error!r}"
            )
        self.on_sensor_error = on_sensor_error
        self.lidar_layout = lidar_layout
        if num_sweeps < 1:
            raise ValueError(f"num_sweeps must be >= 1, got {num_sweeps}")
        self.set_image_reduction(image_reduction)
        self.dataroot = Path(dataroot)
        if not (self.dataroot / version).is_dir():
            raise FileNotFoundError(
                f"{self.dataroot / version}: nuScenes table folder not found (dataroot="
                f"{self.dataroot}, version={version})"
            )
        self.version = version
        self.num_sweeps = int(num_sweeps)
        self.min_distance_m = float(min_distance_m)
        self.camera_tolerance_us = int(camera_tolerance_us)
        self.ultrasonic_tolerance_us = int(ultrasonic_tolerance_us)
        self.nusc = NuScenes(version=version, dataroot=str(self.dataroot), verbose=verbose)
        self.has_ultrasonic = any(
            s["channel"] == ULTRASONIC_CHANNEL and s["modality"] == "ultrasonic"
            for s in self.nusc.sensor
        )
        can_root = Path(can_bus_root) if can_bus_root is not None else self.dataroot
        self.can_bus = None
        if (can_root / "can_bus").is_dir():
            from nuscenes.can_bus.can_bus_api import NuScenesCanBus

            self.can_bus = NuScenesCanBus(dataroot=str(can_root))
        self.missing_files: list[MissingFile] = []
        self.sensor_faults: list[SensorFault] = []
        self._pose_cache: dict[str, SE3] = {}
        self._scene_index: dict[str, _SceneIndex] | None = None
        self._can_cache: dict[str, dict[str, list[dict]] | None] = {}
        self.io_threads = max(1, int(io_threads))
        self._pool: ThreadPoolExecutor | None = None

    def _io_pool(self) -> ThreadPoolExecutor | None:
        if self.io_threads > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self.io_threads, thread_name_prefix="drivefuse-io")
        return self._pool

    def __getstate__(self) -> dict:
        # Picklable for multi-process data loaders: a thread pool cannot cross processes.
        state = dict(self.__dict__)
        state["_pool"] = None
        return state

    # ------------------------------------------------------------------ iteration
    @property
    def scene_tokens(self) -> list[str]:
        """All scene tokens, sorted by scene name."""
        return [s["token"] for s in sorted(self.nusc.scene, key=lambda s: s["name"])]

    def split_scene_tokens(self, split: str) -> list[str]:
        """Scene tokens of a split present here: a devkit split (``"mini_val"``, ``"train"``,
        ...) or a custom one from ``<dataroot>/<version>/splits.json`` (as devkit 1.2.0).

        Sorted by scene name. A devkit split with no scene in this dataroot gives an empty list.
        """
        known = {s["name"] for s in self.nusc.scene}
        names = set(split_scene_names(split, self.dataroot, self.version, known))
        return [t for t in self.scene_tokens if self.nusc.get("scene", t)["name"] in names]

    def set_image_reduction(self, image_reduction: int) -> None:
        """Decode camera images at ``1 / image_reduction`` from now on (1, 2, 4 or 8)."""
        if image_reduction not in (1, 2, 4, 8):
            raise ValueError(f"image_reduction must be 1, 2, 4 or 8, got {image_reduction}")
        self.image_reduction = int(image_reduction)

    def camera_image_hw(self) -> tuple[int, int] | None:
        """(height, width) in pixels of the recorded camera images, from the sample_data table
        (None when the dataset has no camera records).
        """
        for sd in self.nusc.sample_data:
            if sd.get("sensor_modality") == "camera" or sd["filename"].endswith(".jpg"):
                if sd.get("height") and sd.get("width"):
                    return int(sd["height"]), int(sd["width"])
        return None

    def split_sample_tokens(self, split: str) -> list[str]:
        """Keyframe sample tokens of a split, ordered by scene name then time."""
        return [t for s in self.split_scene_tokens(split) for t in self.scene_sample_tokens(s)]

    def scene_sample_tokens(self, scene_token: str) -> list[str]:
        """Keyframe sample tokens of one scene in time order."""
        scene = self.nusc.get("scene", scene_token)
        out, tok = [], scene["first_sample_token"]
        while tok:
            out.append(tok)
            tok = self.nusc.get("sample", tok)["next"]
        return out

    def scene_lidar_tokens(self, scene_token: str) -> list[str]:
        """All LIDAR_TOP sample_data tokens (keyframes and sweeps, ~20 Hz) of a scene, by time."""
        return list(self._scene(scene_token).tokens.get(LIDAR_CHANNEL, []))

    # ------------------------------------------------------------------ loading
    def load_sample(self, sample_token: str) -> SyncedSample:
        """The ``SyncedSample`` of an annotated keyframe.

        Cameras are the keyframe's own six images (each at its own timestamp, ego motion to
        the LiDAR time folded into ``ref_SE3_cam``); boxes are the keyframe's annotations
        mapped to the 10 detection classes (others dropped) in the ego frame at the LiDAR time.
        """
        sample = self.nusc.get("sample", sample_token)
        if LIDAR_CHANNEL not in sample["data"]:
            raise ValueError(f"sample {sample_token}: has no {LIDAR_CHANNEL} sample_data")
        lidar_sd = self.nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
        cam_tokens = {ch: sample["data"].get(ch) for ch in CAMERA_CHANNELS}
        return self._build(lidar_sd, sample_token, cam_tokens, with_boxes=True)

    def load_sweep(
        self,
        lidar_sample_data_token: str,
        interpolate_boxes: bool = False,
        causal: CausalSync | None = None,
    ) -> SyncedSample:
        """The ``SyncedSample`` of any LIDAR_TOP sweep (for replay at 20 Hz).

        Without ``causal``, a keyframe sweep gives the same result as ``load_sample``; for
        other sweeps each camera is the frame nearest in time within ``camera_tolerance_us``
        (None otherwise; it may be later than the sweep). With ``causal`` (replay), every
        tick, keyframes included, takes each sensor's newest reading at or before the sweep
        (``causal_readings``): cameras, ultrasonic and the CAN bus (held, not interpolated)
        never come from the future, and one older than its ``causal`` limit is missing.
        ``is_keyframe`` is False for non-key sweeps. Boxes are None (not annotated) for non-key
        sweeps unless ``interpolate_boxes``: then the devkit's ``get_boxes`` interpolation
        between the bracketing keyframes (linear centre, slerp rotation), with
        ``num_lidar_pts`` = -1.
        """
        sd = self.nusc.get("sample_data", lidar_sample_data_token)
        if sd["channel"] != LIDAR_CHANNEL:
            raise ValueError(
                f"sample_data {lidar_sample_data_token} is {sd['channel']}, not {LIDAR_CHANNEL}"
            )
        if causal is not None:
            readings = self.causal_readings(lidar_sample_data_token, causal)
            cams = {ch: readings[ch].sample_data_token if readings[ch].fresh else None
                    for ch in CAMERA_CHANNELS}
            key = bool(sd["is_key_frame"])
            token = sd["sample_token"] if key else lidar_sample_data_token
            return self._build(sd, token, cams, key or interpolate_boxes, causal)
        if sd["is_key_frame"]:
            return self.load_sample(sd["sample_token"])
        scene_token = self.nusc.get("sample", sd["sample_token"])["scene_token"]
        index = self._scene(scene_token)
        cam_tokens: dict[str, str | None] = {}
        for ch in CAMERA_CHANNELS:
            stream = index.streams.get(ch)
            match = stream.nearest(sd["timestamp"], self.camera_tolerance_us) if stream else None
            cam_tokens[ch] = index.tokens[ch][match.index] if match else None
        return self._build(sd, lidar_sample_data_token, cam_tokens, with_boxes=interpolate_boxes)

    def causal_readings(
        self, lidar_sample_data_token: str, causal: CausalSync | None = None
    ) -> dict[str, SensorReading]:
        """Each sensor's newest reading at or before a LIDAR_TOP sweep, with its age.

        Keys: the six cameras, ``ULTRASONIC`` and ``CAN_BUS``. A sensor with nothing at or
        before the tick has ``age_us`` None; one older than its limit is not ``fresh``
        (``load_sweep(causal=...)`` then treats it as missing). On real nuScenes the ultrasonic
        ranges are derived from the tick's own sweep (age 0, ``derived``).
        """
        causal = causal or CausalSync()
        sd = self.nusc.get("sample_data", lidar_sample_data_token)
        ref_us = int(sd["timestamp"])
        scene_token = self.nusc.get("sample", sd["sample_token"])["scene_token"]
        index = self._scene(scene_token)
        out: dict[str, SensorReading] = {}
        channels = [(ch, causal.camera_max_age_us) for ch in CAMERA_CHANNELS]
        if self.has_ultrasonic:
            channels.append((ULTRASONIC_CHANNEL, causal.ultrasonic_max_age_us))
        else:
            out[ULTRASONIC_CHANNEL] = SensorReading(
                ULTRASONIC_CHANNEL, None, ref_us, 0, causal.ultrasonic_max_age_us, derived=True
            )
        for ch, limit in channels:
            stream = index.streams.get(ch)
            m = stream.latest_at_or_before(ref_us) if stream else None
            out[ch] = SensorReading(
                ch,
                index.tokens[ch][m.index] if m else None,
                m.timestamp_us if m else None,
                -m.offset_us if m else None,
                limit,
            )
        can_t = self._can_pose_times(scene_token)
        i = int(np.searchsorted(can_t, ref_us, side="right")) - 1 if can_t is not None else -1
        out[CAN_BUS_CHANNEL] = SensorReading(
            CAN_BUS_CHANNEL,
            None,
            int(can_t[i]) if i >= 0 else None,
            ref_us - int(can_t[i]) if i >= 0 else None,
            causal.can_bus_max_age_us,
        )
        return out

    def global_SE3_ego(self, sample_token: str) -> SE3:  # noqa: N802 - frame naming convention
        """Ego pose at the sample's LiDAR timestamp (for writing nuScenes results)."""
        sample = self.nusc.get("sample", sample_token)
        sd = self.nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
        return self._ego_pose(sd["ego_pose_token"])

    def sensor_rig(self, sample_token: str) -> SensorRig:
        """Extrinsics of every channel of a keyframe and the cameras' pinhole models.

        Built from the ``calibrated_sensor`` records of every channel recorded in the
        sample's scene (nuScenes stores one per log, so this is the vehicle's rig during
        that drive); errors name the channel.
        """
        sample = self.nusc.get("sample", sample_token)
        index = self._scene(sample["scene_token"])
        poses, cameras = {}, {}
        for channel, tokens in index.tokens.items():
            # The keyframe's own record where there is one (non-key channels: the scene's).
            sd = self.nusc.get("sample_data", sample["data"].get(channel, tokens[0]))
            poses[channel] = self._sensor_pose(sd)
            cs = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            if cs.get("camera_intrinsic"):
                cameras[channel] = PinholeCamera(
                    np.asarray(cs["camera_intrinsic"], np.float64), sd["width"], sd["height"]
                )
        return SensorRig(poses, cameras)

    # ------------------------------------------------------------------ internals
    def _build(
        self,
        lidar_sd: dict,
        token: str,
        cam_tokens: dict[str, str | None],
        with_boxes: bool,
        causal: CausalSync | None = None,
    ) -> SyncedSample:
        ref_us = int(lidar_sd["timestamp"])
        sample = self.nusc.get("sample", lidar_sd["sample_token"])
        scene_token = sample["scene_token"]
        global_SE3_ego = self._ego_pose(lidar_sd["ego_pose_token"])
        ego_SE3_global = global_SE3_ego.inverse()

        jobs = [
            (self._load_camera, (t, token, global_SE3_ego, ref_us)) if t else None
            for t in (cam_tokens.get(ch) for ch in CAMERA_CHANNELS)
        ]
        pool = self._io_pool()
        if pool is None:
            lidar, ref_points_ego = self._load_lidar(lidar_sd, token, ego_SE3_global)
            cameras = [job and job[0](*job[1]) for job in jobs]
        else:
            # JPEG decoding and file reads release the GIL: decode the cameras on the pool
            # while this thread reads and accumulates the LiDAR.
            futures = [job and pool.submit(job[0], *job[1]) for job in jobs]
            lidar, ref_points_ego = self._load_lidar(lidar_sd, token, ego_SE3_global)
            cameras = [f and f.result() for f in futures]

        ultrasonic = self._load_ultrasonic(scene_token, ref_us, token, ref_points_ego, causal)
        boxes = None
        if with_boxes:
            boxes = (
                self._boxes(sample, ego_SE3_global)
                if lidar_sd["is_key_frame"]
                else self._interpolated_boxes(lidar_sd["token"], ego_SE3_global)
            )
        future = self._future_xy(scene_token, ref_us, ego_SE3_global)
        return SyncedSample(
            token=token,
            scene_token=scene_token,
            timestamp_us=ref_us,
            global_SE3_ego=global_SE3_ego,
            lidar=lidar,
            cameras=tuple(cameras),
            ultrasonic=ultrasonic,
            ultrasonic_layout=default_layout(),
            boxes=boxes,
            can_bus=self._can_state(scene_token, ref_us, causal),
            future_xy_ego_m=future,
            command=driving_command(future),
            is_keyframe=bool(lidar_sd["is_key_frame"]),
        )

    def _ego_pose(self, ego_pose_token: str) -> SE3:
        pose = self._pose_cache.get(ego_pose_token)
        if pose is None:
            rec = self.nusc.get("ego_pose", ego_pose_token)
            pose = SE3.from_quaternion(
                rec["rotation"], rec["translation"], name=f"ego_pose {ego_pose_token}"
            )
            self._pose_cache[ego_pose_token] = pose
        return pose

    def _sensor_pose(self, sd: dict) -> SE3:
        key = "cs:" + sd["calibrated_sensor_token"]
        pose = self._pose_cache.get(key)
        if pose is None:
            rec = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            pose = SE3.from_quaternion(
                rec["rotation"],
                rec["translation"],
                name=f"{sd['channel']} calibrated_sensor {sd['calibrated_sensor_token']}",
            )
            self._pose_cache[key] = pose
        return pose

    def _record_missing(self, token: str, channel: str, path: Path) -> None:
        self.missing_files.append(MissingFile(token, channel, str(path)))
        log.warning("%s: %s file missing, treated as absent: %s", token, channel, path)

    def _record_fault(self, token: str, channel: str, path: Path, exc: SensorFileError) -> None:
        """Record a corrupt file as absent (mask mode), or re-raise it (raise mode)."""
        if self.on_sensor_error == "raise":
            raise exc
        self.sensor_faults.append(SensorFault(token, channel, str(path), str(exc)))
        log.warning("%s: %s file unreadable, treated as absent: %s", token, channel, exc)

    def _load_lidar(
        self, ref_sd: dict, token: str, ego_SE3_global: SE3
    ) -> tuple[LidarSweep | None, np.ndarray]:
        """Accumulated sweep in the reference ego frame, and the reference sweep's own points."""
        sweeps, poses = [], []
        sd: dict | None = ref_sd
        for _ in range(self.num_sweeps):
            if sd is None:
                break
            path = self.dataroot / sd["filename"]
            try:
                sweep = read_lidar_file(
                    path, timestamp_us=sd["timestamp"], channel=sd["channel"],
                    layout=self.lidar_layout,
                )
            except (FileNotFoundError, SensorFileError) as exc:
                if isinstance(exc, SensorFileError):
                    self._record_fault(token, sd["channel"], path, exc)
                else:
                    self._record_missing(token, sd["channel"], path)
                if sd is ref_sd:
                    # Without the reference sweep there is no LiDAR for this tick.
                    return None, np.zeros((0, 3))
                sweep = None
            if sweep is not None:
                sweeps.append(sweep)
                poses.append(
                    ego_SE3_global @ self._ego_pose(sd["ego_pose_token"]) @ self._sensor_pose(sd)
                )
            sd = self.nusc.get("sample_data", sd["prev"]) if sd["prev"] else None
        lidar = accumulate_sweeps(sweeps, poses, ref_sd["timestamp"], self.min_distance_m)
        ref_points = poses[0].transform_points(
            remove_close(sweeps[0].points, self.min_distance_m)[:, :3].astype(np.float64)
        )
        return lidar, ref_points

    def _load_camera(
        self, sd_token: str, token: str, global_SE3_ego_ref: SE3, ref_us: int
    ) -> CameraView | None:
        sd = self.nusc.get("sample_data", sd_token)
        cs = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        path = self.dataroot / sd["filename"]
        try:
            image = read_camera_image(
                path,
                np.asarray(cs["camera_intrinsic"], np.float64),
                sd["channel"],
                sd["timestamp"],
                self.image_reduction,
            )
        except FileNotFoundError:
            self._record_missing(token, sd["channel"], path)
            return None
        except SensorFileError as exc:
            self._record_fault(token, sd["channel"], path, exc)
            return None
        pose = ref_SE3_cam(
            global_SE3_ego_ref, self._ego_pose(sd["ego_pose_token"]), self._sensor_pose(sd)
        )
        return CameraView(
            image=image, ref_SE3_cam=pose, time_offset_us=int(sd["timestamp"]) - int(ref_us)
        )

    def _load_ultrasonic(
        self,
        scene_token: str,
        ref_us: int,
        token: str,
        ref_points_ego: np.ndarray,
        causal: CausalSync | None = None,
    ) -> UltrasonicScan | None:
        if not self.has_ultrasonic:
            # nuScenes has no ultrasonic sensor: derive it from the reference sweep.
            if ref_points_ego.shape[0] == 0:
                return None
            return virtual_ultrasonic(ref_points_ego, default_layout(), ref_us)
        index = self._scene(scene_token)
        stream = index.streams.get(ULTRASONIC_CHANNEL)
        match = self._pick_ultrasonic(stream, ref_us, causal) if stream else None
        if match is None:
            return None
        sd = self.nusc.get("sample_data", index.tokens[ULTRASONIC_CHANNEL][match.index])
        path = self.dataroot / sd["filename"]
        try:
            return read_ultrasonic_file(path, sd["timestamp"], sd["channel"])
        except FileNotFoundError:
            self._record_missing(token, sd["channel"], path)
            return None
        except SensorFileError as exc:
            self._record_fault(token, sd["channel"], path, exc)
            return None

    def _boxes(self, sample: dict, ego_SE3_global: SE3) -> Boxes3D:
        """Annotations of a keyframe in the ego frame at its LiDAR time, detection classes only."""
        anns = [self.nusc.get("sample_annotation", t) for t in sample["anns"]]
        return self._to_boxes(
            anns,
            [a["translation"] for a in anns],
            [a["rotation"] for a in anns],
            [int(a["num_lidar_pts"]) for a in anns],
            ego_SE3_global,
        )

    def _interpolated_boxes(self, lidar_sd_token: str, ego_SE3_global: SE3) -> Boxes3D:
        """The devkit's boxes interpolated to a non-key sweep's time, in the ego frame."""
        boxes = self.nusc.get_boxes(lidar_sd_token)
        anns = [self.nusc.get("sample_annotation", b.token) for b in boxes]
        return self._to_boxes(
            anns,
            [b.center for b in boxes],
            [b.orientation.elements for b in boxes],
            [-1] * len(boxes),
            ego_SE3_global,
        )

    def _to_boxes(
        self,
        anns: list[dict],
        translations: list,
        rotations: list,
        num_lidar_pts: list[int],
        ego_SE3_global: SE3,
    ) -> Boxes3D:
        """Global-frame annotations -> ``Boxes3D`` in the ego frame, detection classes only.

        Vectorised over boxes (a busy nuScenes keyframe has 100+): quaternions are checked for
        unit norm (error names the annotation), converted in one go and composed with the
        ego pose; yaw is the heading of the composed box x axis, as the devkit's
        ``Quaternion.yaw_pitch_roll[0]`` of the ego-frame box. Velocity is the devkit's
        ``box_velocity`` rotated into the ego frame (NaN where it cannot be estimated).
        """
        keep, labels = [], []
        for i, a in enumerate(anns):
            name = category_to_detection_name(a["category_name"])
            if name is not None:
                keep.append(i)
                labels.append(DETECTION_CLASSES.index(name))
        if not keep:
            return Boxes3D.empty()
        anns = [anns[i] for i in keep]
        q = np.array([rotations[i] for i in keep], dtype=np.float64).reshape(-1, 4)
        norms = np.linalg.norm(q, axis=1)
        bad = np.flatnonzero(~(np.abs(norms - 1.0) <= 1e-6))
        if bad.size:
            raise ValueError(
                f"sample_annotation {anns[int(bad[0])]['token']}: rotation quaternion norm is "
                f"{norms[bad[0]]:.9f}, expected 1"
            )
        rot_ego = ego_SE3_global.rotation @ _quaternions_to_matrices(q)
        translation = np.array([translations[i] for i in keep], dtype=np.float64).reshape(-1, 3)
        vel_global = np.array([self.nusc.box_velocity(a["token"]) for a in anns]).reshape(-1, 3)
        vel = np.nan_to_num(vel_global, nan=0.0) @ ego_SE3_global.rotation.T
        vel = np.where(np.isnan(vel_global[:, :2]), np.nan, vel[:, :2])
        return Boxes3D(
            center_m=ego_SE3_global.transform_points(translation),
            wlh_m=np.array([a["size"] for a in anns], dtype=np.float64),
            yaw_rad=np.arctan2(rot_ego[:, 1, 0], rot_ego[:, 0, 0]),
            velocity_mps=vel,
            labels=np.array(labels, dtype=np.int64),
            scores=np.ones(len(anns)),
            attributes=tuple(
                self.nusc.get("attribute", a["attribute_tokens"][0])["name"]
                if a["attribute_tokens"]
                else ""
                for a in anns
            ),
            num_lidar_pts=np.array([num_lidar_pts[i] for i in keep], dtype=np.int64),
            instance_tokens=tuple(a["instance_token"] for a in anns),
        )

    def _future_xy(self, scene_token: str, ref_us: int, ego_SE3_global: SE3) -> np.ndarray:
        """(6, 2) ego positions at +0.5 .. +3.0 s in the reference ego frame, NaN past the end.

        Poses are interpolated (slerp + linear) from the scene's 20 Hz LiDAR ego poses, so the
        targets sit at exact 0.5 s steps for keyframes and sweeps alike.
        """
        out = np.full((FUTURE_STEPS, 2), np.nan)
        track = self._scene(scene_token).ego_track
        if track is None:
            return out
        for k in range(FUTURE_STEPS):
            t = ref_us + (k + 1) * FUTURE_DT_US
            if not track.contains(t):
                break
            out[k] = ego_SE3_global.transform_points(track.at(t).translation[None])[0, :2]
        return out

    def _can_messages(self, scene_name: str) -> dict[str, list[dict]] | None:
        if scene_name in self._can_cache:
            return self._can_cache[scene_name]
        msgs: dict[str, list[dict]] | None = {}
        for kind in ("pose", "steeranglefeedback", "vehicle_monitor"):
            try:
                msgs[kind] = self.can_bus.get_messages(scene_name, kind, print_warnings=False)
            except Exception as exc:  # the devkit raises bare Exception
                log.warning("CAN bus %s for %s unavailable: %s", kind, scene_name, exc)
                msgs[kind] = []
        if not msgs["pose"]:
            msgs = None
        self._can_cache[scene_name] = msgs
        return msgs

    def _pick_ultrasonic(self, stream: TimestampStream, ref_us: int, causal: CausalSync | None):  # noqa: ANN202
        if causal is not None:
            return stream.latest_at_or_before(ref_us, causal.ultrasonic_max_age_us)
        return stream.nearest(ref_us, self.ultrasonic_tolerance_us)

    def _can_pose_times(self, scene_token: str) -> np.ndarray | None:
        """Timestamps of the scene's CAN bus ``pose`` messages, or None without them."""
        if self.can_bus is None:
            return None
        msgs = self._can_messages(self.nusc.get("scene", scene_token)["name"])
        if msgs is None:
            return None
        return np.array([m["utime"] for m in msgs["pose"]], dtype=np.int64)

    def _can_state(
        self, scene_token: str, ref_us: int, causal: CausalSync | None = None
    ) -> CanBusState | None:
        """CAN bus state linearly interpolated at ``ref_us``; None without the expansion.

        Speed, yaw rate and acceleration come from the 50 Hz ``pose`` message (ego frame);
        steering from ``steeranglefeedback`` (radians, positive = left) or, when absent, from
        ``vehicle_monitor`` (degrees). With ``causal`` each value is instead the newest
        message at or before ``ref_us`` (held, never interpolated towards a later one), and the
        state is None when the newest pose message is older than ``causal.can_bus_max_age_us``.
        """
        if self.can_bus is None:
            return None
        scene_name = self.nusc.get("scene", scene_token)["name"]
        msgs = self._can_messages(scene_name)
        if msgs is None:
            return None
        pose = msgs["pose"]
        t = np.array([m["utime"] for m in pose], dtype=np.int64)
        # Within half a second of the recording; otherwise the expansion does not cover it.
        if ref_us < t[0] - 500_000 or ref_us > t[-1] + 500_000:
            return None

        if causal is not None:
            i = int(np.searchsorted(t, ref_us, side="right")) - 1
            if i < 0 or ref_us - int(t[i]) > causal.can_bus_max_age_us:
                return None

        def interp(ts: np.ndarray, values: np.ndarray) -> float:
            if causal is not None:  # zero-order hold: the newest value at or before ref_us
                j = max(int(np.searchsorted(ts, ref_us, side="right")) - 1, 0)
                return float(values[j]) if ts[j] <= ref_us else float("nan")
            return float(np.interp(ref_us - ts[0], ts - ts[0], values))

        speed = interp(t, np.array([m["vel"][0] for m in pose], np.float64))
        yaw_rate = interp(t, np.array([m["rotation_rate"][2] for m in pose], np.float64))
        accel = interp(t, np.array([m["accel"][0] for m in pose], np.float64))
        steering = float("nan")
        if msgs["steeranglefeedback"]:
            st = msgs["steeranglefeedback"]
            ts = np.array([m["utime"] for m in st], dtype=np.int64)
            steering = interp(ts, np.array([m["value"] for m in st], np.float64))
        elif msgs["vehicle_monitor"]:
            vm = msgs["vehicle_monitor"]
            ts = np.array([m["utime"] for m in vm], dtype=np.int64)
            steering = np.radians(interp(ts, np.array([m["steering"] for m in vm], np.float64)))
        return CanBusState(
            speed_mps=speed, yaw_rate_radps=yaw_rate, accel_mps2=accel, steering_rad=steering
        )

    def _scene(self, scene_token: str) -> _SceneIndex:
        """Per-channel time-sorted sample_data of a scene (built for all scenes on first use)."""
        if self._scene_index is None:
            by_scene: dict[str, dict[str, list[tuple[int, str]]]] = defaultdict(
                lambda: defaultdict(list)
            )
            sample_scene = {s["token"]: s["scene_token"] for s in self.nusc.sample}
            for sd in self.nusc.sample_data:
                scene = sample_scene[sd["sample_token"]]
                by_scene[scene][sd["channel"]].append((int(sd["timestamp"]), sd["token"]))
            self._scene_index = {}
            for scene, channels in by_scene.items():
                tokens, streams = {}, {}
                for ch, items in channels.items():
                    items.sort()
                    tokens[ch] = [tok for _, tok in items]
                    streams[ch] = TimestampStream(
                        f"{ch} in scene {scene}", np.array([ts for ts, _ in items], np.int64)
                    )
                self._scene_index[scene] = _SceneIndex(tokens, streams, None)
        if scene_token not in self._scene_index:
            self.nusc.get("scene", scene_token)  # KeyError for an unknown token
            self._scene_index[scene_token] = _SceneIndex({}, {}, None)
        index = self._scene_index[scene_token]
        if index.ego_track is None and index.tokens.get(LIDAR_CHANNEL):
            sds = [self.nusc.get("sample_data", t) for t in index.tokens[LIDAR_CHANNEL]]
            index.ego_track = EgoPoseTrack.from_poses(
                [sd["timestamp"] for sd in sds],
                [self._ego_pose(sd["ego_pose_token"]) for sd in sds],
                name=f"{LIDAR_CHANNEL} ego poses of scene {scene_token}",
            )
        return index
