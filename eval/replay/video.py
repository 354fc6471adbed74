"""The replay video: one frame per tick, encoded as it goes (nothing held in memory).

Left: bird's-eye view (forward up) with the LiDAR points, ground-truth boxes (thin white,
interpolated between keyframes), predicted boxes (class colours), the ultrasonic cones and
their echoes, the planned path and the ego car. Right: the six cameras with the predicted boxes
projected, and a panel with the frame counter, control values and latency.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from calibration.sample import Boxes3D, SyncedSample
from perception.types import FrameResult
from sensors.types import CAMERA_CHANNELS
from sensors.visualize import class_color, draw_boxes

BEV_PX = 720
BEV_M_PER_PX = 0.125  # 90 m across
BEV_EGO_PX = (360, 440)  # ego (rear axle) position in the BEV tile: more room ahead
TILE_W, TILE_H = 288, 162
FRAME_W, FRAME_H = BEV_PX + 3 * TILE_W, BEV_PX  # 1584 x 720, both multiples of 16
CAMERA_GRID = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"),
)
SCORE_DRAW = 0.3
WHITE, GREY, RED, BLUE, ORANGE = (255, 255, 255), (110, 110, 110), (230, 40, 40), (60, 140, 255), (
    255, 150, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _bev_px(xy_m: np.ndarray) -> np.ndarray:
    """(N, 2) ego x (forward), y (left) metres -> (N, 2) pixel (u, v), forward up."""
    xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
    u = BEV_EGO_PX[0] - xy[:, 1] / BEV_M_PER_PX
    v = BEV_EGO_PX[1] - xy[:, 0] / BEV_M_PER_PX
    return np.stack([u, v], axis=1)


def _poly(img: np.ndarray, xy_m: np.ndarray, color: tuple, thickness: int, closed: bool) -> None:
    pts = np.round(_bev_px(xy_m)).astype(np.int32)
    cv2.polylines(img, [pts], closed, color, thickness, cv2.LINE_AA)


def _draw_bev_boxes(img: np.ndarray, boxes: Boxes3D, gt: bool) -> None:
    if len(boxes) == 0:
        return
    corners = boxes.corners()[:, :4, :2]
    for b in range(len(boxes)):
        color = WHITE if gt else class_color(int(boxes.labels[b]))
        _poly(img, corners[b], color, 1 if gt else 2, True)
        if not gt:  # heading: centre to the middle of the front face (corners 0 and 3)
            front = (corners[b, 0] + corners[b, 3]) / 2
            _poly(img, np.stack([boxes.center_m[b, :2], front]), color, 1, False)


def bev_tile(sample: SyncedSample | None, result: FrameResult | None) -> np.ndarray:
    """The bird's-eye-view tile (BEV_PX square, RGB)."""
    img = np.zeros((BEV_PX, BEV_PX, 3), np.uint8)
    for r_m in (10, 20, 30, 40):  # range rings every 10 m
        cv2.circle(img, BEV_EGO_PX, int(r_m / BEV_M_PER_PX), (40, 40, 40), 1, cv2.LINE_AA)
    if sample is not None and sample.lidar is not None and sample.lidar.num_points:
        xyz = sample.lidar.xyz
        uv = np.round(_bev_px(xyz[:, :2])).astype(np.int64)
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < BEV_PX) & (uv[:, 1] >= 0) & (uv[:, 1] < BEV_PX)
        shade = np.clip(110 + 40 * xyz[ok, 2], 60, 230).astype(np.uint8)
        img[uv[ok, 1], uv[ok, 0]] = shade[:, None]
    if sample is not None:
        lay = sample.ultrasonic_layout
        ranges = sample.ultrasonic.ranges_m if sample.ultrasonic is not None else None
        for i in range(len(lay.names)):
            pos, yaw = lay.position_ego_m[i, :2], float(lay.yaw_ego_rad[i])
            a = np.linspace(yaw - lay.half_fov_rad, yaw + lay.half_fov_rad, 9)
            arc = pos + lay.max_range_m * np.stack([np.cos(a), np.sin(a)], 1)
            _poly(img, np.vstack([pos, arc, pos]), (70, 70, 90), 1, False)
            if ranges is not None and np.isfinite(ranges[i]):
                echo = pos + float(ranges[i]) * np.stack([np.cos(a), np.sin(a)], 1)
                _poly(img, echo, ORANGE, 2, False)
        if sample.boxes is not None:
            _draw_bev_boxes(img, sample.boxes, gt=True)
    # The ego car (Renault Zoe footprint around the rear axle).
    _poly(img, np.array([[-0.85, 0.87], [3.45, 0.87], [3.45, -0.87], [-0.85, -0.87]]), BLUE, 2,
          True)
    if result is not None:
        dets = result.detections
        _draw_bev_boxes(img, dets.subset(dets.scores >= SCORE_DRAW), gt=False)
        plan = np.vstack([[0.0, 0.0], np.asarray(result.plan.waypoints_xy_ego_m)])
        _poly(img, plan, BLUE, 2, False)
        for u, v in np.round(_bev_px(plan[1:])).astype(int):
            cv2.circle(img, (int(u), int(v)), 3, BLUE, -1, cv2.LINE_AA)
    cv2.putText(img, "BEV (forward up, 10 m rings)", (8, BEV_PX - 10), FONT, 0.45, GREY, 1,
                cv2.LINE_AA)
    return img


def camera_tiles(
    sample: SyncedSample | None, result: FrameResult | None, ages_ms: dict[str, float | None]
) -> np.ndarray:
    """The 2 x 3 camera grid with the predicted boxes projected (RGB)."""
    grid = np.zeros((2 * TILE_H, 3 * TILE_W, 3), np.uint8)
    views = dict(zip(CAMERA_CHANNELS, sample.cameras)) if sample is not None else {}
    dets = None
    if result is not None:
        dets = result.detections.subset(result.detections.scores >= SCORE_DRAW)
    for r, row in enumerate(CAMERA_GRID):
        for c, ch in enumerate(row):
            view = views.get(ch)
            if view is None:
                tile = np.zeros((TILE_H, TILE_W, 3), np.uint8)
                age = ages_ms.get(ch)
                why = "no frame yet" if age is None else f"missing (age {age:.0f} ms)"
                cv2.putText(tile, why, (10, TILE_H // 2 + 10), FONT, 0.45, RED, 1, cv2.LINE_AA)
            else:
                img = view.image.image
                if dets is not None and len(dets):
                    img = draw_boxes(img, dets, view, thickness_px=1)
                tile = cv2.resize(np.ascontiguousarray(img), (TILE_W, TILE_H),
                                  interpolation=cv2.INTER_AREA)
            cv2.putText(tile, ch, (6, 16), FONT, 0.42, WHITE, 1, cv2.LINE_AA)
            grid[r * TILE_H:(r + 1) * TILE_H, c * TILE_W:(c + 1) * TILE_W] = tile
    return grid


def info_panel(record: dict, total_ticks: int, dropped: int) -> np.ndarray:
    """Frame counter, control values, latency and faults of one tick (RGB)."""
    h, w = FRAME_H - 2 * TILE_H, 3 * TILE_W
    img = np.full((h, w, 3), 18, np.uint8)
    lines: list[tuple[str, tuple]] = [
        (f"tick {record['tick'] + 1}/{total_ticks}  {record['scene']}  "
         f"t={record['scene_time_s']:.2f} s  {'KEYFRAME' if record['is_keyframe'] else 'sweep'}"
         f"  dropped {dropped}", WHITE),
    ]
    c = record["control"]
    if c:
        lines.append((f"steer {c['steer_rad'] or 0:+.3f} rad  accel {c['accel_mps2'] or 0:+.2f} "
                      f"m/s2  brake {c['brake'] or 0:.2f}", WHITE))
        lines.append((f"AEB {'ON: ' + c['aeb_reason'] if c['aeb'] else 'off'}",
                      RED if c["aeb"] else WHITE))
    else:
        lines.append((f"no output: {record['status']}", RED))
    lat = record["latency_ms"]
    if "total" in lat:
        lines.append((f"Pipeline.run {lat['total']:.1f} ms  input wait "
                      f"{lat.get('input_wait', 0):.1f} ms  load {lat.get('load', 0):.1f} ms",
                      WHITE))
        stages = [k for k in lat if k not in ("total", "input_wait", "load", "tick", "outputs")]
        top = sorted(stages, key=lambda k: -lat[k])[:4]
        lines.append(("  " + "  ".join(f"{k} {lat[k]:.1f}" for k in top), GREY))
    ages = [f"{ch.replace('CAM_', '')} {a:.0f}" for ch, a in record["sensor_age_ms"].items()
            if a is not None and ch != "LIDAR_TOP"]
    for i in range(0, len(ages), 4):  # four per line: the panel is 864 px wide
        lines.append((("sensor age ms: " if i == 0 else "  ") + "  ".join(ages[i:i + 4]), GREY))
    missing = [ch for ch, ok in record["present"].items() if not ok]
    if missing:
        lines.append(("missing: " + ", ".join(missing), ORANGE))
    for e in record["errors"][:3]:
        lines.append((e[:110], RED))
    y = 30
    for text, color in lines:
        cv2.putText(img, text, (12, y), FONT, 0.55, color, 1, cv2.LINE_AA)
        y += 30
    legend = "boxes: predicted (class colour, score>=0.3), ground truth (white); plan (blue); " \
             "ultrasonic echoes (orange)"
    cv2.putText(img, legend, (12, h - 12), FONT, 0.4, GREY, 1, cv2.LINE_AA)
    return img


def render_frame(
    sample: SyncedSample | None,
    result: FrameResult | None,
    record: dict,
    total_ticks: int,
    dropped: int,
) -> np.ndarray:
    """The full video frame of one tick, (FRAME_H, FRAME_W, 3) uint8 RGB."""
    right = np.vstack([
        camera_tiles(sample, result, record["sensor_age_ms"]),
        info_panel(record, total_ticks, dropped),
    ])
    return np.ascontiguousarray(np.hstack([bev_tile(sample, result), right]))


class VideoWriter:
    """H.264 MP4 through imageio-ffmpeg, one frame at a time.

    The ffmpeg child runs in its own process group (imageio-ffmpeg's ``prevent_sigint``), so a
    Ctrl-C in the terminal reaches only replay, which then closes the file properly.
    """

    def __init__(self, path: Path, fps: float) -> None:
        import imageio_ffmpeg

        self.path = path
        self.frames = 0
        self._gen = imageio_ffmpeg.write_frames(
            str(path), (FRAME_W, FRAME_H), fps=fps, codec="libx264", quality=None,
            macro_block_size=16,
            # One encoder thread: x264's default pool (1.5 x cores) starves the pipeline's
            # thread and stalls ticks for seconds on a 2-core machine.
            output_params=["-preset", "veryfast", "-crf", "28", "-threads", "1"],
        )
        self._gen.send(None)

    def write(self, frame_rgb: np.ndarray) -> None:
        """Encode one (FRAME_H, FRAME_W, 3) uint8 frame."""
        if self._gen is None:
            raise ValueError(f"{self.path}: already closed")
        self._gen.send(np.ascontiguousarray(frame_rgb, np.uint8))
        self.frames += 1

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None
