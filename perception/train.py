"""Training: cached per-sample tensors, AdamW + one-cycle, AMP on CUDA, torchrun DDP, resume.

The expensive, deterministic part of the input (image decode and resize, LiDAR crop, targets)
is cached per sample as ``.npz`` under ``cache_dir`` (keyed by the data and the config fields
that shape it), so that an epoch costs only voxelization and the network. Modality dropout is
applied per sample on the fly.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from perception.backbones.camera_inputs import NUM_CAMERAS, image_reduction_for
from perception.batch import Batch, collate
from perception.checkpoint import git_commit, save_checkpoint
from perception.config import MODALITY_ORDER, FusionKind, ModelConfig, preset
from perception.fusion import anchor as anchor_fuser
from perception.model import FusionModel, build_model
from perception.prepare import prepare_sample
from perception.sample_arrays import SampleArrays
from perception.threads import set_cpu_threads
from sensors.lidar_rings import NUM_RINGS

TRAIN_STATE_NAME = "train_state.pt"
LOG_NAME = "train_log.jsonl"


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run needs (``tools/train.py`` fills it from the command line).

    Attributes:
        variant / preset_name: which ``perception.config.preset``.
        dataroot / version / split: nuScenes-format data (real or synthetic).
        out_dir: checkpoint folder (model.pt, config.json, provenance.json, train state).
        epochs / steps: length of training (``steps`` wins when both are given).
        batch_size / lr / weight_decay: optimiser settings (None = the preset's).
            ``batch_size`` is per process and micro-batch: one optimiser step sees
            ``batch_size * world_size * grad_accum`` samples (the effective batch). The
            learning rate is used as given, never rescaled behind the user's back: when a
            larger effective batch should train like a smaller one, scale ``lr`` yourself
            (linearly, by the ratio of effective batches, is the usual first try).
        grad_accum: micro-batches per optimiser step (gradients averaged). Each micro-batch
            is one shard of the data, exactly as one torchrun rank's batch is, so one
            process with ``grad_accum=N`` takes the same steps (to float rounding) as
            ``torchrun --nproc_per_node N`` with ``grad_accum=1``: BatchNorm statistics and
            the batch-normalised losses are per micro-batch in both.
        seed: seeds Python, numpy and torch.
        num_workers: DataLoader workers (voxelization runs in them).
        cache_dir: where per-sample arrays are cached.
        resume: continue from ``out_dir/train_state.pt`` when present.
        init_from: checkpoint folders whose matching weights initialise the model.
        freeze: modality branches to freeze (``camera``, ``lidar``, ``ultrasonic``).
        modality_dropout: per-modality drop probability (None = the preset's).
        partial_faults: (p_rings, p_one_camera): probability per sample of losing 4-20 of
            the 32 LiDAR rings and of losing one camera (``CachedSamples``); each only where
            the variant reads that sensor.
        anchor: modality the fuser starts biased towards (``perception.fusion.anchor``).
        fuser: replace the variant's fuser kind (capacity-matched ablations), or None.
        image_hw: camera network input (height, width) in pixels instead of the preset's, or
            None (resolution studies; the checkpoint's config records it).
        amp: bfloat16 autocast on CUDA.
        max_samples: use only the first N training samples (smoke runs).
        log_every / save_every: steps between log lines / checkpoints.
        device: ``cuda``/``cpu``; None = CUDA when present.
        threads: torch CPU threads (None = torch's default).

    """

    variant: str = "concat_conv"
    preset_name: str = "tiny"
    dataroot: str = "data/sim"
    version: str = "v1.0-mini"
    split: str = "mini_train"
    out_dir: str = "outputs/train"
    epochs: int | None = 1
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    num_workers: int = 0
    cache_dir: str = "data/cache"
    resume: bool = False
    init_from: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    modality_dropout: tuple[float, float, float] | None = None
    partial_faults: tuple[float, float] = (0.0, 0.0)
    anchor: str | None = None
    fuser: str | None = None
    image_hw: tuple[int, int] | None = None
    amp: bool = True
    grad_accum: int = 1
    max_samples: int | None = None
    log_every: int = 20
    save_every: int = 500
    device: str | None = None
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries still draw from the legacy global state
    torch.manual_seed(seed)


def cache_key(cfg: ModelConfig, dataroot: str, version: str, image_reduction: int = 4) -> str:
    """Folder name for cached arrays: changes whenever the cached content would.

    A model without a camera branch caches no pixels (``prepare_sample`` leaves its images
    empty), so its key differs from a camera model's: the two stage-1 jobs of
    ``tools/train_shipped.sh`` fill their caches at once, and with one key a camera model read
    entries a LiDAR-only job had written (np.stack of (6, 96, 176, 3) and (6, 0, 0, 3) images).
    """
    from sensors.types import Modality

    shaping = {
        "dataroot": str(Path(dataroot).resolve()),
        "version": version,
        "grid": asdict(cfg.grid),
        "image_hw": cfg.camera.image_hw if cfg.has_branch(Modality.CAMERA) else None,
        "detection": [cfg.detection.class_groups, cfg.detection.max_objects,
                      cfg.detection.min_radius_cells, cfg.detection.gaussian_overlap],
        "waypoints": cfg.planning.num_waypoints,
        "image_reduction": image_reduction,
        "format": 2,
    }
    digest = hashlib.sha1(json.dumps(shaping, sort_keys=True, default=list).encode()).hexdigest()
    return f"{version}_{cfg.preset}_{digest[:10]}"


def cache_split(
    dataroot: str,
    version: str,
    split: str,
    cfg: ModelConfig,
    cache_dir: str,
    progress: bool = True,
    max_samples: int | None = None,
    image_reduction: int | None = None,
) -> list[Path]:
    """Prepare (once) and list the cached ``SampleArrays`` of every sample in ``split``.

    Images are decoded at ``1 / image_reduction`` size (JPEG DCT scaling: much faster) and
    then resized to the network input; None picks it from the recorded image size and the
    network input (``image_reduction_for``), as inference does. A sample that fails to load is
    reported on stderr and skipped; the others are kept.
    """
    from sensors.datasets.nuscenes import NuScenesDataset

    ds = NuScenesDataset(dataroot, version=version)
    if image_reduction is None:
        image_reduction = image_reduction_for(ds.camera_image_hw(), cfg.camera.image_hw)
    ds.set_image_reduction(image_reduction)
    tokens = ds.split_sample_tokens(split)
    if max_samples is not None:
        tokens = tokens[:max_samples]
    folder = Path(cache_dir) / cache_key(cfg, dataroot, version, image_reduction)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for tok in tqdm(tokens, desc=f"cache {split}", disable=not progress, file=sys.stderr):
        f = folder / f"{tok}.npz"
        if not f.is_file():
            try:
                arrays = prepare_sample(ds.load_sample(tok), cfg)
            except Exception as e:  # noqa: BLE001 - a long job records the bad frame, goes on
                print(f"[cache] sample {tok}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            # A per-process temporary name: two jobs caching the same split at once (the
            # training scripts run two at a time) must not rename each other's file away.
            tmp = folder / f"{tok}.{os.getpid()}.tmp.npz"
            arrays.save(tmp)
            tmp.replace(f)
        files.append(f)
    if not files:
        raise RuntimeError(f"no usable samples in split {split!r} of {dataroot} ({version})")
    return files


def _weights_digest(module: nn.Module) -> str:
    h = hashlib.sha1()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


@torch.no_grad()
def cache_branch_features(
    model: FusionModel,
    cfg: ModelConfig,
    files: list[Path],
    which: tuple[str, ...],
    cache_dir: str,
    device: torch.device,
    progress: bool = True,
    drop_one_camera: bool = False,
) -> list[Path]:
    """Run the frozen branches ``which`` once per sample and cache their BEV maps (float16).

    Training the fuser and heads on top of frozen, pretrained branches then costs no backbone
    compute. Keyed by the branch weights, so new weights never read stale features.

    With ``drop_one_camera`` the maps are those of the sample with one camera removed (the
    partial-fault schedule's one-camera fault); which camera is drawn from the sample token,
    so a rerun reuses the cache, and is stored in the file as ``dropped_camera``.
    """
    digest = hashlib.sha1(
        "".join(_weights_digest(getattr(model, m)) for m in which).encode()
    ).hexdigest()[:12]
    suffix = "_one_camera_missing" if drop_one_camera else ""
    folder = Path(cache_dir) / f"bev_{'_'.join(which)}_{digest}{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    skip = tuple(m for m in ("camera", "lidar", "ultrasonic") if m not in which)
    out = []
    for f in tqdm(files, desc=f"cache {'+'.join(which)} BEV", disable=not progress,
                  file=sys.stderr):
        target = folder / f.name
        if not target.is_file():
            a = SampleArrays.load(f)
            extra = {}
            if drop_one_camera:
                k = int(hashlib.sha1(a.token.encode()).hexdigest(), 16) % NUM_CAMERAS
                a = a.without_cameras(np.arange(NUM_CAMERAS) == k)
                extra["dropped_camera"] = np.int64(k)
            bevs = model.branch_bevs(collate([a], cfg, skip=skip).to(device), which)
            tmp = folder / f"{f.stem}.{os.getpid()}.tmp.npz"  # see cache_split
            np.savez(tmp, **{m: bevs[m][0].cpu().numpy().astype(np.float16) for m in which},
                     **extra)
            tmp.replace(target)
        out.append(target)
    model.train(was_training)
    return out


class CachedSamples(Dataset):
    """Cached ``SampleArrays`` with per-modality (and per-camera) dropout when training.

    With ``feature_files``, items also carry the cached BEV maps of frozen branches.

    ``partial_faults`` = (p_rings, p_one_camera) is the schedule of faults that leave a sensor
    present but degraded, drawn per sample and independently (so both occur together with
    probability p_rings * p_one_camera): with p_rings, 4 to 20 of the 32 LiDAR rings (the
    benchmark's beam-missing ladder) are removed; with p_one_camera, one camera is removed.
    When the camera branch is frozen its maps come from the cache, so the one-camera fault
    reads ``one_camera_files`` (maps cached with one camera per sample removed, the camera
    named in the file) instead of removing a camera whose map no longer depends on it.
    """

    def __init__(
        self,
        files: list[Path],
        modality_dropout: tuple[float, float, float] = (0.0, 0.0, 0.0),
        camera_dropout: float = 0.0,
        feature_files: list[Path] | None = None,
        partial_faults: tuple[float, float] = (0.0, 0.0),
        one_camera_files: list[Path] | None = None,
    ) -> None:
        self.files = list(files)
        self.modality_dropout = modality_dropout
        self.camera_dropout = camera_dropout
        self.feature_files = feature_files
        self.partial_faults = partial_faults
        self.one_camera_files = one_camera_files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> SampleArrays | tuple[SampleArrays, dict[str, np.ndarray]]:
        rng = None
        if any(self.modality_dropout) or self.camera_dropout or any(self.partial_faults):
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        a = self._arrays(i, rng)
        feature_file = self.feature_files[i] if self.feature_files is not None else None
        p_rings, p_camera = self.partial_faults
        if rng is not None and p_rings and a.presence[MODALITY_ORDER.index("lidar")]:
            if rng.random() < p_rings:
                a = a.without_rings(rng.permutation(NUM_RINGS)[: rng.integers(4, 21)])
        if rng is not None and p_camera and a.presence[MODALITY_ORDER.index("camera")]:
            if rng.random() < p_camera:
                if self.one_camera_files is not None:
                    feature_file = self.one_camera_files[i]
                    with np.load(feature_file) as z:
                        k = int(z["dropped_camera"])
                else:
                    k = int(rng.integers(NUM_CAMERAS))
                a = a.without_cameras(np.arange(NUM_CAMERAS) == k)
        if feature_file is None:
            return a
        with np.load(feature_file) as z:
            return a, {k: z[k] for k in z.files if k != "dropped_camera"}

    def _arrays(self, i: int, rng: np.random.Generator | None) -> SampleArrays:
        a = SampleArrays.load(self.files[i])
        if rng is not None and (any(self.modality_dropout) or self.camera_dropout):
            drop = [m for m, p in zip(MODALITY_ORDER, self.modality_dropout) if rng.random() < p]
            if len(drop) == len(MODALITY_ORDER):
                drop = drop[:-1]  # keep at least one sensor: an empty frame teaches nothing
            a = a.without(tuple(drop))
            if self.camera_dropout:
                a = a.without_cameras(rng.random(NUM_CAMERAS) < self.camera_dropout)
        return a


def collate_cached(
    items: list[tuple[SampleArrays, dict[str, np.ndarray]]], cfg: ModelConfig,
    cached: tuple[str, ...],
) -> Batch:
    """``collate`` for items with cached BEV maps of the ``cached`` branches."""
    batch = collate([a for a, _ in items], cfg, skip=cached, depth_targets=True)
    feats = {
        m: torch.from_numpy(np.stack([f[m] for _, f in items]).astype(np.float32))
        for m in cached
    }
    return replace(batch, camera_bev=feats.get("camera"), lidar_bev=feats.get("lidar"))


class TrainStep(nn.Module):
    """Forward + loss in one module, so that DistributedDataParallel syncs on it."""

    def __init__(self, model: FusionModel, frozen: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.model = model
        self.frozen = frozen
        for name in frozen:
            branch = getattr(model, name, None)
            if branch is None:
                raise ValueError(f"cannot freeze {name!r}: the model has no such branch")
            for p in branch.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> TrainStep:
        """Frozen branches stay in eval mode (their BatchNorm statistics stay fixed)."""
        super().train(mode)
        for name in self.frozen:
            getattr(self.model, name).eval()
        return self

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Total loss and the detached parts (heatmap, regression, planning)."""
        out = self.model(batch)
        total, parts = self.model.loss(out, batch)
        det = torch.tensor([parts["heatmap"], parts["reg"], parts["depth"]])
        return total, det, torch.tensor(parts["plan"])


def init_from_checkpoints(model: nn.Module, paths: tuple[str, ...]) -> int:
    """Copy every tensor whose name and shape match from the given checkpoints.

    Later checkpoints override earlier ones (``camera_only lidar_only`` gives the camera
    branch of the first, and the LiDAR branch and heads of the second). Returns the number of
    tensors initialised.
    """
    from perception.checkpoint import WEIGHTS_NAME, resolve_checkpoint_dir

    own = model.state_dict()
    loaded = {}
    for p in paths:
        state = torch.load(
            resolve_checkpoint_dir(p) / WEIGHTS_NAME, map_location="cpu", weights_only=True
        )
        for k, v in state.items():
            if k in own and tuple(own[k].shape) == tuple(v.shape):
                loaded[k] = v
    own.update(loaded)
    model.load_state_dict(own)
    return len(loaded)


def init_distributed(device_name: str | None = None) -> tuple[int, int, torch.device]:
    """Join torchrun's process group when launched by it; returns ``(rank, world, device)``.

    Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialised: ``(0, 1, device)``.
    On CUDA each process takes the GPU ``LOCAL_RANK`` names and talks NCCL; on CPU, gloo.
    ``device_name`` (``cpu``/``cuda``; None = CUDA when present) chooses between the two.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name:
        device = torch.device(device_name)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"torchrun started local rank {local_rank} but this node has "
                f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node <= that number"
            )
        device = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl", device_id=device)
    elif not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _infinite(
    loader: DataLoader, sampler: DistributedSampler | None, epoch: int = 0
) -> Iterator[Batch]:
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def provenance_dataroot(dataroot: str | Path) -> str:
    """The dataroot as ``provenance.json`` records it: relative to the repository when it lies
    inside it (``data/sim-trainval``), else just its folder name; never the absolute path of
    the machine that trained (with the version, split and seed recorded beside it, that names
    the data on any machine).
    """
    path = Path(dataroot).resolve()
    try:
        return path.relative_to(Path(__file__).resolve().parents[1]).as_posix()
    except ValueError:
        return path.name


def train(opts: TrainOptions, files: list[Path] | None = None) -> Path:
    """Train one variant; returns the checkpoint folder.

    Args:
        opts: see ``TrainOptions``.
        files: already cached ``SampleArrays`` to train on (skips the dataset and the cache).

    Returns:
        The checkpoint folder.

    """
    if opts.grad_accum < 1:
        raise ValueError(f"grad_accum {opts.grad_accum}: must be at least 1")
    rank, world_size, device = init_distributed(opts.device)
    distributed = world_size > 1
    if opts.threads:
        set_cpu_threads(opts.threads)
    seed_everything(opts.seed + rank)

    cfg = preset(opts.preset_name, opts.variant)
    if cfg.fusion.kind == FusionKind.REFINE:
        raise ValueError(f"variant {opts.variant}: its first stage is a lidar_only checkpoint "
                         "and its crop network trains on that stage's proposals: use "
                         "drivefuse train-refine --first-stage <lidar_only folder>")
    if opts.fuser and opts.fuser != cfg.fusion.kind:
        # Capacity-matched ablation, e.g. lidar_only through the concat_conv fusion layers:
        # tells a gain from a second sensor apart from a gain from the fuser's extra convs.
        fusion = replace(cfg.fusion, kind=FusionKind(opts.fuser))
        cfg = replace(cfg, fusion=fusion, name=f"{cfg.name}+{opts.fuser}")
    if opts.image_hw and tuple(opts.image_hw) != cfg.camera.image_hw:
        h, w = (int(v) for v in opts.image_hw)
        stride = cfg.camera.feature_stride
        if h % stride or w % stride:
            raise ValueError(f"image_hw {h}x{w}: both sides must be multiples of the camera "
                             f"feature stride {stride}")
        cfg = replace(cfg, camera=replace(cfg.camera, image_hw=(h, w)), name=f"{cfg.name}@{h}x{w}")
    tc = cfg.train
    tc = replace(
        tc,
        batch_size=opts.batch_size or tc.batch_size,
        lr=opts.lr or tc.lr,
        weight_decay=opts.weight_decay if opts.weight_decay is not None else tc.weight_decay,
        modality_dropout=opts.modality_dropout or tc.modality_dropout,
    )
    cfg = replace(cfg, train=tc)
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if files is not None:
        pass
    elif rank == 0:
        files = cache_split(
            opts.dataroot, opts.version, opts.split, cfg, opts.cache_dir,
            max_samples=opts.max_samples,
        )
    if distributed:
        dist.barrier()  # rank 0 filled the cache; the others only list it
        if rank != 0 and files is None:
            files = cache_split(
                opts.dataroot, opts.version, opts.split, cfg, opts.cache_dir, progress=False,
                max_samples=opts.max_samples,
            )
    dropout = tc.modality_dropout
    # Variants without a branch for a modality gain nothing from dropping it.
    dropout = tuple(p if cfg.uses(m) else 0.0 for m, p in zip(MODALITY_ORDER, dropout))
    if len(cfg.fusion.modalities) == 1:
        dropout = (0.0, 0.0, 0.0)  # a single-sensor model would only see blank frames
    model = build_model(cfg)
    n_init = init_from_checkpoints(model, opts.init_from) if opts.init_from else 0
    anchored = bool(opts.anchor) and anchor_fuser(model.fuser, opts.anchor)
    model = model.to(device)
    # Frozen camera/LiDAR branches: compute their BEV maps once, train on the cache.
    cached = tuple(
        m for m in ("camera", "lidar")
        if m in opts.freeze and cfg.uses(m) and cfg.fusion.kind != FusionKind.SERIAL
    )
    partial = (
        opts.partial_faults[0] if cfg.uses("lidar") else 0.0,
        opts.partial_faults[1] if cfg.uses("camera") else 0.0,
    )
    if partial[0] and "lidar" in cached:
        raise ValueError("partial_faults: losing LiDAR rings needs a trained LiDAR branch, "
                         "not a frozen one whose maps are cached")
    feature_files = one_camera_files = None
    if cached:
        if distributed and rank != 0:
            dist.barrier()
        feature_files = cache_branch_features(
            model, cfg, files, cached, opts.cache_dir, device, progress=rank == 0
        )
        if partial[1] and "camera" in cached:
            one_camera_files = cache_branch_features(
                model, cfg, files, cached, opts.cache_dir, device, progress=rank == 0,
                drop_one_camera=True,
            )
        if distributed and rank == 0:
            dist.barrier()
    data = CachedSamples(
        files, dropout, tc.camera_dropout if cfg.uses("camera") else 0.0, feature_files,
        partial, one_camera_files,
    )
    collate_fn = (
        functools.partial(collate_cached, cfg=cfg, cached=cached)
        if cached
        else functools.partial(collate, cfg=cfg, depth_targets=True)
    )
    # Every optimiser step averages the gradients of world_size * grad_accum micro-batches,
    # one from each shard of the epoch's permutation (rank r's micro-batch k reads shard
    # r * grad_accum + k), so ranks never share a sample and N ranks take the same steps as
    # one process accumulating N micro-batches. A single shard keeps the plain shuffled
    # loader (the order earlier single-process runs and their recorded results used).
    accum = opts.grad_accum
    num_shards = world_size * accum
    samplers: list[DistributedSampler | None] = [
        DistributedSampler(data, num_replicas=num_shards, rank=rank * accum + k,
                           shuffle=True, seed=opts.seed)
        for k in range(accum)
    ] if num_shards > 1 else [None]
    loaders = [
        DataLoader(
            data,
            batch_size=tc.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=opts.num_workers,
            collate_fn=collate_fn,
            drop_last=(len(sampler) if sampler is not None else len(data)) >= tc.batch_size,
            persistent_workers=opts.num_workers > 0,
            generator=torch.Generator().manual_seed(opts.seed),
        )
        for sampler in samplers
    ]
    steps_per_epoch = max(1, len(loaders[0]))
    total_steps = opts.steps or (opts.epochs or 1) * steps_per_epoch

    # Branches a variant does not have cannot be frozen: a recipe may name all of them.
    frozen = tuple(m for m in opts.freeze if cfg.uses(m))
    step_module = TrainStep(model, frozen).to(device)
    params = [p for p in step_module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=tc.lr, total_steps=total_steps, pct_start=0.2
    )
    step = 0
    state_file = out_dir / TRAIN_STATE_NAME
    if opts.resume and state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state["config_name"] != cfg.name or state["total_steps"] != total_steps:
            raise ValueError(
                f"{state_file}: cannot resume: it is {state['config_name']!r} with "
                f"{state['total_steps']} steps, this run is {cfg.name!r} with {total_steps}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        if rank:  # rank 0's saved stream; the others need their own (modality dropout)
            torch.manual_seed(opts.seed + rank + 100_003 * step)
    runner: nn.Module = step_module
    if distributed:
        runner = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    use_amp = opts.amp and device.type == "cuda"
    provenance = {
        "dataroot": provenance_dataroot(opts.dataroot),
        "version": opts.version,
        "split": opts.split,
        "num_train_samples": len(data),
        "git_commit": git_commit(),
        "variant": opts.variant,
        "preset": opts.preset_name,
        "steps": total_steps,
        "batch_size": tc.batch_size,
        "lr": tc.lr,
        "seed": opts.seed,
        "init_from": list(opts.init_from),
        "initialised_tensors": n_init,
        "freeze": list(opts.freeze),
        "anchor": opts.anchor if anchored else None,
        "partial_faults": list(partial),
        "bev_feature_cache": list(cached),
        "device": str(device),
        "world_size": dist.get_world_size() if distributed else 1,
        "command": " ".join(sys.argv),
    }

    def save(final: bool) -> None:
        if rank != 0:
            return
        prov = dict(provenance, steps_done=step, final=final,
                    saved_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        save_checkpoint(out_dir, model, cfg, prov)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "total_steps": total_steps,
                "config_name": cfg.name,
                "torch_rng": torch.get_rng_state(),
            },
            state_file,
        )

    runner.train()
    log = open(out_dir / LOG_NAME, "a") if rank == 0 else None  # noqa: SIM115
    bar = tqdm(total=total_steps, initial=step, desc=cfg.name, disable=rank != 0,
               file=sys.stderr, mininterval=5.0)
    ema = None
    t_start = time.time()
    # A resumed run continues with the epoch it stopped in (its permutation, from the start).
    its = [_infinite(loader, sampler, epoch=step // steps_per_epoch)
           for loader, sampler in zip(loaders, samplers)]
    try:
        while step < total_steps:
            optimizer.zero_grad(set_to_none=True)
            stats = torch.zeros(5)  # loss, heatmap, reg, depth, plan: means over micro-batches
            for k, it in enumerate(its):
                batch = next(it).to(device)
                # DDP all-reduces gradients in backward; the micro-batches before the last
                # only accumulate locally.
                last = k == accum - 1
                with contextlib.nullcontext() if last or not distributed else runner.no_sync():
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        loss, det_parts, plan_part = runner(batch)
                    (loss / accum).backward()
                stats += torch.cat([loss.detach().float().cpu().reshape(1), det_parts.float(),
                                    plan_part.float().reshape(1)]) / accum
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if distributed:  # logged and checked as the global mean, the same on every rank
                stats = stats.to(device)
                dist.all_reduce(stats)
                stats = stats.cpu() / world_size
            value = float(stats[0])
            det_parts, plan_part = stats[1:4], stats[4]
            if not math.isfinite(value):
                raise FloatingPointError(f"{cfg.name}: loss is {value} at step {step}")
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if log is not None and (step % opts.log_every == 0 or step == total_steps):
                rec = {"step": step, "loss": value, "loss_ema": ema,
                       "heatmap": float(det_parts[0]), "reg": float(det_parts[1]),
                       "depth": float(det_parts[2]),
                       "plan": float(plan_part), "lr": scheduler.get_last_lr()[0],
                       "elapsed_s": round(time.time() - t_start, 1)}
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if step % opts.save_every == 0 and step < total_steps:
                save(final=False)
        if distributed:
            # BatchNorm running statistics are per rank after the last forward (DDP
            # broadcasts rank 0's only at the start of each); the checkpoint holds rank 0's,
            # and so does every replica from here on.
            for buf in model.buffers():
                dist.broadcast(buf, src=0)
        save(final=True)
    finally:
        bar.close()
        if log is not None:
            log.close()
        if distributed:
            dist.destroy_process_group()
    return out_dir
