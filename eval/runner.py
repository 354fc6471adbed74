"""Run a trained checkpoint over a split and gather what the metrics need.

One loop shared by ``tools/evaluate.py --checkpoint`` and the demo: per sample it keeps the
detections (ego frame), the plan, the control command and the stage timings; a sample that
fails to load or run is recorded in ``failures`` and gets no detections, and the run goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from calibration.sample import Boxes3D, SyncedSample
from calibration.se3 import SE3
from eval import planning
from eval.detection.results import ResultsMeta, write_results

if TYPE_CHECKING:
    from perception.config import ModelConfig
    from sensors.datasets.nuscenes import NuScenesDataset


@dataclass
class ModelRun:
    """Per-sample outputs of one checkpoint over a list of samples.

    Attributes:
        detections: sample token -> boxes in that sample's ego frame (empty when it failed).
        poses: sample token -> global_SE3_ego at the sample's LiDAR timestamp.
        plans: sample token -> (T, 2) planned waypoints, ego frame, metres.
        plans_without_ego_status: the same with ego status withheld (ablation), if run.
        samples: token -> the input sample's facts used by the planning/control metrics.
        timings_ms: one dict of stage -> ms per successful sample.
        failures: ``{"sample_token", "error"}`` per failed sample.
        meta: which sensors the model used (for the results file).
        dt_s: waypoint spacing, seconds.
        ego_status: whether the planner saw ego speed / yaw rate.

    """

    detections: dict[str, Boxes3D] = field(default_factory=dict)
    poses: dict[str, SE3] = field(default_factory=dict)
    plans: dict[str, np.ndarray] = field(default_factory=dict)
    plans_without_ego_status: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, dict] = field(default_factory=dict)
    timings_ms: list[dict[str, float]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    meta: ResultsMeta = field(default_factory=ResultsMeta)
    dt_s: float = 0.5
    ego_status: bool = False
    steering_ratio: float | None = None

    def add_empty(self, token: str, global_SE3_ego: SE3) -> None:  # noqa: N803
        """Register a sample that was not run (it counts as having no detections)."""
        self.detections[token] = Boxes3D.empty()
        self.poses[token] = global_SE3_ego

    def write_results(self, path: str | Path | None = None) -> dict:
        """The nuScenes results dict (global frame), written to ``path`` when given."""
        return write_results(self.detections, self.poses, self.meta, path)

    def median_latency_ms(self) -> float:
        """Median end-to-end ``Pipeline.run`` time over the successful samples."""
        totals = [t["total"] for t in self.timings_ms if "total" in t]
        return float(np.median(totals)) if totals else float("nan")

    def stage_latency_ms(self) -> dict[str, float]:
        """Median time of each stage over the successful samples."""
        stages = {k for t in self.timings_ms for k in t}
        return {k: float(np.median([t[k] for t in self.timings_ms if k in t])) for k in stages}

    def report(self, nusc) -> dict:  # noqa: ANN001 - a nuscenes.NuScenes
        """Planning (L2, collisions), control vs CAN bus and AEB metrics as a JSON-able dict."""
        tokens = [t for t in self.plans if self.samples[t]["future_xy"] is not None]
        out: dict = {"samples": len(self.detections), "failures": len(self.failures)}
        if tokens:
            gt = np.stack([self.samples[t]["future_xy"] for t in tokens])
            horizon = gt.shape[1]
            fut = [planning.nuscenes_future_boxes(nusc, t, horizon, self.dt_s) for t in tokens]
            pred = np.stack([self.plans[t] for t in tokens])
            pm = planning.planning_metrics(
                pred, gt, future_boxes=fut, dt_s=self.dt_s, ego_status=self.ego_status
            )
            out["planning"] = pm.to_dict()
            if self.plans_without_ego_status:
                pz = planning.planning_metrics(
                    np.stack([self.plans_without_ego_status[t] for t in tokens]),
                    gt,
                    future_boxes=fut,
                    dt_s=self.dt_s,
                    ego_status=False,
                )
                out["planning_ego_status_ablation (zeroed at inference)"] = (
                    planning.ego_status_ablation(pm, pz)
                )
        rows = [self.samples[t] for t in self.plans]
        if rows:
            col = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != "future_xy"}
            speed_pred = planning.planned_speed_mps(np.stack(list(self.plans.values())), self.dt_s)
            out["control_vs_can_bus"] = asdict(
                planning.control_errors(
                    col["steer_rad"],
                    speed_pred,
                    col["can_speed_mps"],
                    can_yaw_rate_radps=col["can_yaw_rate_radps"],
                    can_steering_wheel_rad=col["can_steering_rad"],
                    steering_ratio=self.steering_ratio,
                )
            )
            out["aeb"] = asdict(
                planning.aeb_metrics(
                    col["aeb"].astype(bool), col["obstacle_distance_m"], col["ego_speed_mps"]
                )
            )
        return out


def decode_like_training(ds: NuScenesDataset, cfg: ModelConfig) -> None:
    """Make ``ds`` decode camera images at the reduction ``cfg``'s training cache used
    (``perception.train.cache_split``), so the model sees the same pixels; no-op for models
    without cameras.
    """
    if cfg.uses("camera"):
        from perception.backbones.camera_inputs import image_reduction_for

        ds.set_image_reduction(image_reduction_for(ds.camera_image_hw(), cfg.camera.image_hw))


def run_model(
    checkpoint: str | Path,
    ds: NuScenesDataset,
    tokens: Sequence[str],
    samples: Mapping[str, SyncedSample] | None = None,
    device: str | None = None,
    ego_status_ablation: bool = False,
    steering_ratio: float | None = None,
    progress: bool = True,
) -> ModelRun:
    """Run ``checkpoint`` on every token (samples preloaded or loaded from ``ds``).

    Args:
        checkpoint: checkpoint folder written by ``tools/train.py``.
        ds: the dataset the tokens belong to (poses, loading). When the model reads
            cameras, ``ds`` is switched to the decode reduction its training used
            (``decode_like_training``).
        tokens: keyframe sample tokens; every one gets an entry in ``detections``.
        samples: preloaded (possibly fault-injected) samples by token; loaded when absent.
        device: torch device; default CUDA when present, else CPU.
        ego_status_ablation: also plan with the CAN bus withheld and keep both plans.
        steering_ratio: steering-wheel / front-wheel angle ratio for the CAN bus comparison;
            None compares with the front-wheel angle the CAN yaw rate implies.
        progress: tqdm bar on stderr.

    Returns:
        The per-sample record; failures recorded, never raised.

    """
    from tqdm import tqdm

    from perception import Pipeline

    pipe = Pipeline.from_checkpoint(checkpoint, device=device)
    decode_like_training(ds, pipe.cfg)
    run = ModelRun(
        meta=ResultsMeta(use_camera=pipe.cfg.uses("camera"), use_lidar=pipe.cfg.uses("lidar")),
        dt_s=pipe.cfg.planning.dt_s,
        ego_status=bool(pipe.cfg.planning.use_ego_status),
        steering_ratio=steering_ratio,
    )
    for tok in tqdm(tokens, desc="inference", unit="sample", disable=not progress):
        run.add_empty(tok, ds.global_SE3_ego(tok))
        try:
            sample = samples[tok] if samples is not None and tok in samples else ds.load_sample(tok)
            res = pipe.run(sample)
            if ego_status_ablation:
                plan0 = pipe.run(replace(sample, can_bus=None)).plan.waypoints_xy_ego_m
                run.plans_without_ego_status[tok] = np.asarray(plan0, np.float64)
        except Exception as exc:  # a bad frame is recorded, the run goes on
            run.failures.append({"sample_token": tok, "error": f"{type(exc).__name__}: {exc}"})
            continue
        run.detections[tok] = res.detections
        wp = np.asarray(res.plan.waypoints_xy_ego_m, np.float64)
        run.plans[tok] = wp
        run.timings_ms.append(dict(res.timings_ms))
        cb = sample.can_bus
        gt = sample.boxes
        boxes5 = (
            np.c_[gt.center_m[:, :2], gt.wlh_m[:, 0], gt.wlh_m[:, 1], gt.yaw_rad]
            if gt is not None
            else np.zeros((0, 5))
        )
        run.samples[tok] = {
            "future_xy": sample.future_xy_ego_m,
            "steer_rad": res.control.steer_rad,
            "aeb": bool(res.control.aeb),
            "can_speed_mps": cb.speed_mps if cb else np.nan,
            "can_yaw_rate_radps": cb.yaw_rate_radps if cb else np.nan,
            "can_steering_rad": cb.steering_rad if cb else np.nan,
            "obstacle_distance_m": planning.in_path_distance_m(boxes5),
            # Without a CAN bus, the speed implied by the first planned step stands in.
            "ego_speed_mps": cb.speed_mps if cb else float(np.hypot(*wp[0]) / run.dt_s),
        }
    return run
