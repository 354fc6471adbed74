"""Fusion benchmark: every variant, clean and under every corruption, one table.

A *cell* is (variant, corruption, severity); ``clean`` is severity 0. Per cell: nuScenes
detection metrics (``eval.detection``, devkit-identical: mAP, NDS, the five TP errors) and
open-loop planning (L2 at 1/2/3 s, collision rate up to 3 s, ``eval.planning``), all through
``eval.runner``. Per variant: mRR and mCE (Robo3D's definitions, on NDS, against the
``baseline`` variant), parameters, median latency and peak memory.

Cost. Samples are loaded once. Each sample is corrupted once per (corruption, severity) and
that one corrupted sample is run through every variant; preprocessing is shared by variants
with the same input config. The clean pass keeps every variant's branch BEV maps, so a
corruption recomputes only the branches that read the modality it touches
(``FusionModel.map_inputs``; ``serial``'s LiDAR map also reads the cameras); a variant that
reads none of it gets the clean cell's result without running (its input is unchanged). The
shared path equals the full model exactly; ``verify_samples`` runs the full model too on the
first samples of every group, asserts equal outputs, and times both for the speed-up. Branch
maps are also shared *across* variants that carry the same branch tensor for tensor
(``Pipeline.branch_keys``: the shipped parallel fusers and ``late`` hold ``camera_only``'s
camera branch, ``lidar_camera_refine`` and every fallback expert ``lidar_only``'s LiDAR
branch): such a map is computed once per sample, in the corruption cells and in the clean pass
after its ``LATENCY_SAMPLES`` (timed whole, for the latency column).

Resumable. Every finished cell is written at once (temporary file + ``os.replace``) under
``<out>/cells/``; a restarted run (even after SIGKILL) reads them and computes only the
missing cells. ``<out>/run.json`` fingerprints the settings; a mismatch refuses to mix runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from eval.corruptions import (
    CORRUPTION_NAMES,
    MID_SEVERITY,
    corrupt,
    get_corruption,
    sample_context,
)
from eval.runner import (
    LoadedSamples,
    ModelRun,
    SampleFailure,
    detection_and_planning,
    infer_sample,
    load_samples,
    training_image_reduction,
)
from sensors.types import Modality

CLEAN = "clean"
# run_benchmark's ``facts`` modes, and the clean samples a variant's latency median is taken
# over when it is run for nothing else.
FACT_MODES = ("all", "memory", "none")
LATENCY_SAMPLES = 20
DEFAULT_BASELINE = "lidar_only"
BASELINE_VARIANTS = ("lidar_only", "camera_only", "lidar_ultrasonic")
CELL_METRICS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE", "L2_3s_m", "collision_3s")


@dataclass(frozen=True)
class BenchmarkSpec:
    """What one benchmark run measures.

    Attributes:
        checkpoints: variant name -> checkpoint folder, in display order.
        dataroot / version / split: the nuScenes-format data and the split scored.
        corruptions: corruption names (``eval.corruptions``).
        severities: severities per corruption (a single-level fault is scored at 1 only);
            ``(3,)`` for ``--quick``.
        seed: corruption seed.
        baseline: variant mCE is measured against.
        max_samples: only the first N samples of the split (others count as empty; then
            the numbers are not comparable to a full run).
        verify_samples: samples per (corruption, severity) also run through the whole
            model, checked equal to the shared-branch result and timed (0 = none).
        device: torch device (None = CUDA when present).
        memory: measure each variant's peak memory (a child process per variant).

    """

    checkpoints: tuple[tuple[str, str], ...]
    dataroot: str
    version: str
    split: str
    corruptions: tuple[str, ...] = CORRUPTION_NAMES
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    seed: int = 0
    baseline: str = DEFAULT_BASELINE
    max_samples: int | None = None
    verify_samples: int = 2
    device: str | None = None
    memory: bool = True

    def __post_init__(self) -> None:
        for c in self.corruptions:
            get_corruption(c)  # unknown names fail here, naming the known ones
        bad = [s for s in self.severities if s not in (1, 2, 3, 4, 5)]
        if bad:
            raise ValueError(f"severities must be 1..5, got {bad}")
        if not self.checkpoints:
            raise ValueError("no variants to benchmark")

    @property
    def variants(self) -> tuple[str, ...]:
        """Variant names in display order."""
        return tuple(v for v, _ in self.checkpoints)

    def groups(self) -> list[tuple[str, int]]:
        """Every (corruption, severity) scored, in run order."""
        out = []
        for c in self.corruptions:
            sev = get_corruption(c).severities
            out += [(c, s) for s in (sev if len(sev) == 1 else self.severities)]
        return out

    def fingerprint(self) -> dict:
        """What the cached cells depend on (checkpoint weights by digest)."""
        digests = {}
        for v, path in self.checkpoints:
            h = hashlib.sha1()
            for name in ("model.pt", "config.json"):
                f = Path(path) / name
                if f.is_file():
                    h.update(f.read_bytes())
            digests[v] = h.hexdigest()[:16]
        return {
            "dataroot": str(Path(self.dataroot).resolve()),
            "version": self.version,
            "split": self.split,
            "seed": self.seed,
            "max_samples": self.max_samples,
            "checkpoints": digests,
            "format": 1,
        }


def shipped_checkpoints(root: str | Path, variants: Sequence[str] | None = None
                        ) -> tuple[tuple[str, str], ...]:
    """``(variant, folder)`` of every checkpoint under ``root`` (baselines first, then the
    fused variants in ``FUSION_VARIANTS`` order), or of the ``variants`` named.
    """
    from perception.config import FUSION_VARIANTS

    root = Path(root)
    have = set()
    if root.is_dir():
        have = {p.name for p in root.iterdir() if (p / "model.pt").is_file()}
    if variants:
        missing = [v for v in variants if v not in have]
        if missing:
            raise ValueError(f"{root}: no checkpoint for {missing} (have {sorted(have)})")
        order = list(variants)
    else:
        known = [*BASELINE_VARIANTS, *(v for v in FUSION_VARIANTS if v not in BASELINE_VARIANTS)]
        order = [v for v in known if v in have] + sorted(have - set(known))
    if not order:
        raise ValueError(f"{root}: no checkpoint folders (with model.pt) found")
    return tuple((v, str(root / v)) for v in order)


def train_variants(
    variants: Sequence[str],
    out_dir: str | Path,
    dataroot: str,
    version: str,
    split: str,
    steps: int,
    seed: int = 0,
    preset: str = "tiny",
    cache_dir: str = "data/cache",
) -> tuple[tuple[str, str], ...]:
    """Train every variant with one recipe, seed and budget (``perception.train`` with the
    preset's settings and ``steps`` optimiser steps, from scratch); returns
    ``(variant, checkpoint folder)`` for ``BenchmarkSpec``. A variant whose checkpoint from
    the same recipe is already there is not trained again.
    """
    from perception.train import TrainOptions, provenance_dataroot, train

    out = []
    # The cascade's first stage is this recipe's lidar_only: train that one first.
    variants = sorted(variants, key=lambda v: v == "lidar_camera_refine")
    for v in variants:
        folder = Path(out_dir) / v
        prov = folder / "provenance.json"
        recipe = {"steps": steps, "seed": seed, "preset": preset, "split": split,
                  "dataroot": provenance_dataroot(dataroot)}
        if prov.is_file():
            got = json.loads(prov.read_text())
            if got.get("final") and all(got.get(k) == x for k, x in recipe.items()):
                out.append((v, str(folder)))
                continue
        if v == "lidar_camera_refine":
            from perception.refine.train import RefineRunOptions, RefineTrainOptions, train_refine

            first = Path(out_dir) / "lidar_only"
            if not (first / "model.pt").is_file():
                raise ValueError("lidar_camera_refine is trained on lidar_only's proposals: "
                                 "benchmark lidar_only too")
            train_refine(RefineRunOptions(
                dataroot=dataroot, version=version, split=split, val_split=None,
                first_stage=str(first), out_dir=str(folder),
                train=RefineTrainOptions(seed=seed), extra_provenance={**recipe, "final": True},
                cache_dir=str(Path(out_dir) / "refine_cache"),
            ))
        else:
            train(TrainOptions(variant=v, preset_name=preset, dataroot=dataroot,
                               version=version, split=split, out_dir=str(folder), steps=steps,
                               epochs=None, seed=seed, cache_dir=cache_dir,
                               save_every=max(steps, 1)))
        out.append((v, str(folder)))
    return tuple(out)


def quick_severities() -> tuple[int, ...]:
    """``--quick``: one mid severity per corruption."""
    return (MID_SEVERITY,)


def cell_name(corruption: str, severity: int) -> str:
    """File stem of a cell: ``clean`` or ``<corruption>_s<severity>``."""
    return CLEAN if corruption == CLEAN else f"{corruption}_s{severity}"


@dataclass
class CellCache:
    """Finished cells on disk: ``<root>/cells/<variant>/<cell>.json``, written atomically."""

    root: Path

    def path(self, variant: str, corruption: str, severity: int) -> Path:
        """Where a cell lives."""
        return self.root / "cells" / variant / f"{cell_name(corruption, severity)}.json"

    def get(self, variant: str, corruption: str, severity: int) -> dict | None:
        """The cell's record, or None when not finished."""
        p = self.path(variant, corruption, severity)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:  # cannot happen with atomic writes; say so if it does
            raise ValueError(f"{p}: corrupt cell file ({exc}); delete it to recompute") from None

    def put(self, variant: str, corruption: str, severity: int, record: dict) -> None:
        """Write a cell: temporary file in the same folder, then ``os.replace``."""
        atomic_write_json(self.path(variant, corruption, severity), record)

    def check_fingerprint(self, fingerprint: dict, reset: bool = False) -> None:
        """Record the run's settings, or refuse a folder made with other settings (``reset``:
        delete its cells instead and start over).
        """
        f = self.root / "run.json"
        if f.is_file():
            old = json.loads(f.read_text())
            if old != fingerprint and reset:
                import shutil

                for sub in ("cells", "variants"):
                    shutil.rmtree(self.root / sub, ignore_errors=True)
                f.unlink()
            elif old != fingerprint:
                keys = set(old) | set(fingerprint)
                diff = sorted(k for k in keys if old.get(k) != fingerprint.get(k))
                raise ValueError(
                    f"{f}: this folder holds cells of a different run (differs in {diff}); "
                    "use another --out or delete it"
                )
            else:
                return
        atomic_write_json(f, fingerprint)


def atomic_write_json(path: Path, obj: object) -> None:
    """Write JSON so that a reader (or a restart after a kill) sees all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


@dataclass
class Timing:
    """Per-cell cost of the shared-branch path and of the full model (verified samples)."""

    shared_ms: list[float] = field(default_factory=list)
    full_ms: list[float] = field(default_factory=list)

    def speedup(self) -> float:
        """Full-model time over shared-branch time on the same samples (NaN if unmeasured)."""
        if not self.full_ms or not self.shared_ms:
            return float("nan")
        return float(np.sum(self.full_ms) / max(np.sum(self.shared_ms), 1e-9))


@dataclass
class BenchmarkResult:
    """All cells and per-variant facts of a run (what ``benchmark.json`` holds)."""

    spec: BenchmarkSpec
    cells: dict[str, dict[str, dict]]  # variant -> cell name -> record
    variants: dict[str, dict]  # variant -> parameters, latency, memory, mRR, mCE
    wall_s: float = 0.0
    computed_cells: int = 0
    speedup: dict[str, float] = field(default_factory=dict)  # cell name -> overall speed-up
    machine: dict = field(default_factory=dict)  # eval.machine.machine_facts() of the run

    def to_json(self) -> dict:
        """JSON-able dict."""
        return {
            "spec": asdict(self.spec),
            "variants": self.variants,
            "cells": self.cells,
            "wall_s": self.wall_s,
            "computed_cells": self.computed_cells,
            "speedup_shared_vs_full": self.speedup,
            "machine": self.machine,
        }


# ---------------------------------------------------------------------------- robustness
def robustness(
    cells: dict[str, dict[str, dict]], spec: BenchmarkSpec, metric: str = "NDS"
) -> dict[str, dict[str, float]]:
    """Per variant: ``RR_<c>`` and ``CE_<c>`` per corruption, their means ``mRR`` and ``mCE``.

    Robo3D: RR_c = mean over severities of metric_{c,s} / clean metric; mRR = mean over
    corruptions. CE_c = sum_s (1 - metric_{c,s}) / sum_s (1 - baseline metric_{c,s}); mCE =
    mean over corruptions. A corruption with a missing cell is left out of the means.
    """
    out: dict[str, dict[str, float]] = {}
    base = cells.get(spec.baseline, {})
    for v in spec.variants:
        vc = cells.get(v, {})
        clean = vc.get(CLEAN, {}).get(metric)
        rr, ce = {}, {}
        for c in spec.corruptions:
            names = [cell_name(c, s) for s in severities_of(spec, c)]
            vals = [vc.get(n, {}).get(metric) for n in names]
            if any(x is None for x in vals):
                continue
            if clean:
                rr[c] = float(np.mean(vals) / clean)
            bvals = [base.get(n, {}).get(metric) for n in names]
            if all(x is not None for x in bvals):
                denom = float(np.sum([1 - x for x in bvals]))
                if denom > 0:
                    ce[c] = float(np.sum([1 - x for x in vals]) / denom)
        rec = {f"RR_{c}": x for c, x in rr.items()} | {f"CE_{c}": x for c, x in ce.items()}
        rec["mRR"] = float(np.mean(list(rr.values()))) if rr else float("nan")
        rec["mCE"] = float(np.mean(list(ce.values()))) if ce else float("nan")
        out[v] = rec
    return out


def severities_of(spec: BenchmarkSpec, corruption: str) -> tuple[int, ...]:
    """The severities a run measures ``corruption`` at (its one level for a single-level
    fault).
    """
    sev = get_corruption(corruption).severities
    return sev if len(sev) == 1 else spec.severities


# ----------------------------------------------------------------------------- the run
def run_benchmark(
    spec: BenchmarkSpec,
    out_dir: str | Path,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    reset_stale: bool = False,
    facts: str = "all",
) -> BenchmarkResult:
    """Run (or resume) the benchmark; writes cells, ``benchmark.json``/``.md`` and the plots.

    Args:
        spec: what to measure.
        out_dir: output folder (cells cache, reports, plots).
        progress: tqdm bar on stderr (samples done, cells done, time left).
        log: where to print one line per finished (corruption, severity) group.
        reset_stale: when ``out_dir`` holds cells of other settings (checkpoints, data,
            seed), delete them and start over instead of refusing (the demo's folder).
        facts: which per-variant facts not cached yet to measure: ``"all"`` (parameters,
            latency, peak memory; then the reports are written), ``"memory"`` (only peak
            memory, cached for the ``"all"`` pass) or ``"none"``. A sharded run
            (``eval.sharding``) measures memory in its first chunk and the rest in its final
            pass, when no chunk competes for the cores: latency measured beside a running
            chunk read up to 1.7x slower here.

    Returns:
        Every cell (cached or computed now) and the per-variant summary.

    """
    from tqdm import tqdm

    from perception.pipeline import Pipeline
    from perception.prepare import prepare_key, prepare_sample
    from sensors.datasets.nuscenes import NuScenesDataset

    t_start = time.perf_counter()
    log = log or (lambda s: print(s, file=sys.stderr))
    out = Path(out_dir)
    cache = CellCache(out)
    cache.check_fingerprint(spec.fingerprint(), reset=reset_stale)
    variants = spec.variants
    groups = spec.groups()
    todo = {
        g: [v for v in variants if cache.get(v, *g) is None] for g in [(CLEAN, 0), *groups]
    }
    n_todo = sum(len(v) for v in todo.values())
    computed = 0
    speedups: dict[str, float] = {}
    variant_facts: dict[str, dict] = {}
    facts_dir = out / "variants"

    ds = NuScenesDataset(spec.dataroot, spec.version)
    split_tokens = ds.split_sample_tokens(spec.split)
    if not split_tokens:
        raise ValueError(f"{spec.dataroot}: split {spec.split!r} has no samples in {spec.version}")
    tokens = split_tokens[: spec.max_samples] if spec.max_samples else split_tokens
    pipes: dict[str, Pipeline] = {}
    for v, path in spec.checkpoints:
        pipes[v] = Pipeline.from_checkpoint(path, device=spec.device)
    if facts not in FACT_MODES:
        raise ValueError(f"facts must be one of {FACT_MODES}, got {facts!r}")
    need_facts = [v for v in variants
                  if facts == "all" and not (facts_dir / f"{v}.json").is_file()]
    need_memory = [v for v in variants if facts == "memory" and spec.memory
                   and not (facts_dir / f"{v}.json").is_file()
                   and not (facts_dir / f"{v}.memory.json").is_file()]
    if n_todo or need_facts or need_memory:
        if not n_todo:  # only facts to measure: the latency samples (memory needs one)
            tokens = tokens[:LATENCY_SAMPLES]
        # Samples are read once per camera decode reduction (one for every tiny-preset model);
        # a model without cameras takes them as they are decoded for the others.
        cam_r = sorted({training_image_reduction(ds, p.cfg) for p in pipes.values()
                        if p.cfg.uses(Modality.CAMERA)})
        reduction = {v: training_image_reduction(ds, p.cfg) if p.cfg.uses(Modality.CAMERA)
                     else (cam_r[0] if cam_r else ds.image_reduction) for v, p in pipes.items()}
        loaded: dict[int, LoadedSamples] = {}
        t0 = time.perf_counter()
        for r in sorted(set(reduction.values())):
            loaded[r] = load_samples(ds, tokens, r, progress=progress)
        contexts = {t: sample_context(ds, t) for t in tokens}
        log(f"  loaded {len(tokens)} samples once ({len(loaded)} decode reduction"
            f"{'s' if len(loaded) > 1 else ''}) in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        prep_key = {v: prepare_key(p.cfg) for v, p in pipes.items()}
        # Warm-up run per variant: JIT compilation and first-call setup stay out of the
        # latency medians; also the first BEV-pooling call of a process can differ from later
        # ones in the last float bits, which would break the shared == full check.
        for v, pipe in pipes.items():
            first = next(iter(loaded[reduction[v]].samples.values()), None)
            if first is not None:
                pipe.run(first)
        maps_needed = [v for v in variants if any(v in todo[g] for g in groups)]

        # Clean pass: every variant on every clean sample; keeps branch maps for reuse.
        clean_maps: dict[str, dict[str, dict]] = {v: {} for v in variants}
        clean_runs = {v: ModelRun.for_pipeline(p) for v, p in pipes.items()}
        run_clean = [v for v in variants if v in todo[(CLEAN, 0)] or v in maps_needed
                     or v in need_facts]
        # A variant run only for its latency needs a median, not the whole split.
        latency_only = {v for v in need_facts if v not in todo[(CLEAN, 0)] and v not in maps_needed}
        total_steps = len(tokens) * (1 + len(groups))
        bar = tqdm(total=total_steps, desc="benchmark", unit="sample", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)
        # The latency samples run every variant whole; after them, a branch map two variants
        # compute alike (equal tensors, ``Pipeline.branch_keys``) is computed once per sample.
        n_timed: dict[str, int] = {}
        for i_tok, tok in enumerate(tokens):
            if i_tok == LATENCY_SAMPLES:
                n_timed = {v: len(clean_runs[v].timings_ms) for v in run_clean}
            clean_shared: dict[int, dict] = {}
            for v in run_clean:
                if v in latency_only and i_tok >= LATENCY_SAMPLES:
                    continue
                pipe, run = pipes[v], clean_runs[v]
                run.add_empty(tok, loaded[reduction[v]].poses[tok])
                sample = loaded[reduction[v]].samples.get(tok)
                if sample is None:
                    run.failures.append(SampleFailure(tok, "did not load"))
                    continue
                shared = (clean_shared.setdefault(reduction[v], {})
                          if i_tok >= LATENCY_SAMPLES else None)
                maps = infer_sample(pipe, run, sample, shared_maps=shared)
                if maps is not None and v in maps_needed:
                    clean_maps[v][tok] = maps
            bar.update(1)
        log(f"  clean pass: {len(run_clean)} variants x {len(tokens)} samples in "
            f"{time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        for v in variants:
            if v in todo[(CLEAN, 0)]:
                rec = _score(clean_runs[v], ds, spec.split, split_tokens, CLEAN, 0)
                cache.put(v, CLEAN, 0, rec)
                computed += 1
        def memory_of(v: str) -> float:
            cached = facts_dir / f"{v}.memory.json"
            if cached.is_file():
                return float(json.loads(cached.read_text())["peak_memory_mb"])
            first = next(iter(loaded[reduction[v]].samples.values()), None)
            mb = (peak_memory_mb(dict(spec.checkpoints)[v], first)
                  if spec.memory and first is not None else float("nan"))
            atomic_write_json(cached, {"peak_memory_mb": mb})
            return mb

        for v in need_memory:
            memory_of(v)
        for v in need_facts:
            atomic_write_json(facts_dir / f"{v}.json", {
                "parameters": int(sum(p.numel() for p in pipes[v].model.parameters())),
                "median_latency_ms": clean_runs[v].median_latency_ms(n_timed.get(v)),
                "stage_latency_ms": clean_runs[v].stage_latency_ms(n_timed.get(v)),
                "peak_memory_mb": memory_of(v),
            })
        log(f"  clean cells scored, parameters / latency / peak memory of "
            f"{len(set(need_facts) | set(need_memory))} variants in "
            f"{time.perf_counter() - t0:.0f} s")
        bar.set_postfix(cells=f"{computed}/{n_todo}")

        for corruption, severity in groups:
            g = (corruption, severity)
            remaining = todo[g]
            if not remaining:
                bar.update(len(tokens))
                continue
            touched = set(get_corruption(corruption).modalities)  # two for a composed fault
            # Variants that never read a touched modality: their input is unchanged.
            unaffected = [v for v in remaining if not any(pipes[v].cfg.uses(t) for t in touched)]
            active = [v for v in remaining if v not in unaffected]
            runs = {v: ModelRun.for_pipeline(pipes[v]) for v in active}
            timing = {v: Timing() for v in active}
            # Per variant, the branches the corruption leaves alone (their clean maps are
            # reused), and those among them with a shared key (they seed the shared maps).
            untouched = {u: {m for m, ins in pipes[u].model.map_inputs().items()
                             if not touched & ins} for u in variants}
            seeds = {u: {m: k for m, k in pipes[u].branch_keys().items()
                         if k is not None and m in untouched[u]} for u in variants}
            for i, tok in enumerate(tokens):
                arrays_by_key: dict[tuple[int, str], object] = {}
                corrupted_by_r: dict[int, object] = {}
                corrupt_ms: dict[int, float] = {}
                prep_ms: dict[tuple[int, str], float] = {}
                batches: dict = {}  # collated inputs shared by variants (Pipeline.run_with_maps)
                # Branch maps alike across variants (Pipeline.branch_keys), by decode: seeded
                # with every variant's clean maps of branches the corruption leaves alone.
                shared_by_r: dict[int, dict] = {}
                for u in variants:
                    cm = clean_maps[u].get(tok)
                    if cm:
                        own = shared_by_r.setdefault(reduction[u], {})
                        for m, k in seeds[u].items():
                            if m in cm:
                                own.setdefault(k, cm[m])
                for v in active:
                    r = reduction[v]
                    run = runs[v]
                    run.add_empty(tok, loaded[r].poses[tok])
                    clean = loaded[r].samples.get(tok)
                    if clean is None or tok not in clean_maps[v]:
                        run.failures.append(SampleFailure(tok, "clean run failed"))
                        continue
                    t0 = time.perf_counter()
                    try:
                        if r not in corrupted_by_r:
                            corrupted_by_r[r] = corrupt(clean, corruption, severity, spec.seed,
                                                        contexts[tok])
                            corrupt_ms[r] = (time.perf_counter() - t0) * 1e3
                        sample = corrupted_by_r[r]
                        key = (r, prep_key[v])
                        t1 = time.perf_counter()
                        if key not in arrays_by_key:
                            arrays_by_key[key] = prepare_sample(sample, pipes[v].cfg, targets=False)
                            prep_ms[key] = (time.perf_counter() - t1) * 1e3
                    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                        run.fail(tok, exc)
                        continue
                    reuse = {m: x for m, x in clean_maps[v][tok].items() if m in untouched[v]}
                    t2 = time.perf_counter()
                    infer_sample(pipes[v], run, sample, arrays_by_key[key], reuse, batches,
                                 shared_by_r.setdefault(r, {}))
                    infer_ms = (time.perf_counter() - t2) * 1e3
                    if i < spec.verify_samples:
                        # The corruption and the preprocessing are shared by the variants.
                        share = (corrupt_ms.get(r, 0.0) + prep_ms.get(key, 0.0)) / len(active)
                        timing[v].shared_ms.append(share + infer_ms)
                        timing[v].full_ms.append(
                            _verify_full(pipes[v], clean, sample, run, corruption, severity,
                                         spec.seed, contexts[tok])
                        )
                bar.update(1)
            unaffected_full_ms = 0.0
            for tok in tokens[: spec.verify_samples]:
                for v in unaffected:
                    clean = loaded[reduction[v]].samples.get(tok)
                    if clean is not None and tok in clean_runs[v].plans:
                        unaffected_full_ms += _verify_full(
                            pipes[v], clean, clean, clean_runs[v], corruption, severity,
                            spec.seed, contexts[tok])
            for v in unaffected:
                rec = dict(cache.get(v, CLEAN, 0) or {})
                rec.update(corruption=corruption, severity=severity, reused_clean=True,
                           reason=f"{v} does not read the {' or '.join(sorted(touched))}")
                cache.put(v, corruption, severity, rec)
                computed += 1
            for v in active:
                rec = _score(runs[v], ds, spec.split, split_tokens, corruption, severity)
                rec["speedup_shared_vs_full"] = timing[v].speedup()
                rec["shared_ms_per_sample"] = _mean(timing[v].shared_ms)
                rec["full_ms_per_sample"] = _mean(timing[v].full_ms)
                cache.put(v, corruption, severity, rec)
                computed += 1
            all_shared = sum(sum(t.shared_ms) for t in timing.values())
            # Unaffected variants cost nothing on the shared path (their clean result stands).
            all_full = sum(sum(t.full_ms) for t in timing.values()) + unaffected_full_ms
            sp = all_full / all_shared if all_shared > 0 and all_full > 0 else float("nan")
            speedups[cell_name(*g)] = sp
            bar.set_postfix(cells=f"{computed}/{n_todo}")
            log(f"  {cell_name(*g):28s} {len(active)} variants run, {len(unaffected)} unaffected; "
                f"shared-branch speed-up over the full model {sp:.1f}x")
        bar.close()

    cells: dict[str, dict[str, dict]] = {}
    for v in variants:
        cells[v] = {}
        for g in [(CLEAN, 0), *groups]:
            rec = cache.get(v, *g)
            if rec is not None:
                cells[v][cell_name(*g)] = rec
    if facts != "all":  # a chunk: its cells are in the cache, the driver reports
        return BenchmarkResult(spec, cells, {}, time.perf_counter() - t_start, computed, speedups)
    for v in variants:
        variant_facts[v] = json.loads((facts_dir / f"{v}.json").read_text())
    rob = robustness(cells, spec)
    for v in variants:
        variant_facts[v].update(rob[v])
    if not speedups:  # everything came from the cache: report what the cells recorded
        for g in groups:
            vals = [cells[v].get(cell_name(*g), {}).get("speedup_shared_vs_full") for v in variants]
            vals = [x for x in vals if x is not None and np.isfinite(x)]
            if vals:
                speedups[cell_name(*g)] = float(np.median(vals))
    from eval.machine import machine_facts

    # Timed like the latencies: in the final pass, with no chunk running.
    result = BenchmarkResult(spec, cells, variant_facts, time.perf_counter() - t_start, computed,
                             speedups, machine_facts())
    write_reports(result, out)
    return result


def _mean(x: Sequence[float]) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _verify_full(
    pipe, clean, shared_sample, run: ModelRun, corruption: str, severity: int, seed: int, ctx,  # noqa: ANN001
) -> float:
    """Corrupt and run the whole model as a standalone evaluation would; assert that the
    shared-branch result recorded in ``run`` is identical; return the full path's ms.
    """
    t0 = time.perf_counter()
    sample = corrupt(clean, corruption, severity, seed, ctx)
    res = pipe.run(sample)
    ms = (time.perf_counter() - t0) * 1e3
    tok = sample.token
    if tok in run.plans:
        got = run.detections[tok]
        same = (
            len(got) == len(res.detections)
            and np.array_equal(got.center_m, res.detections.center_m)
            and np.array_equal(got.scores, res.detections.scores)
            and np.array_equal(run.plans[tok], np.asarray(res.plan.waypoints_xy_ego_m, np.float64))
        )
        if not same:
            raise AssertionError(
                f"shared-branch result differs from the full model for {tok} under "
                f"{corruption} s{severity} ({pipe.cfg.name}): a reused branch read the "
                "corrupted modality, or a map shared from another variant was not its own"
            )
    return ms


def _score(
    run: ModelRun, ds, split: str, split_tokens: Sequence[str], corruption: str, severity: int,  # noqa: ANN001
) -> dict:
    for tok in split_tokens:  # the evaluation needs the whole split
        if tok not in run.detections:
            run.add_empty(tok, ds.global_SE3_ego(tok))
    rec = detection_and_planning(run, ds.nusc, split)
    rec.update(corruption=corruption, severity=severity,
               failed_samples=[f.sample_token for f in run.failures][:20])
    return rec


def _vm_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field_name}")


def _memory_child(checkpoint: str, sample, queue) -> None:  # noqa: ANN001
    import torch

    from perception.pipeline import Pipeline

    torch.set_num_threads(1)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        base = _vm_kib("VmRSS")
        pipe = Pipeline.from_checkpoint(checkpoint, device="cpu")
        for _ in range(2):
            pipe.run(sample)
        queue.put((_vm_kib("VmHWM") - base) / 1024.0)
    except Exception as exc:  # noqa: BLE001 - reported as "not measured"
        queue.put(f"{type(exc).__name__}: {exc}")


def peak_memory_mb(checkpoint: str, sample) -> float:  # noqa: ANN001 - a SyncedSample
    """Peak resident memory (MB) that loading ``checkpoint`` and running it on ``sample``
    adds: a fresh child process (spawned: forking after torch ran threads can deadlock)
    imports torch, resets its peak (``/proc/self/clear_refs``), loads and runs twice, and
    reports ``VmHWM`` minus its resident size before loading (Linux; NaN elsewhere).
    """
    import multiprocessing as mp
    import queue as queue_mod

    try:
        ctx = mp.get_context("spawn")
    except ValueError:
        return float("nan")
    q = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(checkpoint, sample, q), daemon=True)
    proc.start()
    try:
        got = q.get(timeout=180)
    except queue_mod.Empty:
        got = "timed out"
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    if isinstance(got, str):
        print(f"peak memory of {checkpoint}: not measured ({got})", file=sys.stderr)
        return float("nan")
    return float(got)


# ----------------------------------------------------------------------------- reports
def table_rows(result: BenchmarkResult) -> list[dict]:
    """One row per variant: clean NDS/mAP, NDS per corruption (mean over severities), mRR,
    mCE, parameters, latency, memory.
    """
    rows = []
    for v in result.spec.variants:
        cells = result.cells.get(v, {})
        clean = cells.get(CLEAN, {})
        row = {"variant": v, "clean_NDS": clean.get("NDS"), "clean_mAP": clean.get("mAP"),
               "L2_3s_m": clean.get("L2_3s_m"), "collision_3s": clean.get("collision_3s")}
        for c in result.spec.corruptions:
            names = [cell_name(c, s) for s in severities_of(result.spec, c)]
            vals = [cells.get(n, {}).get("NDS") for n in names]
            row[c] = float(np.mean(vals)) if vals and all(x is not None for x in vals) else None
        facts = result.variants.get(v, {})
        for k in ("mRR", "mCE", "parameters", "median_latency_ms", "peak_memory_mb"):
            row[k] = facts.get(k)
        rows.append(row)
    return rows


def _f(x: object, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float) and not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}"


def summary_table(result: BenchmarkResult) -> str:
    """The robustness summary (markdown): per variant clean scores, mRR, mCE, cost."""
    lines = [
        "| variant | clean NDS | clean mAP | L2@3s (m) | coll@3s | mRR | "
        f"mCE vs {result.spec.baseline} | params | ms/frame | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table_rows(result):
        lines.append(
            f"| {r['variant']} | {_f(r['clean_NDS'])} | {_f(r['clean_mAP'])} "
            f"| {_f(r['L2_3s_m'], 2)} | {_f(r['collision_3s'])} | {_f(r['mRR'])} "
            f"| {_f(r['mCE'])} | {_f(r['parameters'])} "
            f"| {_f(r['median_latency_ms'], 1)} | {_f(r['peak_memory_mb'], 0)} |"
        )
    return "\n".join(lines)


def corruption_table(result: BenchmarkResult) -> str:
    """NDS per variant (rows) and corruption (columns), averaged over the severities run."""
    cs = result.spec.corruptions
    lines = ["| corruption | " + " | ".join(result.spec.variants) + " |",
             "|---|" + "---|" * len(result.spec.variants)]
    rows = {r["variant"]: r for r in table_rows(result)}
    clean = " | ".join(_f(rows[v]["clean_NDS"]) for v in result.spec.variants)
    lines.append(f"| clean | {clean} |")
    for c in cs:
        lines.append(f"| {c} | " + " | ".join(_f(rows[v][c]) for v in result.spec.variants) + " |")
    return "\n".join(lines)


def cell_table(result: BenchmarkResult) -> str:
    """Every cell: mAP, NDS, TP errors, L2@3s, collision rate (long form)."""
    lines = ["| variant | cell | " + " | ".join(CELL_METRICS) + " | reused clean |",
             "|---|---|" + "---|" * (len(CELL_METRICS) + 1)]
    for v in result.spec.variants:
        for name, rec in result.cells.get(v, {}).items():
            vals = " | ".join(_f(rec.get(m)) for m in CELL_METRICS)
            lines.append(f"| {v} | {name} | {vals} | {'yes' if rec.get('reused_clean') else ''} |")
    return "\n".join(lines)


def write_reports(result: BenchmarkResult, out: Path) -> dict[str, Path]:
    """``benchmark.json``, ``benchmark.md``, ``heatmap.png`` and ``accuracy_latency.png``."""
    from eval.benchmark_plots import accuracy_latency_scatter, robustness_heatmap
    from eval.machine import describe

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "benchmark.json", "md": out / "benchmark.md",
             "heatmap": out / "heatmap.png", "scatter": out / "accuracy_latency.png"}
    atomic_write_json(paths["json"], result.to_json())
    spec = result.spec
    sev = "severity " + ", ".join(map(str, spec.severities))
    finite = [x for x in result.speedup.values() if np.isfinite(x)]
    md = [
        "# Fusion benchmark",
        "",
        f"Data: `{spec.dataroot}` ({spec.version}, split `{spec.split}`"
        + (f", first {spec.max_samples} samples" if spec.max_samples else "") + f"); {sev}; "
        f"seed {spec.seed}. Metrics: nuScenes detection (devkit-identical), open-loop planning. "
        f"mRR / mCE as Robo3D defines them, on NDS, mCE against `{spec.baseline}`.",
        "",
        f"Machine: {describe(result.machine)}." if result.machine else "",
        "",
        "## Robustness summary",
        "",
        summary_table(result),
        "",
        "## NDS per corruption (mean over severities)",
        "",
        corruption_table(result),
        "",
        f"Shared-branch speed-up over running the whole model per cell: median "
        f"{np.median(finite):.1f}x over {len(finite)} corruption cells." if finite else "",
        "",
        "## Every cell",
        "",
        cell_table(result),
        "",
    ]
    paths["md"].write_text("\n".join(md))
    robustness_heatmap(result, paths["heatmap"])
    accuracy_latency_scatter(result, paths["scatter"])
    return paths
