"""Inference: ``Pipeline.from_checkpoint(path).run(sample) -> FrameResult`` with stage timings."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from calibration.sample import Boxes3D, SyncedSample
from perception.backbones.camera_decode import decoded_like_training
from perception.backbones.common import fold_batchnorm
from perception.batch import Batch, collate
from perception.checkpoint import load_checkpoint
from perception.config import MODALITY_ORDER, FusionKind, ModelConfig
from perception.control import ControlConfig, compute_control
from perception.experts import expert_config
from perception.heads import HeadOutputs, decode_detections
from perception.model import FusionModel, build_model
from perception.prepare import prepare_sample, sample_presence
from perception.refine.network import proposal_class_probs, proposal_group_boxes
from perception.sample_arrays import SampleArrays
from perception.timing import Stopwatch
from perception.types import FrameResult, PlanOutput
from sensors.types import Modality


class Pipeline:
    """Sensors in, detections + plan + control out, one ``SyncedSample`` at a time.

    Every stage is timed (``FrameResult.timings_ms``), preprocessing and voxelization
    included, with ``"total"`` the wall time of the whole ``run``.
    """

    def __init__(
        self,
        model: FusionModel,
        cfg: ModelConfig,
        device: str | torch.device | None = None,
        control: ControlConfig | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.cfg = cfg
        self.control_cfg = control or ControlConfig()
        self._branch_keys: dict[str, str | None] | None = None
        # A fallback expert whose cameras are decoded unlike ours (``refine``'s camera_only).
        experts = [expert_config(cfg, e.variant) for e in cfg.fusion.fallback]
        self._expert_decodes = cfg.uses(Modality.CAMERA) and any(
            x.uses(Modality.CAMERA) and x.camera_source_hw != cfg.camera_source_hw
            for x in experts
        )

    @classmethod
    def from_checkpoint(
        cls, path: Path | str, device: str | torch.device | None = None
    ) -> Pipeline:
        """Load a checkpoint folder (or its ``model.pt``) written by ``drivefuse train``, or a
        shipped variant by name (``"gated"``). Its BatchNorm layers are folded into the
        convolutions before them (``fold_batchnorm``: equal up to float rounding, faster).
        """
        model, cfg = load_checkpoint(path)
        # This model is the pipeline's own (nobody trains it): BatchNorm folds into the convs.
        fold_batchnorm(model.eval())
        return cls(model, cfg, device)

    @classmethod
    def from_config(cls, cfg: ModelConfig, device: str | torch.device | None = None) -> Pipeline:
        """A randomly initialised pipeline (tests, benchmarks)."""
        return cls(build_model(cfg), cfg, device)

    @torch.inference_mode()
    def run(self, sample: SyncedSample) -> FrameResult:
        """Detections, plan and control for one sample; any modality may be missing."""
        return self.run_with_maps(sample)[0]

    def branch_keys(self) -> dict[str, str | None]:
        """A key per branch map (``FusionModel.branch_names``), equal for two pipelines'
        branches exactly when they compute the same map from the same sample: a digest of the
        tensors of the modules computing it (after BatchNorm folding), the input configs that
        shape its batch, and the device. None for a map that is never shared (``serial``'s
        LiDAR map). Computed once: a pipeline whose weights change afterwards must not share.

        The shipped parallel fusers and ``late`` carry ``camera_only``'s camera branch tensor
        for tensor, and ``lidar_camera_refine`` ``lidar_only``'s LiDAR branch: the benchmark
        computes each such map once per sample (``run_with_maps``' ``shared_maps``).
        """
        if self._branch_keys is None:
            c = self.cfg
            inputs = repr((c.grid, c.camera, c.lidar, c.ultrasonic, str(self.device)))
            keys: dict[str, str | None] = {}
            for name in self.model.branch_names:
                modules = self.model.branch_modules(name)
                if modules is None:
                    keys[name] = None
                    continue
                modality = name.rsplit(".", 1)[-1]
                # A missing ultrasonic read as an empty raster changes the map it gives.
                empty = "." not in name and modality in c.fusion.missing_as_empty
                h = hashlib.sha256(repr((modality, empty, inputs)).encode())
                for module in modules:
                    for k, t in module.state_dict().items():
                        flat = t.detach().cpu().contiguous().reshape(-1)
                        h.update(repr((k, str(t.dtype), tuple(t.shape))).encode())
                        h.update(flat.view(torch.uint8).numpy().tobytes())
                keys[name] = h.hexdigest()
            self._branch_keys = keys
        return self._branch_keys

    @torch.inference_mode()
    def run_with_maps(
        self,
        sample: SyncedSample,
        arrays: SampleArrays | None = None,
        reuse: Mapping[str, torch.Tensor] | None = None,
        batch_cache: dict | None = None,
        shared_maps: dict[str, torch.Tensor] | None = None,
    ) -> tuple[FrameResult, dict[str, torch.Tensor]]:
        """``run``, also returning the branch BEV maps, optionally reusing some of them.

        Args:
            sample: the sample (its CAN bus and ultrasonic feed the control step); cameras
                decoded at another reduction than the model's training one are decoded again
                at it (``decoded_like_training``).
            arrays: ``prepare_sample(sample, self.cfg, targets=False)`` when already
                computed (several pipelines with one preprocessing config share it).
            reuse: BEV maps by fused branch name, computed by this pipeline from inputs
                equal to ``sample``'s for every modality that branch reads
                (``FusionModel.map_inputs``); those branches are not run again and their
                inputs are not prepared. The result equals ``run(sample)`` exactly.
            batch_cache: a dict shared by pipelines running the same ``arrays``: the
                collated batch (voxelization, lift geometry) is built once per input config
                and reused by every pipeline whose config shapes it the same way.
            shared_maps: a dict shared by pipelines running the same ``sample`` (decoded alike):
                branch maps by ``branch_keys``; a branch whose key is there is taken from it
                (another pipeline computed the same map), and every map computed here is added.
                The stage timings then lack the branches taken: not for latency measurement.

        Returns:
            The frame result and every fused branch's map (reused ones included).

        """
        watch = Stopwatch(cuda_sync=self.device.type == "cuda")
        t0 = time.perf_counter()
        sample, out, batch, bevs = self._forward(
            sample, arrays, reuse, batch_cache, watch, shared_maps
        )
        with watch.stage("decode"):
            dets = decode_detections(
                out.heatmap, out.reg, self.cfg, self.model.has_input(batch.presence)
            )[0]
        # A sample a fallback expert served (LiDAR missing) has no first-stage proposals.
        if self.model.refiner is not None and bool(self.model.on_fused_path(batch.presence)[0]):
            with watch.stage("refine"):
                probs = proposal_class_probs(out.heatmap[0], dets, self.cfg)
                boxes = proposal_group_boxes(out.reg[0], dets, self.cfg)
                dets = self.model.refiner.refine_detections(dets, probs, sample, boxes)
        with watch.stage("decode"):
            waypoints = out.waypoints[0].float().cpu().numpy().astype(np.float64)
        with watch.stage("control"):
            speed = sample.can_bus.speed_mps if sample.can_bus is not None else None
            control = compute_control(
                waypoints, speed, dets, sample.ultrasonic, sample.ultrasonic_layout,
                self.control_cfg, self.cfg.planning.dt_s,
            )
        timings = dict(watch.ms)
        timings["total"] = (time.perf_counter() - t0) * 1e3
        result = FrameResult(
            token=sample.token,
            detections=dets,
            plan=PlanOutput(waypoints, self.cfg.planning.dt_s),
            control=control,
            timings_ms=timings,
        )
        return result, bevs

    def _forward(
        self,
        sample: SyncedSample,
        arrays: SampleArrays | None,
        reuse: Mapping[str, torch.Tensor] | None,
        batch_cache: dict | None,
        watch: Stopwatch,
        shared_maps: dict[str, torch.Tensor] | None = None,
    ) -> tuple[SyncedSample, HeadOutputs, Batch, dict[str, torch.Tensor]]:
        """Preprocessing, branches, fuser and heads (``run_with_maps``' arguments); returns the
        sample as the model reads it, the head outputs, the batch and the branch maps.
        """
        presence = torch.from_numpy(sample_presence(sample))[None]
        if self._expert_decodes:
            # The path serving this sample reads pixels at another decode than ours
            # (``refine``'s cameras at the crops' size, its camera_only expert's at the
            # branch's): decoded again from the files, the arrays and maps of the caller's
            # decode do not apply.
            redecoded = decoded_like_training(sample, self.model.serving_config(presence))
            if redecoded is not sample:
                sample, arrays, batch_cache, shared_maps = redecoded, None, None, None
        reuse = dict(reuse or {})
        shared: dict[str, torch.Tensor] = shared_maps if shared_maps is not None else {}
        keys = self.branch_keys() if shared_maps is not None else {}
        for m, k in keys.items():
            if m not in reuse and k is not None and k in shared:
                reuse[m] = shared[k]
        # Only the maps the serving path reads (an expert's own branch is computed, and its
        # inputs prepared, only for the samples it serves).
        serving = self.model.needed_branches(presence)
        todo = tuple(m for m in self.model.branch_names if m not in reuse and m in serving)
        needed = set().union(*(self.model.map_inputs()[m] for m in todo)) if todo else set()
        skip = tuple(m for m in MODALITY_ORDER if m not in needed)
        if arrays is None:
            with watch.stage("preprocess"):
                # The pixels the model was trained on, whatever reduction the caller decoded
                # at (a camera at another one is decoded again from its file).
                sample = decoded_like_training(sample, self.model.serving_config(presence))
                # No branch left to run reads the camera pixels: they are not resized.
                arrays = prepare_sample(sample, self.cfg, targets=False,
                                        camera_pixels=Modality.CAMERA in needed)
        key = None
        if batch_cache is not None:
            c = self.cfg
            serial = c.fusion.kind == FusionKind.SERIAL
            key = (id(arrays), repr((tuple(c.uses(m) for m in MODALITY_ORDER), c.grid, c.lidar,
                                     c.camera, serial, skip, self.device)))
        batch = batch_cache.get(key) if batch_cache is not None and key is not None else None
        if batch is None:
            batch = collate([arrays], self.cfg, watch, skip=skip)
            with watch.stage("to_device"):
                batch = batch.to(self.device)
            if batch_cache is not None and key is not None:
                batch_cache[key] = batch
        bevs = dict(reuse)
        computed = self.model.branch_maps(batch, todo, watch)
        bevs.update(computed)
        if shared_maps is not None:
            for m, x in computed.items():
                k = keys.get(m)
                if k is not None:
                    shared.setdefault(k, x)
        out = self.model.fuse_and_heads(bevs, batch, watch)
        return sample, out, batch, bevs

    @torch.inference_mode()
    def first_stage(self, sample: SyncedSample) -> tuple[Boxes3D, np.ndarray]:
        """The decoded detections before any camera refinement, and their (N, 10) class
        probabilities (``perception.refine.network.proposal_class_probs``): the proposals a
        ``refine`` model's crop network is trained on.
        """
        watch = Stopwatch()
        sample, out, batch, _ = self._forward(sample, None, None, None, watch)
        dets = decode_detections(
            out.heatmap, out.reg, self.cfg, self.model.has_input(batch.presence)
        )[0]
        return dets, proposal_class_probs(out.heatmap[0], dets, self.cfg)
