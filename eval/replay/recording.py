"""The Foxglove recording (``replay.mcap``) through the foxglove-sdk: opens in Foxglove as is.

Topics (log time = the recorded sensor time, so Foxglove plays the drive on its own clock):

    /tf                      FrameTransforms: map -> ego (ego pose), ego -> each camera
    /LIDAR_TOP               PointCloud of the tick's own sweep, ego frame: x, y, z, intensity,
                             time_lag (float32)
    /CAM_*/image             CompressedImage: the original JPEG bytes, when the camera has a
                             new frame (12 Hz), frame = the camera
    /CAM_*/calibration       CameraCalibration (K, size of the recorded image), with each image
    /detections              SceneUpdate: predicted boxes (cubes + class/score labels), ego frame
    /ground_truth            SceneUpdate: annotated / interpolated boxes, ego frame
    /plan                    SceneUpdate: the planned path as a line, ego frame
    /control                 JSON: steer, accel, brake, AEB and its reason, status, errors
    /latency                 JSON: stage -> ms of the tick
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.sample import Boxes3D, SyncedSample
from calibration.se3 import SE3
from perception.types import FrameResult
from sensors.types import CAMERA_CHANNELS
from sensors.visualize import class_color

SCORE_RECORD = 0.3
_BOX_ALPHA = 0.35


def _ts(timestamp_us: int):  # noqa: ANN202 - foxglove Timestamp
    from foxglove.messages import Timestamp

    return Timestamp(sec=int(timestamp_us // 1_000_000), nsec=int(timestamp_us % 1_000_000) * 1000)


def _pose(translation: np.ndarray, quat_wxyz: np.ndarray):  # noqa: ANN202
    from foxglove.messages import Pose, Quaternion, Vector3

    t, q = np.asarray(translation, float), np.asarray(quat_wxyz, float)
    return Pose(
        position=Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=Quaternion(x=float(q[1]), y=float(q[2]), z=float(q[3]), w=float(q[0])),
    )


def _transform(parent: str, child: str, parent_SE3_child: SE3, timestamp_us: int):  # noqa: ANN202, N803
    from foxglove.messages import FrameTransform, Quaternion, Vector3

    t, q = parent_SE3_child.translation, parent_SE3_child.quaternion()
    return FrameTransform(
        timestamp=_ts(timestamp_us),
        parent_frame_id=parent,
        child_frame_id=child,
        translation=Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=Quaternion(x=float(q[1]), y=float(q[2]), z=float(q[3]), w=float(q[0])),
    )


class McapRecorder:
    """Writes one tick at a time; ``close()`` finishes the file (summary, indexes).

    Args:
        path: the ``.mcap`` file (overwritten).
        camera_models: camera channel -> (K (3, 3), width, height) of the recorded JPEGs.

    """

    def __init__(self, path: Path, camera_models: dict[str, tuple[np.ndarray, int, int]]) -> None:
        import foxglove
        from foxglove.channels import (
            CameraCalibrationChannel,
            CompressedImageChannel,
            FrameTransformsChannel,
            PointCloudChannel,
            SceneUpdateChannel,
        )

        self.path = path
        self.messages = 0
        self._camera_models = camera_models
        # A context of our own: channels of two recordings (or tests) never mix.
        self._ctx = foxglove.Context()
        from foxglove.mcap import MCAPWriteOptions

        # Compression in the writing thread: a zstd pool of one thread per core would compete
        # with the pipeline for the CPUs.
        self._writer = foxglove.open_mcap(
            str(path), allow_overwrite=True, context=self._ctx,
            writer_options=MCAPWriteOptions(compression_threads=0),
        )
        c = self._ctx
        self._tf = FrameTransformsChannel("/tf", context=c)
        self._lidar = PointCloudChannel("/LIDAR_TOP", context=c)
        self._images = {ch: CompressedImageChannel(f"/{ch}/image", context=c)
                        for ch in CAMERA_CHANNELS}
        self._calib = {ch: CameraCalibrationChannel(f"/{ch}/calibration", context=c)
                       for ch in CAMERA_CHANNELS}
        self._dets = SceneUpdateChannel("/detections", context=c)
        self._gt = SceneUpdateChannel("/ground_truth", context=c)
        self._plan = SceneUpdateChannel("/plan", context=c)
        self._control = foxglove.Channel("/control", message_encoding="json", context=c)
        self._latency = foxglove.Channel("/latency", message_encoding="json", context=c)

    def _log(self, channel, msg, timestamp_us: int) -> None:  # noqa: ANN001
        channel.log(msg, log_time=int(timestamp_us) * 1000)
        self.messages += 1

    def _scene_update(self, boxes: Boxes3D, timestamp_us: int, kind: str):  # noqa: ANN202
        from foxglove.messages import (
            Color,
            CubePrimitive,
            Duration,
            SceneEntity,
            SceneUpdate,
            TextPrimitive,
            Vector3,
        )

        entities = []
        for i in range(len(boxes)):
            r, g, b = (255, 255, 255) if kind == "gt" else class_color(int(boxes.labels[i]))
            half = boxes.yaw_rad[i] / 2
            pose = _pose(boxes.center_m[i], np.array([np.cos(half), 0, 0, np.sin(half)]))
            w, length, h = boxes.wlh_m[i]
            name = boxes.class_names[i]
            label = name if kind == "gt" else f"{name} {boxes.scores[i]:.2f}"
            top = boxes.center_m[i] + np.array([0, 0, h / 2 + 0.3])
            entities.append(SceneEntity(
                timestamp=_ts(timestamp_us),
                frame_id="ego",
                id=f"{kind}-{i}",
                lifetime=Duration(sec=0, nsec=100_000_000),  # until the next tick or two
                cubes=[CubePrimitive(
                    pose=pose,
                    size=Vector3(x=float(length), y=float(w), z=float(h)),
                    color=Color(r=r / 255, g=g / 255, b=b / 255, a=_BOX_ALPHA),
                )],
                texts=[TextPrimitive(
                    pose=_pose(top, np.array([1.0, 0, 0, 0])), billboard=True, font_size=12.0,
                    scale_invariant=True, color=Color(r=1, g=1, b=1, a=1), text=label,
                )],
            ))
        return SceneUpdate(entities=entities)

    def write_tick(
        self,
        sample: SyncedSample | None,
        result: FrameResult | None,
        record: dict,
        camera_jpegs: dict[str, bytes],
    ) -> None:
        """Everything of one tick (what is missing is simply not published)."""
        import orjson
        from foxglove.messages import (
            CameraCalibration,
            Color,
            CompressedImage,
            FrameTransforms,
            LinePrimitive,
            PackedElementField,
            PackedElementFieldNumericType,
            Point3,
            PointCloud,
            SceneEntity,
            SceneUpdate,
        )

        ts = int(record["timestamp_us"])
        if sample is not None:
            tfs = [_transform("map", "ego", sample.global_SE3_ego, ts)]
            for ch, view in zip(CAMERA_CHANNELS, sample.cameras):
                if view is not None:
                    tfs.append(_transform("ego", ch, view.ref_SE3_cam, ts))
            self._log(self._tf, FrameTransforms(transforms=tfs), ts)
            if sample.lidar is not None:
                # The tick's own sweep (time lag 0), not the 10 accumulated for the model:
                # what a viewer expects, and a tenth of the bytes.
                lid = sample.lidar
                pts = lid.points
                if "time_lag_s" in lid.columns:
                    pts = pts[lid.column("time_lag_s") == 0]
                pts = np.ascontiguousarray(pts[:, :5], np.float32)
                f32 = PackedElementFieldNumericType.Float32
                fields = [PackedElementField(name=n, offset=4 * k, type=f32)
                          for k, n in enumerate(("x", "y", "z", "intensity", "time_lag"))]
                self._log(self._lidar, PointCloud(
                    timestamp=_ts(ts), frame_id="ego", pose=_pose(np.zeros(3), [1, 0, 0, 0]),
                    point_stride=20, fields=fields, data=pts.tobytes(),
                ), ts)
            for ch, data in camera_jpegs.items():
                view = sample.cameras[CAMERA_CHANNELS.index(ch)]
                cam_ts = int(view.image.timestamp_us) if view is not None else ts
                self._log(self._images[ch], CompressedImage(
                    timestamp=_ts(cam_ts), frame_id=ch, data=data, format="jpeg"), ts)
                if ch in self._camera_models:
                    k, w, h = self._camera_models[ch]
                    p = np.hstack([k, np.zeros((3, 1))])
                    self._log(self._calib[ch], CameraCalibration(
                        timestamp=_ts(cam_ts), frame_id=ch, width=int(w), height=int(h),
                        distortion_model="plumb_bob", D=[0.0] * 5,
                        K=[float(x) for x in k.reshape(-1)],
                        R=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                        P=[float(x) for x in p.reshape(-1)],
                    ), ts)
            if sample.boxes is not None:
                self._log(self._gt, self._scene_update(sample.boxes, ts, "gt"), ts)
        if result is not None:
            dets = result.detections
            self._log(self._dets, self._scene_update(dets.subset(dets.scores >= SCORE_RECORD),
                                                     ts, "det"), ts)
            plan = np.vstack([[0.0, 0.0], np.asarray(result.plan.waypoints_xy_ego_m)])
            line = LinePrimitive(
                pose=_pose(np.zeros(3), [1, 0, 0, 0]), thickness=0.3,
                points=[Point3(x=float(x), y=float(y), z=0.2) for x, y in plan],
                color=Color(r=0.25, g=0.55, b=1.0, a=1.0),
            )
            self._log(self._plan, SceneUpdate(entities=[SceneEntity(
                timestamp=_ts(ts), frame_id="ego", id="plan", lines=[line])]), ts)
        control = {"tick": record["tick"], "status": record["status"], **record["control"],
                   "errors": record["errors"]}
        self._log(self._control, orjson.dumps(control), ts)
        self._log(self._latency, orjson.dumps(record["latency_ms"]), ts)

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
