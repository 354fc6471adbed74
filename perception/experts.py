"""Fallback experts: a fused model that is never worse than the sensors it has left.

A fused model trained mostly with every sensor present falls far below a single-sensor model
when a principal sensor (camera or LiDAR) drops out. So the single-sensor models are kept
inside it (``FusionConfig.fallback``) and the presence mask picks, per sample, the path that
fits the sensors present:

* the present principal sensors are exactly an expert's (camera only: ``camera_only``;
  LiDAR only: ``lidar_only`` or ``lidar_ultrasonic``, whichever is listed) -> that expert's
  output, bit for bit what the single-sensor checkpoint gives for that sample;
* otherwise (both present, or neither) -> the fused path, unchanged.

Zeros in an input never select a path: only ``presence`` does (an all-black image that is
present still goes through the fused path). An expert stores only the weights that differ
from its host: a branch listed in ``FallbackExpertConfig.shared`` (its tensors equal the
host's, e.g. the frozen camera branch every parallel fuser took from ``camera_only``) is read
from the host's BEV map. Its own branches are separate branch maps named
``<variant>.<modality>`` (``FusionModel.branch_names``), computed only for batches that need
them. ``compose_fallback`` writes such a checkpoint from trained ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from perception.config import (
    EXPERT_VARIANTS,
    MODALITY_ORDER,
    PRINCIPAL_MODALITIES,
    FallbackExpertConfig,
    ModelConfig,
    config_to_dict,
    with_variant,
)
from perception.heads import HeadOutputs

FUSED_PATH = -1  # path index of the fused path (experts are 0, 1, ... in config order)


def expert_config(host: ModelConfig, variant: str) -> ModelConfig:
    """The config of expert ``variant`` inside ``host``: the host's sizes, that variant's fusion."""
    return with_variant(host, variant)


def branch_name(variant: str, modality: str) -> str:
    """Name of an expert's own branch map (``camera_only.camera``)."""
    return f"{variant}.{modality}"


def principal_set(modalities: Sequence[str]) -> frozenset[str]:
    """The principal sensors (camera, LiDAR) among ``modalities``."""
    return frozenset(m for m in modalities if m in PRINCIPAL_MODALITIES)


@dataclass(frozen=True)
class PathRule:
    """Which principal sensors the fused path and each fallback expert read (from a config).

    Attributes:
        fused: the principal sensors of the host.
        experts: per expert in ``FusionConfig.fallback`` order, its principal sensors.

    """

    fused: frozenset[str]
    experts: tuple[frozenset[str], ...]

    @staticmethod
    def of(host: ModelConfig) -> PathRule:
        """The rule of fused model ``host``."""
        return PathRule(
            principal_set(host.fusion.modalities),
            tuple(principal_set(expert_config(host, e.variant).fusion.modalities)
                  for e in host.fusion.fallback),
        )


def choose_paths(rule: PathRule, presence: torch.Tensor) -> torch.Tensor:
    """(B,) int64 path per sample: ``FUSED_PATH`` or the index of the expert in
    ``FusionConfig.fallback`` (the first whose principal sensors are exactly those present).

    Args:
        rule: ``PathRule.of(host config)``.
        presence: (B, 3) bool in ``MODALITY_ORDER``.

    """
    choice = torch.full((presence.shape[0],), FUSED_PATH, dtype=torch.int64,
                        device=presence.device)
    cols = {m: presence[:, MODALITY_ORDER.index(m)] for m in rule.fused}
    for i in reversed(range(len(rule.experts))):  # the first listed wins
        own = rule.experts[i]
        if not own or own == rule.fused:
            continue
        match = torch.ones_like(choice, dtype=torch.bool)
        for m in rule.fused:
            match &= cols[m] if m in own else ~cols[m]
        choice = torch.where(match, torch.full_like(choice, i), choice)
    return choice


def merge_outputs(outs: dict[int, HeadOutputs], choice: torch.Tensor) -> HeadOutputs:
    """Per sample, the head outputs of the path ``choice`` names (each path ran on the whole
    batch; eval-mode BatchNorm makes its rows independent of each other).
    """
    paths = sorted(outs)
    if len(paths) == 1:
        return outs[paths[0]]

    def pick(name: str) -> torch.Tensor:
        first = getattr(outs[paths[0]], name)
        out = first.clone()
        for p in paths[1:]:
            rows = (choice == p).view(-1, *([1] * (first.dim() - 1)))
            out = torch.where(rows, getattr(outs[p], name).to(first.dtype), out)
        return out

    # Depth logits are the host camera branch's (training only); a path swap does not change them.
    depth = next((o.depth_logits for o in outs.values() if o.depth_logits is not None), None)
    return HeadOutputs(pick("heatmap"), pick("reg"), pick("waypoints"), depth)


# ----------------------------------------------------------------------------- composing
def _branch_keys(state: dict[str, torch.Tensor], modality: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(f"{modality}.")}


def shared_branches(
    host_state: dict[str, torch.Tensor], expert_state: dict[str, torch.Tensor],
    modalities: Sequence[str],
) -> tuple[str, ...]:
    """The expert's branches whose every tensor equals the host's (same names and values)."""
    out = []
    for m in modalities:
        e, h = _branch_keys(expert_state, m), _branch_keys(host_state, m)
        if e and set(e) == set(h) and all(
            e[k].shape == h[k].shape and torch.equal(e[k], h[k]) for k in e
        ):
            out.append(m)
    return tuple(out)


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def compose_fallback(
    host_dir: Path | str,
    expert_dirs: Sequence[Path | str],
    out_dir: Path | str | None = None,
    missing_as_empty: Sequence[str] = (),
) -> Path:
    """Write ``host_dir``'s fused checkpoint with the single-sensor checkpoints in
    ``expert_dirs`` kept inside it as fallback experts (replacing any it had).

    Every expert must have been trained with the host's preset (its config equals
    ``expert_config(host, variant)`` outside the training settings). A branch whose tensors
    equal the host's is shared, not stored twice. The result loads like any checkpoint
    (``load_checkpoint``, ``weights_only=True``); with every sensor present it computes exactly
    what the host did.

    Args:
        host_dir: a fused checkpoint folder (``mean`` ... ``late``, ``serial``,
            ``lidar_camera_refine``), or a shipped variant's name.
        expert_dirs: single-sensor checkpoint folders or shipped names, in the order they
            are tried (``lidar_camera_refine`` takes ``camera_only`` only).
        out_dir: where to write (default: over ``host_dir``; its train log stays).
        missing_as_empty: ``FusionConfig.missing_as_empty`` of the result
            (``(Modality.ULTRASONIC,)``: a missing ultrasonic is read as an empty raster
            by the fused path).

    Returns:
        The folder written.

    Raises:
        ValueError: an expert is not single-sensor, does not fit the host, or is listed twice.

    """
    from perception.checkpoint import (
        WEIGHTS_NAME,
        load_config,
        load_provenance,
        load_state_into,
        read_state_dict,
        resolve_checkpoint,
        save_checkpoint,
    )
    from perception.model import build_model

    host_dir = resolve_checkpoint(host_dir)
    out = Path(out_dir) if out_dir is not None else host_dir
    host_cfg = load_config(host_dir)
    bare = dataclasses.replace(host_cfg, fusion=dataclasses.replace(
        host_cfg.fusion, fallback=(), missing_as_empty=()))
    host_state = {k: v for k, v in read_state_dict(host_dir / WEIGHTS_NAME).items()
                  if not k.startswith("experts.")}
    state = dict(host_state)
    experts: list[FallbackExpertConfig] = []
    record = {}
    for d in expert_dirs:
        d = resolve_checkpoint(d)
        ecfg = load_config(d)
        if ecfg.variant not in EXPERT_VARIANTS:
            raise ValueError(f"{d}: variant {ecfg.variant!r} is not a single-sensor model "
                             f"({', '.join(EXPERT_VARIANTS)})")
        want = config_to_dict(expert_config(bare, ecfg.variant))
        have = config_to_dict(ecfg)
        diff = sorted(k for k in want if k != "train" and want[k] != have.get(k))
        if diff:
            raise ValueError(f"{d}: {ecfg.variant} does not fit host {host_dir} "
                             f"({host_cfg.name}): config differs in {diff}")
        if ecfg.variant in [e.variant for e in experts]:
            raise ValueError(f"{d}: a second {ecfg.variant} expert for {host_dir}")
        estate = read_state_dict(d / WEIGHTS_NAME)
        shared = shared_branches(host_state, estate, ecfg.fusion.modalities)
        experts.append(FallbackExpertConfig(ecfg.variant, shared))
        for k, v in estate.items():
            if k.split(".", 1)[0] not in shared:
                state[f"experts.{ecfg.variant}.{k}"] = v
        record[ecfg.variant] = {"checkpoint": str(d), "model_pt_sha1": _digest(d / WEIGHTS_NAME),
                                "shared_branches": list(shared)}
    cfg = dataclasses.replace(bare, fusion=dataclasses.replace(
        bare.fusion, fallback=tuple(experts), missing_as_empty=tuple(missing_as_empty)))
    model = build_model(cfg)  # validates the experts against the host
    tmp = out / ".composed.pt"
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp)
    try:
        load_state_into(model, tmp, cfg)  # every key and shape checked
    finally:
        tmp.unlink()
    provenance = load_provenance(host_dir)
    provenance["fallback"] = record
    provenance["missing_as_empty"] = list(missing_as_empty)
    return save_checkpoint(out, model, cfg, provenance)
