"""Train the crop network of a ``lidar_camera_refine`` model on its frozen first stage's proposals.

1. ``collect_proposals``: every sample of a split is read once (cameras at the refiner's
   source resolution), the frozen first stage (``lidar_only``'s weights inside the refine model)
   proposes its detections, the best ``max_proposals`` that a camera sees are cropped, and each
   is labelled with the class of the nearest ground-truth box within ``match_radius_m`` (BEV
   centre distance) or background. The crop network thus learns the first stage's actual
   mistakes: its class confusions and its false positives.
2. ``fit_refiner``: the crop classifier and the score combiner train together, with a
   per-class binary cross-entropy on the refined logits (the detection score's meaning: is
   there an object of class k here) plus the crop classifier's own cross-entropy over the
   classes and background; horizontal flips and brightness/contrast jitter on the crops.
   Only ``refiner.*`` changes; the first stage stays bit-for-bit the ``lidar_only`` it came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from calibration.sample import Boxes3D
from perception.backbones.camera_inputs import image_reduction_for
from perception.checkpoint import git_commit, load_checkpoint, save_checkpoint
from perception.config import ModelConfig, with_variant
from perception.model import FusionModel, build_model
from perception.pipeline import Pipeline
from perception.refine.crops import GEOMETRY_FEATURES, extract_crops
from perception.refine.network import BACKGROUND, NUM_CLASSES, Refiner, crops_to_tensor
from perception.train import provenance_dataroot
from sensors.datasets.nuscenes import NuScenesDataset
from sensors.types import DETECTION_CLASSES

# A proposal within this BEV distance of a ground-truth centre is that object (the middle of
# the devkit's 0.5-4 m matching thresholds).
MATCH_RADIUS_M = 2.0
# Bumped whenever the crop pixels change for the same settings (2: the window resampling of
# perception.ops.window_resample replaced per-crop cv2.resize), so that a proposal cache made
# by older code is not reused.
CROP_FORMAT = 2


@dataclass(frozen=True, eq=False)
class ProposalSet:
    """Cropped first-stage proposals with their labels (one row per crop).

    Attributes:
        crops: (N, S, S, 3) uint8.
        geometry: (N, G) float32 box geometry.
        lidar_prob: (N, 10) float32 first-stage class probabilities.
        log_scale: (N,) float32 log(window side / crop side).
        label: (N,) int64 matched ground-truth class, ``BACKGROUND`` when none.
        first_label: (N,) int64 the first stage's label.
        score: (N,) float32 the first stage's score.
        sample: (N,) int64 index of the sample it came from.

    """

    crops: np.ndarray
    geometry: np.ndarray
    lidar_prob: np.ndarray
    log_scale: np.ndarray
    label: np.ndarray
    first_label: np.ndarray
    score: np.ndarray
    sample: np.ndarray

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def save(self, path: Path) -> None:
        """Write an uncompressed ``.npz`` (atomically)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{k: getattr(self, k) for k in self.__dataclass_fields__})
        tmp.replace(path)

    @classmethod
    def concatenate(cls, parts: Sequence[ProposalSet]) -> ProposalSet:
        """Rows of every part in order; sample indices numbered on across parts."""
        offset, samples = 0, []
        for p in parts:
            samples.append(p.sample + offset)
            offset += int(p.sample.max()) + 1 if len(p) else 0
        fields = {k: np.concatenate([getattr(p, k) for p in parts])
                  for k in cls.__dataclass_fields__ if k != "sample"}
        return cls(**fields, sample=np.concatenate(samples))

    @classmethod
    def load(cls, path: Path) -> ProposalSet:
        """Read what ``save`` wrote."""
        with np.load(path) as f:
            return cls(**{k: f[k] for k in cls.__dataclass_fields__})


def refinable(data: ProposalSet, classes: Sequence[str]) -> ProposalSet:
    """The proposals the refinement sees at inference: first-stage label among ``classes``;
    an object of another class counts as background (the refinement cannot name it).
    """
    ids = [DETECTION_CLASSES.index(c) for c in classes]
    keep = np.isin(data.first_label, ids)
    label = np.where(np.isin(data.label, ids), data.label, BACKGROUND)[keep]
    fields = {k: getattr(data, k)[keep] for k in ProposalSet.__dataclass_fields__}
    return ProposalSet(**{**fields, "label": label})


def match_labels(proposals: Boxes3D, gt: Boxes3D | None,
                 radius_m: float = MATCH_RADIUS_M) -> np.ndarray:
    """(N,) class of the nearest ground-truth box centre within ``radius_m`` (BEV), else
    ``BACKGROUND``.
    """
    out = np.full(len(proposals), BACKGROUND, np.int64)
    if gt is None or len(gt) == 0 or len(proposals) == 0:
        return out
    d = np.linalg.norm(proposals.center_m[:, None, :2] - gt.center_m[None, :, :2], axis=2)
    near = d.argmin(axis=1)
    hit = d[np.arange(len(proposals)), near] <= radius_m
    out[hit] = gt.labels[near[hit]]
    return out


def collect_proposals(
    pipe: Pipeline, load_sample: Callable[[str], object], tokens: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> ProposalSet:
    """Crops and labels of the first stage's proposals on every token (module docstring).

    Args:
        pipe: a ``refine`` model's pipeline (its first stage proposes).
        load_sample: token -> ``SyncedSample`` with ground truth, cameras decoded at no less
            than the refiner's ``source_hw``.
        tokens: the samples.
        progress: called with 1 after each sample.

    """
    rc = pipe.cfg.refine
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ProposalSet.__dataclass_fields__}
    for si, token in enumerate(tokens):
        sample = load_sample(token)
        dets, probs = pipe.first_stage(sample)
        top = np.argsort(-dets.scores, kind="stable")[: rc.max_proposals]
        sub = dets.subset(top)
        crops = extract_crops(sub, sample, rc)
        idx = crops.box_index
        chosen = sub.subset(idx)
        parts["crops"].append(crops.crops)
        parts["geometry"].append(crops.geometry)
        parts["lidar_prob"].append(probs[top][idx].astype(np.float32))
        parts["log_scale"].append(np.log(crops.window_px[:, 2] / rc.crop_px).astype(np.float32))
        parts["label"].append(match_labels(chosen, sample.boxes))
        parts["first_label"].append(chosen.labels)
        parts["score"].append(chosen.scores.astype(np.float32))
        parts["sample"].append(np.full(len(idx), si, np.int64))
        if progress is not None:
            progress(1)
    s = rc.crop_px
    empty = {"crops": np.zeros((0, s, s, 3), np.uint8),
             "geometry": np.zeros((0, GEOMETRY_FEATURES), np.float32),
             "lidar_prob": np.zeros((0, NUM_CLASSES), np.float32)}
    return ProposalSet(**{k: np.concatenate(v) if v else empty.get(k, np.zeros(0))
                          for k, v in parts.items()})


@dataclass(frozen=True)
class RefineTrainOptions:
    """Optimisation of the crop network (``fit_refiner``)."""

    epochs: int = 12
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-3
    camera_loss_weight: float = 0.5
    seed: int = 0


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and brightness/contrast jitter of normalised crops."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    gain = 1 + 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen) * 2 - 1)
    shift = 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen) * 2 - 1)
    return x * gain + shift


def refine_loss(
    refined: torch.Tensor, camera: torch.Tensor, label: torch.Tensor, camera_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-class BCE of the refined logits (background: every class 0) + weighted CE of the
    crop classifier over classes and background.
    """
    target = F.one_hot(label, NUM_CLASSES + 1)[:, :NUM_CLASSES].float()
    bce = F.binary_cross_entropy_with_logits(refined, target, reduction="sum") / len(label)
    ce = F.cross_entropy(camera, label)
    return bce + camera_weight * ce, {"bce": float(bce.detach()), "ce": float(ce.detach())}


def proposal_accuracy(refined_prob: np.ndarray, data: ProposalSet) -> dict[str, float]:
    """Label accuracy on the proposals that match an object, first stage vs refined, and the
    mean refined score of background proposals vs the first stage's.
    """
    obj = data.label != BACKGROUND
    refined_label = refined_prob.argmax(axis=1)
    return {
        "objects": int(obj.sum()),
        "first_stage_acc": float((data.first_label[obj] == data.label[obj]).mean())
        if obj.any() else math.nan,
        "refined_acc": float((refined_label[obj] == data.label[obj]).mean())
        if obj.any() else math.nan,
        "background_score_first": float(data.score[~obj].mean()) if (~obj).any() else math.nan,
        "background_score_refined": float(refined_prob.max(axis=1)[~obj].mean())
        if (~obj).any() else math.nan,
    }


@torch.no_grad()
def predict(refiner: Refiner, data: ProposalSet, batch_size: int = 1024) -> np.ndarray:
    """(N, 10) refined class probabilities of every proposal."""
    refiner.eval()
    out = []
    for i in range(0, len(data), batch_size):
        sl = slice(i, i + batch_size)
        logits, _ = refiner(crops_to_tensor(data.crops[sl]), torch.from_numpy(data.geometry[sl]),
                            torch.from_numpy(data.lidar_prob[sl]),
                            torch.from_numpy(data.log_scale[sl]))
        out.append(torch.sigmoid(logits).numpy())
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


def fit_refiner(
    refiner: Refiner, train: ProposalSet, opts: RefineTrainOptions,
    val: ProposalSet | None = None, log: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``refiner`` in place; returns one log record per epoch."""
    gen = torch.Generator().manual_seed(opts.seed)
    torch.manual_seed(opts.seed)
    params = [p for p in refiner.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train) / opts.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, opts.lr,
                                                total_steps=opts.epochs * steps_per_epoch)
    records = []
    for epoch in range(opts.epochs):
        refiner.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=gen).numpy()
        sums = {"loss": 0.0, "bce": 0.0, "ce": 0.0}
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * opts.batch_size:(b + 1) * opts.batch_size])
            x = _augment(crops_to_tensor(train.crops[idx]), gen)
            refined, camera = refiner(x, torch.from_numpy(train.geometry[idx]),
                                      torch.from_numpy(train.lidar_prob[idx]),
                                      torch.from_numpy(train.log_scale[idx]))
            loss, parts = refine_loss(refined, camera, torch.from_numpy(train.label[idx]),
                                      opts.camera_loss_weight)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            sums["loss"] += float(loss.detach())
            for k, v in parts.items():
                sums[k] += v
        rec = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 1),
               **{k: v / steps_per_epoch for k, v in sums.items()}}
        if val is not None and len(val):
            rec["val"] = proposal_accuracy(predict(refiner, val), val)
        records.append(rec)
        if log is not None:
            log(rec)
    refiner.eval()
    return records


def write_log(path: Path, records: list[dict]) -> None:
    """One JSON record per line."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def refine_model_from(first_stage: str | Path, seed: int = 0) -> tuple[FusionModel, ModelConfig]:
    """A ``lidar_camera_refine`` model whose first stage is the ``lidar_only`` checkpoint
    ``first_stage`` (a folder or a shipped variant name) and whose refiner is freshly
    initialised from ``seed``.

    Raises:
        ValueError: the checkpoint is not a ``lidar_only`` model.

    """
    base, base_cfg = load_checkpoint(first_stage)
    if base_cfg.variant != "lidar_only":
        raise ValueError(f"first stage {first_stage}: a lidar_only checkpoint is needed, got "
                         f"variant {base_cfg.variant!r}")
    cfg = with_variant(base_cfg, "lidar_camera_refine")
    torch.manual_seed(seed)
    model = build_model(cfg)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not k.startswith("refiner.") for k in missing):
        raise ValueError(f"first stage {first_stage}: its weights do not fit the refine "
                         f"model (unexpected {unexpected[:3]}, missing {missing[:3]})")
    return model.eval(), cfg


@dataclass(frozen=True)
class RefineRunOptions:
    """``train_refine``: data, first stage, output, optimisation."""

    dataroot: str
    extra_dataroots: tuple[str, ...] = ()  # more training worlds (same version and split)
    version: str = "v1.0-trainval"
    split: str = "train"
    val_split: str | None = "val"
    first_stage: str = "lidar_only"
    out_dir: str = "outputs/train/lidar_camera_refine"
    cache_dir: str = "outputs/refine_cache"
    train: RefineTrainOptions = RefineTrainOptions()
    max_samples: int | None = None
    progress: bool = True
    extra_provenance: dict | None = None


def _proposals_cached(pipe: Pipeline, ds: NuScenesDataset, split: str, cache_dir: Path,
                      digest: str, max_samples: int | None, progress: bool) -> ProposalSet:
    tokens = ds.split_sample_tokens(split)[:max_samples]
    rc = pipe.cfg.refine  # the settings that shape the crops (not the network's)
    shape = (rc.source_hw, rc.crop_px, rc.margin, rc.min_window_px, rc.max_proposals,
             CROP_FORMAT)
    key = hashlib.sha1(repr((digest, shape, str(ds.dataroot.resolve()), ds.version,
                             split, len(tokens), ds.image_reduction)).encode()).hexdigest()[:16]
    path = cache_dir / f"{split}-{key}.npz"
    if path.is_file():
        return ProposalSet.load(path)
    with tqdm(total=len(tokens), desc=f"proposals {split}", disable=not progress,
              file=sys.stderr) as bar:
        data = collect_proposals(pipe, ds.load_sample, tokens, bar.update)
    data.save(path)
    return data


def train_refine(opts: RefineRunOptions) -> Path:
    """Collect proposals (cached per first stage and split), fit the crop network, write the
    checkpoint folder (``model.pt`` with the first stage inside, ``config.json``,
    ``provenance.json``, ``train_log.jsonl``); returns it.
    """
    model, cfg = refine_model_from(opts.first_stage, opts.train.seed)
    pipe = Pipeline(model, cfg, "cpu")
    ds = NuScenesDataset(opts.dataroot, opts.version)
    ds.set_image_reduction(image_reduction_for(ds.camera_image_hw(), cfg.camera_source_hw))
    first_keys = {k: v for k, v in model.state_dict().items() if not k.startswith("refiner.")}
    digest = hashlib.sha1(b"".join(v.float().numpy().tobytes()
                                   for _, v in sorted(first_keys.items()))).hexdigest()[:12]
    cache = Path(opts.cache_dir)
    train = _proposals_cached(pipe, ds, opts.split, cache, digest, opts.max_samples,
                              opts.progress)
    if opts.extra_dataroots:
        extra = []
        for root in opts.extra_dataroots:
            eds = NuScenesDataset(root, opts.version)
            eds.set_image_reduction(image_reduction_for(eds.camera_image_hw(),
                                                        cfg.camera_source_hw))
            extra.append(_proposals_cached(pipe, eds, opts.split, cache, digest,
                                           opts.max_samples, opts.progress))
        train = ProposalSet.concatenate([train, *extra])
    val = (_proposals_cached(pipe, ds, opts.val_split, cache, digest, opts.max_samples,
                             opts.progress) if opts.val_split else None)

    def log(rec: dict) -> None:
        if opts.progress:
            print(json.dumps(rec), file=sys.stderr)

    train = refinable(train, cfg.refine.classes)
    val = None if val is None else refinable(val, cfg.refine.classes)
    t0 = time.perf_counter()
    records = fit_refiner(model.refiner, train, opts.train, val, log)
    out = Path(opts.out_dir)
    provenance = {
        "dataroot": provenance_dataroot(opts.dataroot),
        "extra_dataroots": [provenance_dataroot(r) for r in opts.extra_dataroots],
        "version": opts.version,
        "split": opts.split,
        "val_split": opts.val_split,
        "first_stage": str(opts.first_stage),
        "first_stage_digest": digest,
        "num_train_samples": int(train.sample.max() + 1) if len(train) else 0,
        "num_train_proposals": len(train),
        "train_label_counts": np.bincount(train.label, minlength=NUM_CLASSES + 1).tolist(),
        "git_commit": git_commit(),
        "variant": cfg.variant,
        "preset": cfg.preset,
        "train": dataclasses.asdict(opts.train),
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "command": " ".join(sys.argv),
        **(opts.extra_provenance or {}),
    }
    save_checkpoint(out, model, cfg, provenance)
    write_log(out / "train_log.jsonl", records)
    return out
