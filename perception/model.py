"""The whole fusion model, built from a ``ModelConfig``; ``forward`` fits on one screen."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from perception.backbones.camera import CameraBackbone
from perception.backbones.camera_inputs import NUM_CAMERAS
from perception.backbones.lidar import LidarBackbone, gather_paint
from perception.backbones.ultrasonic import UltrasonicBackbone
from perception.batch import Batch
from perception.config import MODALITY_ORDER, FusionKind, ModelConfig
from perception.experts import (
    FUSED_PATH,
    PathRule,
    branch_name,
    choose_paths,
    expert_config,
    merge_outputs,
)
from perception.fusion import build_fuser
from perception.heads import HeadOutputs, Heads
from perception.heads.losses import (
    TaskWeighting,
    depth_loss,
    gaussian_focal_loss,
    planning_loss,
    regression_loss,
)
from perception.refine.network import Refiner
from perception.timing import Stopwatch, maybe_stage
from sensors.types import Modality


class FusionModel(nn.Module):
    """Per-modality backbones -> BEV maps on one grid -> fuser -> detection + planning heads."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.serial = cfg.fusion.kind == FusionKind.SERIAL
        self.late = cfg.fusion.kind == FusionKind.LATE
        in_ch: dict[str, int] = {}
        self.camera = self.lidar = self.ultrasonic = None
        self.paint_proj: nn.Module | None = None
        if cfg.has_branch(Modality.CAMERA):
            self.camera = CameraBackbone(cfg.camera, cfg.grid, lift=not self.serial)
            if self.serial:
                self.paint_proj = nn.Conv2d(
                    self.camera.encoder.out_channels, cfg.fusion.paint_channels, 1
                )
            else:
                in_ch[Modality.CAMERA] = self.camera.out_channels
        if cfg.uses(Modality.LIDAR):
            paint = cfg.fusion.paint_channels if self.serial else 0
            self.lidar = LidarBackbone(cfg.lidar, cfg.grid, paint_channels=paint)
            in_ch[Modality.LIDAR] = self.lidar.out_channels
        if cfg.uses(Modality.ULTRASONIC):
            self.ultrasonic = UltrasonicBackbone(cfg.ultrasonic, cfg.grid, cfg.lidar)
            in_ch[Modality.ULTRASONIC] = self.ultrasonic.out_channels
        # Modalities whose map reaches the fuser (serial: the camera arrives inside the LiDAR).
        self.fused_modalities = tuple(in_ch)
        self.fuser = build_fuser(cfg, in_ch)
        self.heads = None if self.late else Heads(cfg.fusion.channels, cfg)
        self.task_weighting = TaskWeighting(cfg.loss)
        # Single-sensor models run instead of the fused path when a principal sensor is
        # missing (perception.experts); a shared branch is the host's, not a copy.
        self.experts = nn.ModuleDict()
        for e in cfg.fusion.fallback:
            expert = FusionModel(expert_config(cfg, e.variant))
            for m in e.shared:
                setattr(expert, m, None)
            self.experts[e.variant] = expert
        self.path_rule = PathRule.of(cfg)
        # Cascade: the decoded detections are re-scored on camera crops (Pipeline.run).
        self.refiner: Refiner | None = None
        if cfg.fusion.kind == FusionKind.REFINE:
            self.refiner = Refiner(cfg)
        # Every branch map: the fused ones, then each expert's own (``camera_only.camera``).
        self.branch_names = self.fused_modalities + tuple(
            branch_name(e.variant, m) for e in cfg.fusion.fallback
            for m in self.experts[e.variant].fused_modalities if m not in e.shared
        )

    def forward(self, batch: Batch, watch: Stopwatch | None = None) -> HeadOutputs:
        """Raw head outputs for a batch; ``watch`` collects per-stage times."""
        bevs, depth_logits = self._branch_maps(batch, self.branch_names, watch)
        out = self.fuse_and_heads(bevs, batch, watch)
        if depth_logits is not None:
            out = dataclasses.replace(out, depth_logits=depth_logits)
        return out

    def map_inputs(self) -> dict[str, frozenset[str]]:
        """Input modalities each BEV map reaching the fuser is computed from.

        A map depends on its own sensor only, except for ``serial``: the LiDAR map carries the
        painted camera features, so it is recomputed when either sensor changes. The benchmark
        reuses the maps whose inputs a corruption leaves alone.
        """
        out = {m: frozenset({m}) for m in self.fused_modalities}
        if self.serial and Modality.LIDAR in out:
            out[Modality.LIDAR] = frozenset({Modality.CAMERA, Modality.LIDAR})
        for e in self.cfg.fusion.fallback:  # an expert's own branches read their own sensor
            inputs = self.experts[e.variant].map_inputs()
            out |= {branch_name(e.variant, m): x for m, x in inputs.items() if m not in e.shared}
        return out

    def branch_modules(self, name: str) -> tuple[nn.Module, ...] | None:
        """The modules that compute branch map ``name`` (``branch_names``) from the batch, or
        None when the map also reads another branch (``serial``'s LiDAR map carries the painted
        camera features): two models whose modules hold equal tensors, handed batches shaped by
        equal input configs, compute the same map (``Pipeline.branch_keys``).
        """
        if "." in name:  # an expert's own branch, computed from the host's batch
            variant, m = name.split(".")
            return self.experts[variant].branch_modules(m)
        module = {Modality.CAMERA: self.camera, Modality.LIDAR: self.lidar,
                  Modality.ULTRASONIC: self.ultrasonic}.get(name)
        if module is None or (self.serial and name in (Modality.LIDAR, Modality.CAMERA)):
            return None
        return (module,)

    def branch_maps(
        self, batch: Batch, which: tuple[str, ...], watch: Stopwatch | None = None
    ) -> dict[str, torch.Tensor]:
        """BEV maps of the named branches (names from ``branch_names``), exactly as
        ``forward`` computes them; ``fuse_and_heads`` finishes the forward from them. With
        fallback experts, a branch no sample's path reads (``needed_branches``) is skipped.
        """
        return self._branch_maps(batch, which, watch)[0]

    def _branch_maps(
        self, batch: Batch, which: tuple[str, ...], watch: Stopwatch | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        unknown = set(which) - set(self.branch_names)
        if unknown:
            raise ValueError(f"{self.cfg.name}: no fused branch {sorted(unknown)}; it fuses "
                             f"{self.fused_modalities}")
        needed = self.needed_branches(batch.presence)
        own = [n for n in which if n not in self.fused_modalities and n in needed]
        which = tuple(m for m in which if m in self.fused_modalities and m in needed)
        b = batch.batch_size
        bevs: dict[str, torch.Tensor] = {}
        painted = None
        depth_logits = None
        # Serial fusion needs the camera features inside the LiDAR branch.
        camera_needed = Modality.CAMERA in which or (self.serial and Modality.LIDAR in which)
        if batch.camera_bev is not None and Modality.CAMERA in which:  # frozen branch, from a cache
            bevs[Modality.CAMERA] = batch.camera_bev
        elif self.camera is not None and camera_needed:
            with maybe_stage(watch, "camera_backbone"):
                img = self.camera.encode(batch.images)  # (B*K, C, h, w)
            if self.serial:
                with maybe_stage(watch, "painting"):
                    feats = self.paint_proj(img).unflatten(0, (b, NUM_CAMERAS))
                    painted = gather_paint(feats, batch.paint_index)
            else:
                with maybe_stage(watch, "view_transform"):
                    if batch.depth_target is not None:
                        cam_bev, depth_logits = self.camera.view_transform(
                            img, batch.cell_index, batch.camera_mask, return_depth_logits=True
                        )
                    else:
                        cam_bev = self.camera.view_transform(
                            img, batch.cell_index, batch.camera_mask
                        )
                with maybe_stage(watch, "camera_bev_encoder"):
                    bevs[Modality.CAMERA] = self.camera.bev_encoder(cam_bev)
        if batch.lidar_bev is not None and Modality.LIDAR in which:  # frozen branch, from a cache
            bevs[Modality.LIDAR] = batch.lidar_bev
        elif self.lidar is not None and Modality.LIDAR in which:
            with maybe_stage(watch, "lidar_backbone"):
                bevs[Modality.LIDAR] = self.lidar(
                    batch.pillars, batch.pillar_coords, batch.pillar_num_points, b, painted
                )
        if self.ultrasonic is not None and Modality.ULTRASONIC in which:
            raster = batch.ultrasonic_raster
            if Modality.ULTRASONIC in self.cfg.fusion.missing_as_empty:  # absent: empty raster
                slot = MODALITY_ORDER.index(Modality.ULTRASONIC)
                absent = ~batch.presence[:, slot].view(-1, 1, 1, 1)
                raster = raster.masked_fill(absent, 0.0)
            with maybe_stage(watch, "ultrasonic_backbone"):
                bevs[Modality.ULTRASONIC] = self.ultrasonic(raster)
        if own:  # experts' own branches (never from the host's training feature cache)
            plain = dataclasses.replace(batch, camera_bev=None, lidar_bev=None)
            for name in own:
                variant, m = name.split(".")
                bevs[name] = self.experts[variant].branch_maps(plain, (m,), watch)[m]
        return bevs, depth_logits

    def needed_branches(self, presence: torch.Tensor) -> frozenset[str]:
        """Branch maps the paths of these samples read (every fused one when no experts)."""
        if not self.cfg.fusion.fallback:
            return frozenset(self.branch_names)
        choice = choose_paths(self.path_rule, presence)
        need = set(self.fused_modalities) if bool((choice == FUSED_PATH).any()) else set()
        for i, e in enumerate(self.cfg.fusion.fallback):
            if bool((choice == i).any()):
                need |= {m if m in e.shared else branch_name(e.variant, m)
                         for m in self.experts[e.variant].fused_modalities}
        return frozenset(need)

    def on_fused_path(self, presence: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the sample is served by the fused path, not by a fallback expert (the
        cascade refines only what its own first stage detected).
        """
        return choose_paths(self.path_rule, presence) == FUSED_PATH

    def serving_config(self, presence: torch.Tensor) -> ModelConfig:
        """The config of the path serving a one-sample ``presence`` (1, 3): the expert's when
        one serves it (its camera decode is the one that expert was trained on), else ours.
        """
        if not self.cfg.fusion.fallback:
            return self.cfg
        i = int(choose_paths(self.path_rule, presence)[0])
        if i == FUSED_PATH:
            return self.cfg
        return expert_config(self.cfg, self.cfg.fusion.fallback[i].variant)

    def fuse_and_heads(
        self, bevs: dict[str, torch.Tensor], batch: Batch, watch: Stopwatch | None = None
    ) -> HeadOutputs:
        """Fuser and heads on the branch maps, per sample on the path its presence mask picks
        (``perception.experts``: the fused path, or a fallback expert on the maps it reads).
        """
        if not self.cfg.fusion.fallback:
            return self._fused_path(bevs, batch, watch)
        choice = choose_paths(self.path_rule, batch.presence)
        outs = {}
        for i, e in enumerate(self.cfg.fusion.fallback):
            if bool((choice == i).any()):
                expert = self.experts[e.variant]
                maps = {m: bevs[m if m in e.shared else branch_name(e.variant, m)]
                        for m in expert.fused_modalities}
                outs[i] = expert.fuse_and_heads(maps, batch, watch)
        if not outs or bool((choice == FUSED_PATH).any()):
            outs[FUSED_PATH] = self._fused_path(bevs, batch, watch)
        return merge_outputs(outs, choice)

    def _fused_path(
        self, bevs: dict[str, torch.Tensor], batch: Batch, watch: Stopwatch | None
    ) -> HeadOutputs:
        presence = batch.presence
        if self.cfg.fusion.missing_as_empty:  # their (empty-input) maps are read as present
            presence = presence.clone()
            for m in self.cfg.fusion.missing_as_empty:
                presence[:, MODALITY_ORDER.index(m)] = True
        if self.late:  # decision-level: a head per modality, mixed by learned weights
            with maybe_stage(watch, "heads"):
                return self.fuser(bevs, presence, batch.command, batch.ego_status)
        with maybe_stage(watch, "fuser"):
            fused = self.fuser(bevs, presence)
        with maybe_stage(watch, "heads"):
            return self.heads(fused, batch.command, batch.ego_status)

    @torch.no_grad()
    def branch_bevs(self, batch: Batch, which: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """BEV maps of the named branches (camera, lidar), to cache them when frozen."""
        out = {}
        if Modality.CAMERA in which and self.camera is not None and not self.serial:
            img = self.camera.encode(batch.images)
            bev = self.camera.view_transform(img, batch.cell_index, batch.camera_mask)
            out[Modality.CAMERA] = self.camera.bev_encoder(bev)
        if Modality.LIDAR in which and self.lidar is not None and not self.serial:
            out[Modality.LIDAR] = self.lidar(
                batch.pillars, batch.pillar_coords, batch.pillar_num_points, batch.batch_size
            )
        return out

    def has_input(self, presence: torch.Tensor) -> torch.Tensor:
        """(B,) bool: some modality that reaches the fuser or an expert is present (else: no
        detections).
        """
        used = set(self.fused_modalities)
        used = used.union(*(x.fused_modalities for x in self.experts.values()))
        cols = [MODALITY_ORDER.index(m) for m in MODALITY_ORDER if m in used]
        return presence[:, cols].any(dim=1)

    def loss(self, out: HeadOutputs, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Total training loss and its parts (floats, for logging)."""
        if batch.heatmap is None:
            raise ValueError("Batch has no detection targets (unannotated samples?)")
        heat = gaussian_focal_loss(out.heatmap, batch.heatmap)
        reg = regression_loss(
            out.reg, batch.reg_index, batch.reg_target, batch.reg_mask, batch.vel_mask,
            self.cfg.loss.velocity_weight,
        )
        plan = planning_loss(out.waypoints, batch.plan_target, batch.plan_mask)
        total = self.task_weighting(heat, reg, plan)
        parts = {k: float(v.detach()) for k, v in (("heatmap", heat), ("reg", reg), ("plan", plan))}
        parts["depth"] = 0.0
        if out.depth_logits is not None and batch.depth_target is not None:
            depth = depth_loss(out.depth_logits, batch.depth_target)
            total = total + self.cfg.loss.depth_weight * depth
            parts["depth"] = float(depth.detach())
        return total, parts


def build_model(cfg: ModelConfig) -> FusionModel:
    """The model for ``cfg`` (randomly initialised)."""
    return FusionModel(cfg)
