"""The per-tick JSON line (``ticks.jsonl``) and its schema.

One line per tick, written and flushed as the tick finishes, so a file cut short by a crash or
Ctrl-C is still valid up to its last line. ``TICK_SCHEMA`` is the documentation (README table)
and what the tests check every line against.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO

import orjson

from eval.detection.results import boxes_to_records
from eval.replay.source import SENSOR_CHANNELS, TickInput
from perception.types import FrameResult

# field -> (JSON type, meaning). Order is the order in each line.
TICK_SCHEMA: dict[str, tuple[str, str]] = {
    "tick": ("int", "tick index in this replay (0-based, across scenes)"),
    "timestamp_us": ("int", "LIDAR_TOP timestamp of the tick, microseconds"),
    "scene": ("str", "scene name"),
    "scene_time_s": ("float", "seconds since the scene's first LiDAR sweep"),
    "token": ("str", "sample token (keyframe) or LIDAR_TOP sample_data token (sweep)"),
    "is_keyframe": ("bool", "annotated 2 Hz keyframe"),
    "status": ("str", "`ok`, `failed` (no output: see errors) or `dropped` (real-time mode)"),
    "detections": ("list", "boxes with score >= min_score in the global frame, nuScenes result "
                           "fields: translation, size, rotation, velocity, detection_name, "
                           "detection_score, attribute_name"),
    "plan_xy_ego_m": ("list", "planned (x, y) waypoints in the ego frame, metres, 0.5 s apart"),
    "control": ("dict", "steer_rad, accel_mps2, brake, aeb, aeb_reason"),
    "latency_ms": ("dict", "stage -> ms: input_wait, load (reader thread), the Pipeline.run "
                           "stages, total (Pipeline.run), outputs, tick (wall time of the tick)"),
    "sensor_age_ms": ("dict", "channel -> age of its newest reading at or before the tick, ms "
                              "(null: none yet)"),
    "present": ("dict", "channel -> reading used by the model this tick (fresh and readable)"),
    "errors": ("list", "what went wrong on this tick (missing or corrupt file, exception)"),
}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def tick_record(
    item: TickInput,
    result: FrameResult | None,
    latency_ms: dict[str, float],
    status: str,
    errors: list[str],
    min_score: float,
) -> dict:
    """The JSON line of one tick (see ``TICK_SCHEMA``)."""
    ref, sample = item.ref, item.sample
    dets: list[dict] = []
    plan: list[list[float]] = []
    control: dict = {}
    if result is not None and sample is not None:
        boxes = result.detections
        boxes = boxes.subset(boxes.scores >= min_score)
        for rec in boxes_to_records(ref.sample_token, boxes, sample.global_SE3_ego):
            rec.pop("sample_token")
            dets.append(rec)
        plan = [[float(x), float(y)] for x, y in result.plan.waypoints_xy_ego_m]
        c = result.control
        control = {
            "steer_rad": _finite(c.steer_rad),
            "accel_mps2": _finite(c.accel_mps2),
            "brake": _finite(c.brake),
            "aeb": bool(c.aeb),
            "aeb_reason": c.reason,
        }
    ages = {
        ch: (None if r.age_us is None else r.age_us / 1e3)
        for ch, r in item.readings.items()
    }
    ages.setdefault("LIDAR_TOP", 0.0)
    present = dict.fromkeys(SENSOR_CHANNELS, False)
    if sample is not None:
        present["LIDAR_TOP"] = sample.lidar is not None
        for ch, view in zip(SENSOR_CHANNELS[1:7], sample.cameras):
            present[ch] = view is not None
        present["ULTRASONIC"] = sample.ultrasonic is not None
        present["CAN_BUS"] = sample.can_bus is not None
    return {
        "tick": ref.index,
        "timestamp_us": ref.timestamp_us,
        "scene": ref.scene_name,
        "scene_time_s": round(ref.scene_time_s, 6),
        "token": ref.sample_token,
        "is_keyframe": ref.is_keyframe,
        "status": status,
        "detections": dets,
        "plan_xy_ego_m": plan,
        "control": control,
        "latency_ms": {k: round(v, 3) for k, v in latency_ms.items()},
        "sensor_age_ms": {ch: ages.get(ch) for ch in SENSOR_CHANNELS},
        "present": present,
        "errors": errors,
    }


class JsonLines:
    """``ticks.jsonl``: one line per tick, flushed at once (valid at any moment)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: IO[bytes] | None = path.open("wb")

    def write(self, record: dict) -> None:
        """Append one record and flush it to the OS."""
        if self._f is None:
            raise ValueError(f"{self.path}: already closed")
        self._f.write(orjson.dumps(record) + b"\n")
        self._f.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._f is not None:
            self._f.close()
            self._f = None
