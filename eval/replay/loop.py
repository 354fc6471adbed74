"""The replay loop: every LiDAR tick of a drive through ``Pipeline.run``, paced or flat out.

Per tick: wait for the prefetched input (its own latency stage, ``input_wait``), optionally
pace to the recorded clock and drop the ticks that are already late, run the pipeline, write
the JSON line, the video frame and the Foxglove messages. A tick that fails to load or run is
recorded and the replay goes on; Ctrl-C (SIGINT) finishes the current tick, then closes every
output properly and writes the summary of the ticks done.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from calibration.sample import Boxes3D
from eval.detection.results import ResultsMeta, write_results
from eval.replay.metrics import KeyframeSpill, LatencyStats, evaluate_keyframes
from eval.replay.records import JsonLines, tick_record
from eval.replay.source import (
    Prefetcher,
    TickInput,
    TickRef,
    resolve_checkpoint,
    resolve_scenes,
    scene_ticks,
)
from eval.runner import ModelRun, SampleFacts, SampleFailure, decode_like_training
from sensors.datasets.nuscenes import CausalSync, NuScenesDataset

if TYPE_CHECKING:
    from perception.pipeline import Pipeline
    from perception.types import FrameResult


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay and how.

    Attributes:
        dataroot / version: the nuScenes-format dataset.
        scenes: scene names or tokens (in this order).
        split: or/and every scene of a devkit split (``"mini_val"``, ``"val"``).
        checkpoint: a shipped variant name (``perception/checkpoints/<name>``) or a folder.
        out_dir: where ticks.jsonl, summary.json/.md, replay.mp4, replay.mcap go.
        start_s / end_s: slice of each scene, seconds after its first sweep (inclusive).
        realtime: pace by the recorded timestamps (x ``speed``) and drop late ticks.
        speed: playback speed in real-time mode (2.0 = twice as fast as recorded).
        video / mcap: write replay.mp4 / replay.mcap.
        min_score: detections below this score are left out of ticks.jsonl (the keyframe
            metrics always use every detection, as ``tools/evaluate.py`` does).
        prefetch: ticks read ahead by the background reader (bounded queue).
        num_sweeps: LiDAR sweeps accumulated per tick (as for evaluation: 10).
        io_threads: camera decoding threads inside the reader (1 = the reader thread).
        device: torch device (default CUDA when present).
        causal: the sync limits (a reading older than its limit counts as missing).
        progress: tqdm bar on stderr.

    """

    dataroot: Path
    version: str = "v1.0-mini"
    scenes: tuple[str, ...] = ()
    split: str | None = None
    checkpoint: str | Path = "gated"
    out_dir: Path = Path("outputs/replay")
    start_s: float = 0.0
    end_s: float | None = None
    realtime: bool = False
    speed: float = 1.0
    video: bool = True
    mcap: bool = True
    min_score: float = 0.3
    prefetch: int = 4
    num_sweeps: int = 10
    io_threads: int = 1
    device: str | None = None
    causal: CausalSync = field(default_factory=CausalSync)
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"replay: speed must be > 0, got {self.speed}")
        if self.start_s < 0 or (self.end_s is not None and self.end_s < self.start_s):
            raise ValueError(f"replay: bad slice start={self.start_s} end={self.end_s}")


@dataclass(frozen=True)
class ReplaySummary:
    """The outcome of a replay (also written as ``summary.json`` / ``summary.md``).

    Attributes:
        data: everything in ``summary.json``.
        paths: output name -> file.

    """

    data: dict
    paths: dict[str, Path]

    def __getitem__(self, key: str) -> object:
        return self.data[key]


def _camera_models(ds: NuScenesDataset, scene_tokens: list[str]) -> dict:
    """Camera channel -> (K, width, height) of the recorded images (first scene's rig)."""
    out: dict = {}
    for scene in scene_tokens[:1]:
        first = ds.scene_sample_tokens(scene)[0]
        for ch, cam in ds.sensor_rig(first).cameras.items():
            out[ch] = (np.asarray(cam.intrinsics, np.float64), int(cam.width), int(cam.height))
    return out


class _Interrupt:
    """SIGINT sets a flag that the loop checks between ticks; a second one aborts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ANN001
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _nominal_hz(ticks: list[TickRef]) -> float:
    """The LiDAR rate from the median tick spacing within scenes (20 Hz on nuScenes)."""
    d = [b.timestamp_us - a.timestamp_us for a, b in zip(ticks, ticks[1:])
         if a.scene_token == b.scene_token]
    return 1e6 / float(np.median(d)) if d else 20.0


def replay(
    cfg: ReplayConfig,
    pipeline: Pipeline | None = None,
    dataset: NuScenesDataset | None = None,
) -> ReplaySummary:
    """Replay the configured scenes tick by tick; outputs go to ``cfg.out_dir``.

    Args:
        cfg: what to replay.
        pipeline: a ready ``Pipeline`` (default: ``Pipeline.from_checkpoint(cfg.checkpoint)``).
        dataset: an already loaded dataset for ``cfg.dataroot`` (default: loaded here).

    Returns:
        The summary (also in ``summary.json`` / ``summary.md``).

    Raises:
        FileNotFoundError / ValueError: a bad dataroot, checkpoint, scene, split or slice
            (before anything is written). Per-tick faults are recorded, never raised.

    """
    from tqdm import tqdm

    checkpoint = None
    if pipeline is None:
        from perception.pipeline import Pipeline

        checkpoint = resolve_checkpoint(cfg.checkpoint)
        pipeline = Pipeline.from_checkpoint(checkpoint, device=cfg.device)
    ds = dataset or NuScenesDataset(
        cfg.dataroot, cfg.version, num_sweeps=cfg.num_sweeps, io_threads=cfg.io_threads
    )
    decode_like_training(ds, pipeline.cfg)
    scenes = resolve_scenes(ds, cfg.scenes, cfg.split)
    ticks = scene_ticks(ds, scenes, cfg.start_s, cfg.end_s)
    if not ticks:
        raise ValueError(
            f"replay: no LIDAR_TOP sweep in [{cfg.start_s}, {cfg.end_s}] s of the scenes"
        )
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"ticks": out / "ticks.jsonl", "summary": out / "summary.json",
             "summary_md": out / "summary.md", "keyframes": out / "keyframes.jsonl"}
    hz = _nominal_hz(ticks)
    meta = ResultsMeta(use_camera=pipeline.cfg.uses("camera"),
                       use_lidar=pipeline.cfg.uses("lidar"))
    plan_run = ModelRun(meta=meta, dt_s=pipeline.cfg.planning.dt_s,
                        ego_status=bool(pipeline.cfg.planning.use_ego_status),
                        control=pipeline.control_cfg)
    stats = LatencyStats()
    counts = {"ok": 0, "failed": 0, "dropped": 0}
    error_ticks: list[dict] = []
    n_errors = 0
    missing_ticks: dict[str, int] = {}  # channel -> processed ticks without its reading
    lines = JsonLines(paths["ticks"])
    spill = KeyframeSpill(paths["keyframes"])
    video = recorder = None
    output_errors: list[str] = []
    if cfg.video:
        from eval.replay.video import VideoWriter

        paths["video"] = out / "replay.mp4"
        video = VideoWriter(paths["video"], fps=hz)
    if cfg.mcap:
        from eval.replay.recording import McapRecorder

        paths["mcap"] = out / "replay.mcap"
        recorder = McapRecorder(paths["mcap"], _camera_models(ds, scenes))
    reader = Prefetcher(ds, ticks, cfg.causal, cfg.prefetch,
                        with_gt=cfg.video or cfg.mcap, camera_bytes=cfg.mcap)
    bar = tqdm(total=len(ticks), unit="tick", desc="replay", disable=not cfg.progress)
    handled = 0
    interrupted = False
    anchor: tuple[str, float, int] | None = None  # (scene, wall, recorded us) of the clock
    t_start = time.perf_counter()

    def emit(item: TickInput, result: FrameResult | None, lat: dict, status: str,
             errors: list[str]) -> None:
        nonlocal handled, n_errors, video
        t_out = time.perf_counter()
        record = tick_record(item, result, lat, status, errors, cfg.min_score)
        if video is not None:
            try:
                from eval.replay.video import render_frame

                video.write(render_frame(item.sample, result, record, len(ticks),
                                         counts["dropped"]))
            except Exception as exc:  # a broken encoder must not stop the replay
                output_errors.append(f"video: {type(exc).__name__}: {exc}")
                video.close()
                video = None
        if recorder is not None:
            try:
                recorder.write_tick(item.sample, result, record, item.camera_jpegs)
            except Exception as exc:
                output_errors.append(f"mcap tick {item.ref.index}: {type(exc).__name__}: {exc}")
        if status != "dropped":
            for ch, ok in record["present"].items():
                if not ok:
                    missing_ticks[ch] = missing_ticks.get(ch, 0) + 1
            lat["outputs"] = (time.perf_counter() - t_out) * 1e3
            lat["tick"] = lat.get("input_wait", 0.0) + (time.perf_counter() - t_tick) * 1e3
            record["latency_ms"] = {k: round(v, 3) for k, v in lat.items()}
            stats.add(lat)
        lines.write(record)
        counts[status] += 1
        handled += 1
        if errors:
            n_errors += 1
            if len(error_ticks) < 50:  # the first ones in the summary; all are in ticks.jsonl
                error_ticks.append({"tick": item.ref.index, "errors": errors})
        bar.update(1)

    with _Interrupt() as stop:
        try:
            while not stop.event.is_set():
                t_wait = time.perf_counter()
                item = reader.get()
                if item is None:
                    break
                input_wait = (time.perf_counter() - t_wait) * 1e3
                if cfg.realtime:
                    ref = item.ref
                    if anchor is None or anchor[0] != ref.scene_token:
                        anchor = (ref.scene_token, time.perf_counter(), ref.timestamp_us)
                    due = anchor[1] + (ref.timestamp_us - anchor[2]) * 1e-6 / cfg.speed
                    now = time.perf_counter()
                    if now < due:
                        stop.event.wait(due - now)
                    else:
                        # The newest tick already due is the one to run; the ones before it
                        # are dropped, each recorded.
                        last = ref.index
                        while (last + 1 < len(ticks)
                               and ticks[last + 1].scene_token == ref.scene_token
                               and anchor[1] + (ticks[last + 1].timestamp_us - anchor[2])
                               * 1e-6 / cfg.speed <= now):
                            last += 1
                        if last > ref.index:
                            reader.skip_to(last)
                            for i in range(ref.index, last):
                                t_tick = time.perf_counter()
                                emit(TickInput(ticks[i], None, {}), None, {}, "dropped", [])
                            t_wait = time.perf_counter()
                            item = reader.get()
                            if item is None:
                                break
                            input_wait += (time.perf_counter() - t_wait) * 1e3
                t_tick = time.perf_counter()
                errors = list(item.errors)
                result = None
                if item.sample is not None:
                    try:
                        result = pipeline.run(item.sample)
                    except Exception as exc:  # a bad tick is recorded, the replay goes on
                        errors.append(f"Pipeline.run: {type(exc).__name__}: {exc}")
                lat = {"input_wait": input_wait, "load": item.load_ms}
                if result is not None:
                    lat.update(result.timings_ms)
                if item.ref.is_keyframe:
                    tok = item.ref.sample_token
                    pose = (item.sample.global_SE3_ego if item.sample is not None
                            else ds.global_SE3_ego(tok))
                    dets = result.detections if result is not None else Boxes3D.empty()
                    spill.write(tok, write_results({tok: dets}, {tok: pose}, meta)["results"][tok])
                    plan_run.detections[tok] = Boxes3D.empty()  # counted; boxes are spilled
                    if result is not None:
                        plan_run.plans[tok] = np.asarray(result.plan.waypoints_xy_ego_m,
                                                         np.float64)
                        plan_run.samples[tok] = SampleFacts.of(item.sample, result,
                                                                plan_run.dt_s)
                    else:
                        plan_run.failures.append(SampleFailure(tok, "; ".join(errors)))
                emit(item, result, lat, "ok" if result is not None else "failed", errors)
                bar.set_postfix(dropped=counts["dropped"], failed=counts["failed"], refresh=False)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            interrupted = interrupted or stop.event.is_set()
            wall_s = time.perf_counter() - t_start
            reader.close()
            bar.close()
            lines.close()
            for w in (video, recorder):
                if w is not None:
                    try:
                        w.close()
                    except Exception as exc:
                        output_errors.append(f"closing {type(w).__name__}: {exc}")
            data = _summary(cfg, checkpoint, ds, ticks, scenes, handled, counts, wall_s, hz,
                            stats, spill, plan_run, meta, interrupted, n_errors, error_ticks,
                            output_errors, paths, missing_ticks)
            paths["summary"].write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2
                                                      | orjson.OPT_SERIALIZE_NUMPY))
            paths["summary_md"].write_text(summary_markdown(data))
    return ReplaySummary(data, paths)


def _summary(cfg, checkpoint, ds, ticks, scenes, handled, counts, wall_s, hz, stats, spill,  # noqa: ANN001, ANN202, PLR0913
             plan_run, meta, interrupted, n_errors, error_ticks, output_errors, paths,
             missing_ticks):
    processed = counts["ok"] + counts["failed"]
    data: dict = {
        "dataroot": str(cfg.dataroot),
        "version": cfg.version,
        "checkpoint": str(checkpoint or cfg.checkpoint),
        "scenes": [ds.nusc.get("scene", s)["name"] for s in scenes],
        "slice_s": [cfg.start_s, cfg.end_s],
        "mode": f"realtime x{cfg.speed:g}" if cfg.realtime else "as fast as possible",
        "ticks": len(ticks),
        "handled": handled,
        "processed": processed,
        "ok": counts["ok"],
        "failed": counts["failed"],
        "dropped": counts["dropped"],
        "ticks_with_errors": n_errors,
        "sensor_missing_ticks": missing_ticks,
        "interrupted": bool(interrupted),
        "not_reached": len(ticks) - handled,
        "wall_s": wall_s,
        "lidar_hz": hz,
        "rate_ticks_per_s": processed / wall_s if wall_s > 0 else float("nan"),
        "real_time_factor": handled / hz / wall_s if wall_s > 0 else float("nan"),
        "latency_ms": stats.table(),
        "sync": {"rule": "newest reading at or before the tick",
                 "max_age_ms": {"camera": cfg.causal.camera_max_age_us / 1e3,
                                "ultrasonic": cfg.causal.ultrasonic_max_age_us / 1e3,
                                "can_bus": cfg.causal.can_bus_max_age_us / 1e3}},
        "keyframes": spill.count,
        "detection": None,
        "planning_control": None,
        "first_errors": error_ticks,
        "output_errors": output_errors,
        "outputs": {k: str(v) for k, v in paths.items()},
    }
    if not ds.has_ultrasonic:
        data["note"] = "no ultrasonic sensor in this dataset: ranges derived from the LiDAR"
    results = spill.results(meta.to_dict())
    if results["results"]:
        try:
            m = evaluate_keyframes(ds.nusc, results)
            data["detection"] = {"mAP": m.mean_ap, "NDS": m.nd_score, **m.tp_errors,
                                 "label_aps": {c: {str(k): v for k, v in d.items()}
                                               for c, d in m.label_aps.items()}}
        except Exception as exc:  # e.g. a dataset without annotations
            data["detection"] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            data["planning_control"] = plan_run.report(ds.nusc)
        except Exception as exc:
            data["planning_control"] = {"error": f"{type(exc).__name__}: {exc}"}
    return _jsonable(data)


def _jsonable(x: object) -> object:
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summary_markdown(data: dict) -> str:
    """``summary.md``: counts, rate, the latency table and the keyframe metrics."""
    def f(v: object, d: int = 1) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    md = [
        f"# Replay: {', '.join(data['scenes'])}",
        "",
        f"Checkpoint `{data['checkpoint']}`, {data['mode']}, data `{data['dataroot']}` "
        f"({data['version']}).",
        "",
        f"- ticks: {data['ticks']} planned, {data['processed']} processed ({data['ok']} ok, "
        f"{data['failed']} failed), {data['dropped']} dropped, {data['not_reached']} not reached"
        + (" (interrupted)" if data["interrupted"] else ""),
        f"- ticks with errors (missing or corrupt sensor data): {data['ticks_with_errors']}",
        "- processed ticks without a sensor's reading (stale, missing or unreadable): "
        + (", ".join(f"{k} {v}" for k, v in data["sensor_missing_ticks"].items()) or "none"),
        f"- rate: {f(data['rate_ticks_per_s'])} ticks/s processed, real-time factor "
        f"{f(data['real_time_factor'], 2)} ({f(data['lidar_hz'])} Hz = 1.0), "
        f"wall {f(data['wall_s'])} s",
        "",
        "| stage | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|",
    ]
    for k, s in data["latency_ms"].items():
        md.append(f"| {k} | {f(s['p50'])} | {f(s['p95'])} | {f(s['max'])} |")
    det = data.get("detection")
    if det and "mAP" in det:
        md += ["", f"Keyframes ({data['keyframes']}): mAP {det['mAP']:.4f}, NDS {det['NDS']:.4f} "
               "(nuScenes detection metrics, devkit-identical, on these keyframes only)"]
    pc = data.get("planning_control")
    if pc and "planning" in pc:
        p = pc["planning"]
        md.append("Planning: " + ", ".join(f"{k} {v:.3f}" for k, v in p.items()
                                           if isinstance(v, float)))
    if pc and "aeb" in pc:
        md.append("AEB: " + ", ".join(f"{k} {v}" for k, v in pc["aeb"].items()))
    if data.get("note"):
        md += ["", data["note"]]
    return "\n".join(md) + "\n"
