"""The one inference loop: run a ``Pipeline`` (or a checkpoint) over samples, gather what the
metrics need, and score it.

Every score the project prints comes through here: ``tools/evaluate.py --checkpoint``,
``tools/train.py --evaluate``, the fusion benchmark (``eval.benchmark``, which also reuses
branch maps through ``infer_sample``) and the demo. Per sample a ``ModelRun`` keeps the
detections (ego frame), the plan, the control command and the stage timings; a sample that
fails to load or run is recorded in ``failures`` and gets no detections, and the run goes on.
Samples are loaded once (``load_samples``) and shared by every model run over them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from calibration.sample import Boxes3D, SyncedSample
from calibration.se3 import SE3
from eval import planning
from eval.detection.results import ResultsMeta, results_boxes, write_results
from sensors.types import Modality

if TYPE_CHECKING:
    import torch

    from eval.detection.data import EvalBoxSet
    from perception.config import ModelConfig
    from perception.control import ControlConfig
    from perception.pipeline import Pipeline
    from perception.sample_arrays import SampleArrays
    from perception.types import FrameResult
    from sensors.datasets.nuscenes import NuScenesDataset, SensorFault


@dataclass(frozen=True)
class SampleFacts:
    """The facts of one input sample and its outputs that the planning/control metrics read.

    Attributes:
        future_xy: (T, 2) recorded future ego positions, ego frame, metres (None at a
            scene's end).
        steer_rad: the controller's front-wheel angle.
        aeb: whether the controller fired automatic emergency braking.
        can_speed_mps / can_yaw_rate_radps / can_steering_rad: the CAN bus record (NaN
            without one).
        obstacle_distance_m: ground-truth free distance to the in-path obstacle.
        ego_speed_mps: the CAN speed or, without a CAN bus, the first planned step's speed.

    """

    future_xy: np.ndarray | None
    steer_rad: float
    aeb: bool
    can_speed_mps: float
    can_yaw_rate_radps: float
    can_steering_rad: float
    obstacle_distance_m: float
    ego_speed_mps: float

    @classmethod
    def of(cls, sample: SyncedSample, result: FrameResult, dt_s: float) -> SampleFacts:
        """The facts of ``sample`` run to ``result`` (plan waypoints ``dt_s`` apart)."""
        cb, gt = sample.can_bus, sample.boxes
        wp = np.asarray(result.plan.waypoints_xy_ego_m, np.float64)
        boxes5 = (
            np.c_[gt.center_m[:, :2], gt.wlh_m[:, 0], gt.wlh_m[:, 1], gt.yaw_rad]
            if gt is not None
            else np.zeros((0, 5))
        )
        return cls(
            future_xy=sample.future_xy_ego_m,
            steer_rad=result.control.steer_rad,
            aeb=bool(result.control.aeb),
            can_speed_mps=cb.speed_mps if cb else np.nan,
            can_yaw_rate_radps=cb.yaw_rate_radps if cb else np.nan,
            can_steering_rad=cb.steering_rad if cb else np.nan,
            obstacle_distance_m=planning.in_path_distance_m(boxes5),
            # Without a CAN bus, the speed implied by the first planned step stands in.
            ego_speed_mps=cb.speed_mps if cb else float(np.hypot(*wp[0]) / dt_s),
        )


@dataclass(frozen=True)
class SampleFailure:
    """A sample that did not load or run: its token and the error, ``"Type: message"``."""

    sample_token: str
    error: str

    @classmethod
    def of(cls, token: str, exc: BaseException) -> SampleFailure:
        """The failure of ``token`` raising ``exc``."""
        return cls(token, f"{type(exc).__name__}: {exc}")

    def to_dict(self) -> dict[str, str]:
        """``{"sample_token", "error"}``, the JSON form of failure records."""
        return {"sample_token": self.sample_token, "error": self.error}


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
        failures: one ``SampleFailure`` per failed sample.
        sensor_faults: the dataset's corrupt sensor files masked while the run loaded its
            samples (``NuScenesDataset.sensor_faults`` added during the run).
        meta: which sensors the model used (for the results file).
        dt_s: waypoint spacing, seconds.
        ego_status: whether the planner saw ego speed / yaw rate.
        steering_ratio: steering-wheel / front-wheel ratio for the CAN bus comparison.
        control: the pipeline's controller configuration; the AEB metric uses its stopping
            distance (default ``ControlConfig()``).

    """

    detections: dict[str, Boxes3D] = field(default_factory=dict)
    poses: dict[str, SE3] = field(default_factory=dict)
    plans: dict[str, np.ndarray] = field(default_factory=dict)
    plans_without_ego_status: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, SampleFacts] = field(default_factory=dict)
    timings_ms: list[dict[str, float]] = field(default_factory=list)
    failures: list[SampleFailure] = field(default_factory=list)
    sensor_faults: list[SensorFault] = field(default_factory=list)
    meta: ResultsMeta = field(default_factory=ResultsMeta)
    dt_s: float = 0.5
    ego_status: bool = False
    steering_ratio: float | None = None
    control: ControlConfig | None = None

    def add_empty(self, token: str, global_SE3_ego: SE3) -> None:  # noqa: N803
        """Register a sample that was not run (it counts as having no detections)."""
        self.detections[token] = Boxes3D.empty()
        self.poses[token] = global_SE3_ego

    @classmethod
    def for_pipeline(cls, pipe: Pipeline, steering_ratio: float | None = None) -> ModelRun:
        """An empty record for ``pipe`` (results meta, waypoint spacing, ego status)."""
        return cls(
            meta=ResultsMeta(
                use_camera=pipe.cfg.uses(Modality.CAMERA), use_lidar=pipe.cfg.uses(Modality.LIDAR)
            ),
            dt_s=pipe.cfg.planning.dt_s,
            ego_status=bool(pipe.cfg.planning.use_ego_status),
            steering_ratio=steering_ratio,
            control=pipe.control_cfg,
        )

    def record(self, sample: SyncedSample, result: FrameResult) -> None:
        """Keep one sample's outputs and the facts of its input the metrics read."""
        tok = sample.token
        self.detections[tok] = result.detections
        self.poses[tok] = sample.global_SE3_ego
        wp = np.asarray(result.plan.waypoints_xy_ego_m, np.float64)
        self.plans[tok] = wp
        self.timings_ms.append(dict(result.timings_ms))
        self.samples[tok] = SampleFacts.of(sample, result, self.dt_s)

    def fail(self, token: str, exc: BaseException) -> None:
        """Record a failed sample (it keeps no detections)."""
        self.failures.append(SampleFailure.of(token, exc))

    def write_results(self, path: str | Path | None = None) -> dict:
        """The nuScenes results dict (global frame), written to ``path`` when given."""
        return write_results(self.detections, self.poses, self.meta, path)

    def result_boxes(self) -> EvalBoxSet:
        """The columns ``write_results()`` would hold, built without its records (scoring)."""
        return results_boxes(self.detections, self.poses)

    def median_latency_ms(self, first: int | None = None) -> float:
        """Median end-to-end ``Pipeline.run`` time over the successful samples (the ``first``
        ones when given: those run without maps shared by other pipelines).
        """
        totals = [t["total"] for t in self.timings_ms[:first] if "total" in t]
        return float(np.median(totals)) if totals else float("nan")

    def stage_latency_ms(self, first: int | None = None) -> dict[str, float]:
        """Median time of each stage over the successful samples (the ``first`` ones)."""
        timings = self.timings_ms[:first]
        stages = {k for t in timings for k in t}
        return {k: float(np.median([t[k] for t in timings if k in t])) for k in stages}

    def report(self, nusc) -> dict:  # noqa: ANN001 - a nuscenes.NuScenes
        """Planning (L2, collisions), control vs CAN bus and AEB metrics as a JSON-able dict.

        Keys: ``samples``, ``failures``, ``sensor_faults`` (counts), ``planning``,
        ``planning_ego_status_ablation`` (when run: the planner with ego status zeroed at
        inference, beside the normal run), ``control_vs_can_bus``, ``aeb``.
        """
        tokens = [t for t in self.plans if self.samples[t].future_xy is not None]
        out: dict = {
            "samples": len(self.detections),
            "failures": len(self.failures),
            "sensor_faults": len(self.sensor_faults),
        }
        if tokens:
            gt = np.stack([self.samples[t].future_xy for t in tokens])
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
                # Ego status zeroed at inference: the plan's dependence on speed / yaw rate.
                out["planning_ego_status_ablation"] = planning.ego_status_ablation(pm, pz)
        rows = [self.samples[t] for t in self.plans]
        if rows:
            col = {
                f.name: np.array([getattr(r, f.name) for r in rows])
                for f in fields(SampleFacts)
                if f.name != "future_xy"
            }
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
                    col["aeb"].astype(bool),
                    col["obstacle_distance_m"],
                    col["ego_speed_mps"],
                    control=self.control,
                )
            )
        return out


def training_image_reduction(ds: NuScenesDataset, cfg: ModelConfig) -> int:
    """The camera decode reduction ``cfg``'s training cache used on ``ds`` (1 without cameras)."""
    if not cfg.uses(Modality.CAMERA):
        return ds.image_reduction
    from perception.backbones.camera_inputs import image_reduction_for

    return image_reduction_for(ds.camera_image_hw(), cfg.camera_source_hw)


def decode_like_training(ds: NuScenesDataset, cfg: ModelConfig) -> None:
    """Make ``ds`` decode camera images at the reduction ``cfg``'s training cache used
    (``perception.train.cache_split``), so the model sees the same pixels; no-op for models
    without cameras.
    """
    if cfg.uses(Modality.CAMERA):
        ds.set_image_reduction(training_image_reduction(ds, cfg))


@dataclass(frozen=True, eq=False)
class LoadedSamples:
    """Samples read once from a dataset, shared by every model run over them.

    Attributes:
        tokens: every requested token, in order (failed ones included).
        samples: token -> the loaded sample (failed tokens absent).
        poses: token -> global_SE3_ego (also for failed tokens, for empty results).
        failures: one ``SampleFailure`` per sample that did not load.
        image_reduction: the camera decode reduction they were read at.

    """

    tokens: tuple[str, ...]
    samples: dict[str, SyncedSample]
    poses: dict[str, SE3]
    failures: tuple[SampleFailure, ...]
    image_reduction: int


def load_samples(
    ds: NuScenesDataset,
    tokens: Sequence[str],
    image_reduction: int | None = None,
    progress: bool = True,
) -> LoadedSamples:
    """Read every token once (at ``image_reduction``, default the dataset's current one); a
    sample that fails is recorded and left out.
    """
    from tqdm import tqdm

    if image_reduction is not None:
        ds.set_image_reduction(image_reduction)
    samples: dict[str, SyncedSample] = {}
    poses: dict[str, SE3] = {}
    failures: list[SampleFailure] = []
    for tok in tqdm(tokens, desc="load samples", unit="sample", disable=not progress):
        try:
            poses[tok] = ds.global_SE3_ego(tok)
            samples[tok] = ds.load_sample(tok)
        except Exception as exc:  # a bad frame is recorded, the others go on
            failures.append(SampleFailure.of(tok, exc))
            poses.setdefault(tok, SE3.identity())
    return LoadedSamples(tuple(tokens), samples, poses, tuple(failures), ds.image_reduction)


def as_pipeline(model: Pipeline | str | Path, device: str | None = None) -> Pipeline:
    """``model`` itself, or the pipeline of a checkpoint folder."""
    from perception import Pipeline

    if isinstance(model, Pipeline):
        return model
    return Pipeline.from_checkpoint(model, device=device)


def infer_sample(
    pipe: Pipeline,
    run: ModelRun,
    sample: SyncedSample,
    arrays: SampleArrays | None = None,
    reuse: Mapping[str, torch.Tensor] | None = None,
    batch_cache: dict | None = None,
    shared_maps: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor] | None:
    """Run ``pipe`` on one sample and record it in ``run`` (a failure is recorded, not raised).

    ``arrays``, ``reuse``, ``batch_cache`` and ``shared_maps`` are ``Pipeline.run_with_maps``'s
    (shared preprocessing, reused branch maps, shared collated batches, maps other pipelines
    computed with the same branch). Returns the branch maps, or None when the sample failed.
    """
    try:
        result, maps = pipe.run_with_maps(sample, arrays, reuse, batch_cache, shared_maps)
    except Exception as exc:  # a bad frame is recorded, the run goes on
        run.fail(sample.token, exc)
        return None
    run.record(sample, result)
    return maps


def run_model(
    checkpoint: Pipeline | str | Path,
    ds: NuScenesDataset,
    tokens: Sequence[str],
    samples: Mapping[str, SyncedSample] | LoadedSamples | None = None,
    device: str | None = None,
    ego_status_ablation: bool = False,
    steering_ratio: float | None = None,
    progress: bool = True,
    transform: Callable[[SyncedSample], SyncedSample] | None = None,
) -> ModelRun:
    """Run a pipeline or checkpoint on every token (samples preloaded or loaded from ``ds``).

    Args:
        checkpoint: a ``Pipeline``, or a checkpoint folder written by ``tools/train.py``.
        ds: the dataset the tokens belong to (poses, loading). When samples are loaded here
            and the model reads cameras, ``ds`` is switched to the decode reduction its
            training used (``decode_like_training``).
        tokens: keyframe sample tokens; every one gets an entry in ``detections``.
        samples: preloaded (possibly corrupted) samples by token, or ``load_samples``'s
            result (its load failures are carried over); the rest are loaded from ``ds``.
        device: torch device for a checkpoint; default CUDA when present, else CPU.
        ego_status_ablation: also plan with the CAN bus withheld and keep both plans.
        steering_ratio: steering-wheel / front-wheel angle ratio for the CAN bus comparison;
            None compares with the front-wheel angle the CAN yaw rate implies.
        progress: tqdm bar on stderr.
        transform: applied to every sample before the model sees it (e.g. a corruption).

    Returns:
        The per-sample record; failures recorded, never raised.

    """
    from tqdm import tqdm

    pipe = as_pipeline(checkpoint, device)
    run = ModelRun.for_pipeline(pipe, steering_ratio)
    load_failed: dict[str, SampleFailure] = {}
    if isinstance(samples, LoadedSamples):
        load_failed = {f.sample_token: f for f in samples.failures}
        poses, samples = samples.poses, samples.samples
    else:
        poses = {}
        if samples is None or any(t not in samples for t in tokens):
            decode_like_training(ds, pipe.cfg)
    n0 = len(ds.sensor_faults)  # the faults this run's loading adds are its own
    for tok in tqdm(tokens, desc="inference", unit="sample", disable=not progress):
        run.add_empty(tok, poses[tok] if tok in poses else ds.global_SE3_ego(tok))
        if tok in load_failed:
            run.failures.append(load_failed[tok])
            continue
        try:
            sample = samples[tok] if samples is not None and tok in samples else ds.load_sample(tok)
            if transform is not None:
                sample = transform(sample)
        except Exception as exc:  # a bad frame is recorded, the run goes on
            run.fail(tok, exc)
            continue
        if infer_sample(pipe, run, sample) is None:
            continue
        if ego_status_ablation:
            try:
                plan0 = pipe.run(replace(sample, can_bus=None)).plan.waypoints_xy_ego_m
                run.plans_without_ego_status[tok] = np.asarray(plan0, np.float64)
            except Exception as exc:  # noqa: BLE001 - recorded like any failed sample
                run.fail(tok, exc)
    run.sensor_faults.extend(ds.sensor_faults[n0:])
    return run


def detection_and_planning(run: ModelRun, nusc, split: str) -> dict:  # noqa: ANN001 - NuScenes
    """The nuScenes detection metrics (``eval.detection``, devkit-identical) and open-loop planning
    (L2, collisions) of one run over a whole split, as one flat JSON-able dict.

    Keys: ``mAP``, ``NDS``, the five TP errors (``mATE`` .. ``mAAE``), ``per_class_AP``,
    ``L2_{1,2,3}s_m`` (at the horizon), ``collision_3s`` (any step up to 3 s), ``samples``,
    ``failures``.
    """
    from eval.detection import evaluate_detections

    summary = evaluate_detections(nusc, run.result_boxes(), split)
    tp = summary.tp_errors
    out: dict = {
        "mAP": float(summary.mean_ap),
        "NDS": float(summary.nd_score),
        "mATE": float(tp["trans_err"]),
        "mASE": float(tp["scale_err"]),
        "mAOE": float(tp["orient_err"]),
        "mAVE": float(tp["vel_err"]),
        "mAAE": float(tp["attr_err"]),
        "per_class_AP": {k: float(v) for k, v in summary.mean_dist_aps.items()},
        "samples": len(run.detections),
        "failures": len(run.failures),
    }
    out.update(planning_summary(run, nusc))
    return out


_FUTURE_BOXES: dict[tuple[int, str, int, float], list] = {}


def planning_summary(run: ModelRun, nusc) -> dict[str, float]:  # noqa: ANN001 - NuScenes
    """``L2_{1,2,3}s_m`` and ``collision_3s`` of the run's plans (NaN without futures).

    The future obstacle boxes of a sample are read from ``nusc`` once per process.
    """
    nan = float("nan")
    tokens = [t for t in run.plans if run.samples[t].future_xy is not None]
    if not tokens:
        return {"L2_1s_m": nan, "L2_2s_m": nan, "L2_3s_m": nan, "collision_3s": nan}
    gt = np.stack([run.samples[t].future_xy for t in tokens])
    horizon = gt.shape[1]
    fut = []
    for t in tokens:
        key = (id(nusc), t, horizon, run.dt_s)
        if key not in _FUTURE_BOXES:
            _FUTURE_BOXES[key] = planning.nuscenes_future_boxes(nusc, t, horizon, run.dt_s)
        fut.append(_FUTURE_BOXES[key])
    pm = planning.planning_metrics(
        np.stack([run.plans[t] for t in tokens]), gt, future_boxes=fut, dt_s=run.dt_s,
        ego_status=run.ego_status,
    )
    return {
        "L2_1s_m": pm.l2_at_m[1.0],
        "L2_2s_m": pm.l2_at_m[2.0],
        "L2_3s_m": pm.l2_at_m[3.0],
        "collision_3s": pm.collision_any[3.0],
    }


DROP_CORRUPTION = {Modality.CAMERA: "camera_all_missing", Modality.LIDAR: "lidar_missing",
                   Modality.ULTRASONIC: "ultrasonic_missing"}


def evaluate_checkpoints(
    checkpoints: Sequence[str | Path],
    dataroot: str | Path,
    version: str,
    split: str,
    drop: tuple[str, ...] = (),
    device: str | None = None,
    threads: int | None = None,
    json_out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Score checkpoints on a split: samples read once, shared by every checkpoint.

    ``tools/train.py --evaluate`` is this function. ``drop`` removes modalities from every
    sample (``eval.corruptions``' ``camera_all_missing`` / ``lidar_missing`` /
    ``ultrasonic_missing``). Prints one line per checkpoint and returns, per checkpoint
    path, the ``detection_and_planning`` metrics plus its variant and config name.
    """
    import json

    from eval.corruptions import corrupt
    from sensors.datasets.nuscenes import NuScenesDataset

    if threads:
        from perception.threads import set_cpu_threads

        set_cpu_threads(threads)
    bad = [m for m in drop if m not in DROP_CORRUPTION]
    if bad:
        raise ValueError(f"cannot drop {bad}: choose from {sorted(DROP_CORRUPTION)}")
    ds = NuScenesDataset(dataroot, version)
    tokens = ds.split_sample_tokens(split)
    if not tokens:
        raise ValueError(f"{dataroot}: split {split!r} has no samples in {version}")

    def remove(sample: SyncedSample) -> SyncedSample:
        for m in drop:
            sample = corrupt(sample, DROP_CORRUPTION[m], 1)
        return sample

    loaded: dict[int, LoadedSamples] = {}
    report: dict[str, dict] = {}
    for ckpt in checkpoints:
        pipe = as_pipeline(ckpt, device)
        r = training_image_reduction(ds, pipe.cfg)
        if r not in loaded:
            loaded[r] = load_samples(ds, tokens, r, progress=progress)
        run = run_model(pipe, ds, tokens, loaded[r], progress=progress,
                        transform=remove if drop else None)
        rec = detection_and_planning(run, ds.nusc, split)
        rec.update(variant=pipe.cfg.variant, config=pipe.cfg.name, dropped=list(drop))
        report[str(ckpt)] = rec
        print(f"{Path(ckpt).name:22s} mAP {rec['mAP']:.4f}  NDS {rec['NDS']:.4f}  "
              f"L2@1/2/3s {rec['L2_1s_m']:.2f}/{rec['L2_2s_m']:.2f}/{rec['L2_3s_m']:.2f} m  "
              f"collision@3s {rec['collision_3s']:.3f}", flush=True)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))
    return report
