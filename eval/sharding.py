"""The jobs' units of work for ``eval.executor``: inference shards, replay scenes, benchmark chunks.

- **Evaluation inference** (``tools/evaluate.py --checkpoint``) is sharded by scene: a unit is
  one scene's keyframes (``InferenceShard``: checkpoint path, dataroot, tokens); it returns
  that scene's ``ModelRun``; ``merge_runs`` joins them in the split's token order, so the
  results file is byte-identical to one ``run_model`` over the whole split.
- **Replay of a split** (``tools/replay.py --split``): a unit is one scene, replayed into its
  own folder (``replay_split``).
- **The fusion benchmark** (``eval.benchmark``) is split into chunks of corruptions: a unit
  is ``run_benchmark`` restricted to some corruptions, writing its cells into the shared
  cell cache (one file a cell, written atomically); the driver's final ``run_benchmark``
  finds every cell cached and writes the table and plots. Each chunk does its own clean
  pass (the branch maps its corruptions reuse), so ``n`` chunks cost ``n - 1`` extra clean
  passes; chunks are as many as the workers, never more than the corruptions.

Units run in whichever process the executor picks: each reads the data and the checkpoint
itself (a worker keeps them loaded between its units) and, on a cluster, needs the dataroot,
the checkpoints and the output folder on a file system every node sees.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from eval.executor import INLINE, ExecutorConfig, UnitResults, ensure_ray, run_units
from eval.runner import ModelRun, SampleFailure, run_model

if TYPE_CHECKING:
    from eval.benchmark import BenchmarkResult, BenchmarkSpec
    from eval.replay import ReplayConfig
    from perception.pipeline import Pipeline
    from sensors.datasets.nuscenes import NuScenesDataset


@dataclass(frozen=True)
class InferenceShard:
    """One unit of evaluation inference: a checkpoint over some keyframes of one dataset.

    Attributes:
        checkpoint: checkpoint folder (``tools/train.py``'s output).
        dataroot / version: the nuScenes-format data.
        tokens: keyframe sample tokens (one scene's, in time order).
        device: torch device (None = CUDA when present).
        ego_status_ablation / steering_ratio: as ``eval.runner.run_model``.
        threads: CPU threads (torch and Numba, ``perception.threads``) the unit computes
            with. Part of the numbers: CPU float reductions split by thread, so runs are
            byte-identical at the same thread count (not across counts, ~1e-9 m apart).

    """

    checkpoint: str
    dataroot: str
    version: str
    tokens: tuple[str, ...]
    device: str | None = None
    ego_status_ablation: bool = False
    steering_ratio: float | None = None
    threads: int = 1


@dataclass(frozen=True)
class ShardRun:
    """What one inference shard returns: its run and the sensor files its loads met.

    Attributes:
        run: the shard's ``ModelRun``.
        missing_files / sensor_faults: the dataset's records added while loading the shard
            (``NuScenesDataset.missing_files`` / ``sensor_faults``).

    """

    run: ModelRun
    missing_files: tuple = ()
    sensor_faults: tuple = ()


# Datasets by (dataroot, version), kept per process: a worker loads the tables once for all
# its units; the driver registers its own, which inline units reuse.
_DATASETS: dict[tuple[str, str], NuScenesDataset] = {}


def _dataset(dataroot: str, version: str) -> NuScenesDataset:
    from sensors.datasets.nuscenes import NuScenesDataset

    key = (dataroot, version)
    if key not in _DATASETS:
        if len(_DATASETS) >= 2:
            _DATASETS.clear()
        _DATASETS[key] = NuScenesDataset(dataroot, version)
    return _DATASETS[key]


@functools.lru_cache(maxsize=4)
def _pipeline(checkpoint: str, device: str | None, weights_mtime_ns: int) -> Pipeline:
    from perception.pipeline import Pipeline

    return Pipeline.from_checkpoint(checkpoint, device=device)


def _weights_mtime_ns(checkpoint: str) -> int:
    # Part of the cache key: a checkpoint rewritten in place is loaded again.
    for name in ("model.pt", ""):
        p = Path(checkpoint) / name if name else Path(checkpoint)
        if p.is_file():
            return p.stat().st_mtime_ns
    return 0


def infer_shard(shard: InferenceShard) -> ShardRun:
    """Run ``shard.checkpoint`` on ``shard.tokens``: the unit function of sharded inference.

    A sample that fails is recorded in the run (``ModelRun.failures``), as ``run_model`` does;
    only a checkpoint or dataset that cannot be read makes the unit fail.
    """
    from perception.threads import set_cpu_threads

    # Both torch and Numba: Ray sets OMP_NUM_THREADS=1 in a worker, but Numba's first
    # parallel kernel would raise the shared OpenMP count to every core mid-run.
    set_cpu_threads(shard.threads)
    ds = _dataset(shard.dataroot, shard.version)
    pipe = _pipeline(shard.checkpoint, shard.device, _weights_mtime_ns(shard.checkpoint))
    n_missing, n_faults = len(ds.missing_files), len(ds.sensor_faults)
    run = run_model(pipe, ds, list(shard.tokens), device=shard.device,
                    ego_status_ablation=shard.ego_status_ablation,
                    steering_ratio=shard.steering_ratio, progress=False)
    return ShardRun(run, tuple(ds.missing_files[n_missing:]),
                    tuple(ds.sensor_faults[n_faults:]))


def shards_by_scene(ds: NuScenesDataset, tokens: Sequence[str]) -> list[tuple[str, ...]]:
    """``tokens`` cut into runs of consecutive tokens of one scene (their order kept)."""
    out: list[list[str]] = []
    last = None
    for tok in tokens:
        scene = ds.nusc.get("sample", tok)["scene_token"]
        if scene != last:
            out.append([])
            last = scene
        out[-1].append(tok)
    return [tuple(s) for s in out]


def merge_runs(runs: Sequence[ModelRun]) -> ModelRun:
    """One ``ModelRun`` from the runs of consecutive shards, as one run over them all.

    Per-token tables are joined in shard order (the shards are consecutive runs of the
    token list, so that is the token order), lists (failures, sensor faults) are concatenated
    in shard order; the settings (results
    meta, waypoint spacing, ...) must agree, since every shard ran the same checkpoint.
    """
    if not runs:
        return ModelRun()
    merged = {}
    for f in dataclasses.fields(ModelRun):
        values = [getattr(r, f.name) for r in runs]
        match values[0]:
            case dict():
                joined: dict = {}
                for v in values:
                    joined.update(v)
                merged[f.name] = joined
            case list():
                merged[f.name] = [x for v in values for x in v]
            case first:
                if any(v != first for v in values[1:]):
                    raise ValueError(f"shards disagree on {f.name}: {values}")
                merged[f.name] = first
    return ModelRun(**merged)


def run_model_sharded(
    checkpoint: str | Path,
    ds: NuScenesDataset,
    tokens: Sequence[str],
    executor: ExecutorConfig = INLINE,
    device: str | None = None,
    ego_status_ablation: bool = False,
    steering_ratio: float | None = None,
    threads: int = 1,
    progress: bool = True,
) -> tuple[ModelRun, UnitResults[ShardRun]]:
    """``eval.runner.run_model`` with one executor unit per scene; the same ``ModelRun``.

    A shard that fails as a whole (its worker lost twice, an unreadable checkpoint) leaves
    its samples without detections, each recorded in ``failures`` with the shard's error.
    The sensor files the shards found missing or corrupt are added to ``ds.missing_files``
    and ``ds.sensor_faults``, as if ``ds`` had loaded them itself. Every unit computes with
    ``threads`` CPU threads (``InferenceShard.threads``): the run equals ``run_model`` after
    ``perception.threads.set_cpu_threads(threads)``, byte for byte.

    Returns:
        The merged run and the executor's per-shard outcome (failures, wall time).

    """
    shards = shards_by_scene(ds, tokens)
    dataroot = str(Path(ds.dataroot).resolve())
    _DATASETS.setdefault((dataroot, ds.version), ds)
    units = [
        InferenceShard(str(Path(checkpoint).resolve()), dataroot, ds.version, s, device,
                       ego_status_ablation, steering_ratio, threads)
        for s in shards
    ]
    outcome = run_units(infer_shard, units, executor, desc="inference (scenes)",
                        progress=progress)
    # Inline units loaded through ``ds`` itself: their faults are in its lists already.
    same_ds = executor.kind == "inline" and _DATASETS.get((dataroot, ds.version)) is ds
    done = [r.run for r in outcome.results if r is not None]
    template = done[0] if done else ModelRun()
    runs = []
    for i, res in enumerate(outcome.results):
        if res is None:
            f = next(f for f in outcome.failures if f.index == i)
            runs.append(_failed_shard_run(template, ds, shards[i], f"{f.error_type}: {f.message}"))
            continue
        runs.append(res.run)
        if not same_ds:  # loaded by another process (or object): record them here too
            ds.missing_files.extend(res.missing_files)
            ds.sensor_faults.extend(res.sensor_faults)
    return merge_runs(runs), outcome


def _failed_shard_run(
    template: ModelRun, ds: NuScenesDataset, tokens: Sequence[str], error: str
) -> ModelRun:
    """A shard's samples without detections, each failure recorded (settings of ``template``)."""
    run = replace(template, **{
        f.name: type(getattr(template, f.name))() for f in dataclasses.fields(ModelRun)
        if isinstance(getattr(template, f.name), dict | list)
    })
    for tok in tokens:
        run.add_empty(tok, ds.global_SE3_ego(tok))
        run.failures.append(SampleFailure(tok, f"shard failed: {error}"))
    return run


def parallelism(executor: ExecutorConfig) -> int:
    """How many units the executor runs at once (the CPUs of the Ray it joins or starts)."""
    match executor.kind:
        case "inline":
            return 1
        case "processes":
            return executor.workers or os.cpu_count() or 1
        case "ray":
            ensure_ray(executor)
            import ray

            cpus = ray.cluster_resources().get("CPU", 1.0)
            return max(1, int(cpus // max(executor.cpus_per_unit, 1e-9)))
    raise AssertionError(executor.kind)  # pragma: no cover


def benchmark_chunk(
    spec: BenchmarkSpec, out_dir: str, threads: int, chunk: tuple[int, tuple[str, ...]]
) -> int:
    """Compute the cells of chunk ``(index, corruptions)`` (and the clean cells) into
    ``out_dir``'s cache.

    The unit function of the distributed benchmark, with ``threads`` CPU threads (torch and
    Numba; see ``InferenceShard.threads``). Chunk 0 also measures each variant's peak
    memory (a child process per variant), so it is measured once, not once per chunk; the
    driver's final pass measures the latencies, with no chunk running. Returns the number
    of cells computed.
    """
    from eval.benchmark import run_benchmark
    from perception.threads import set_cpu_threads

    set_cpu_threads(threads)
    index, corruptions = chunk
    res = run_benchmark(replace(spec, corruptions=corruptions), out_dir, progress=False,
                        log=lambda s: None, facts="memory" if index == 0 else "none")
    return res.computed_cells


def default_benchmark_executor(max_workers: int = 4) -> ExecutorConfig | None:
    """The benchmark's executor when none is asked for: a pool of one process per core, at
    most ``max_workers`` (each chunk holds its own samples and clean branch maps: about 3.5
    GB on the 200-keyframe val split); None (one loop in this process) on a single core.
    """
    n = min(os.cpu_count() or 1, max_workers)
    return ExecutorConfig("processes", workers=n) if n > 1 else None


def balanced_chunks(spec: BenchmarkSpec, n: int) -> list[tuple[str, ...]]:
    """The corruptions dealt into ``n`` chunks of about equal work (longest first, each to
    the least loaded chunk), every chunk in the spec's order.

    A corruption's work is its severity levels times the variants that read a sensor it
    touches (the others reuse their clean cell): one unit is one variant on the split at one
    level, ~2.5 s on mini_val here. Chunk 0 also measures the peak memory: a spawned child
    per variant (~4.3 s each here), 1.75 units a variant.
    """
    from eval.benchmark import severities_of
    from eval.corruptions import get_corruption
    from perception.checkpoint import load_config

    cfgs = [load_config(path) for _, path in spec.checkpoints]
    work = {}
    for c in spec.corruptions:
        touched = set(get_corruption(c).modalities)
        readers = sum(any(cfg.uses(m) for m in touched) for cfg in cfgs)
        work[c] = len(severities_of(spec, c)) * max(readers, 1)
    load = [0.0] * n
    load[0] = 1.75 * len(cfgs) if spec.memory else 0.0
    owner: dict[str, int] = {}
    for c in sorted(spec.corruptions, key=lambda c: -work[c]):  # stable: ties keep spec order
        k = min(range(n), key=lambda i: (load[i], i))
        owner[c] = k
        load[k] += work[c]
    return [tuple(c for c in spec.corruptions if owner[c] == i) for i in range(n)]


def _count_cells(root: Path, spec: BenchmarkSpec) -> int:
    from eval.benchmark import CLEAN, CellCache

    cache = CellCache(root)
    return sum(cache.path(v, *g).is_file() for v in spec.variants
               for g in [(CLEAN, 0), *spec.groups()])


def run_benchmark_on(
    spec: BenchmarkSpec,
    out_dir: str | Path,
    executor: ExecutorConfig | None,
    progress: bool = True,
    log=None,  # noqa: ANN001 - as run_benchmark's
    threads: int = 1,
    reset_stale: bool = False,
) -> BenchmarkResult:
    """The benchmark on ``executor``: one loop in this process for None or inline (one line
    logged per corruption), else ``run_benchmark_sharded`` (a progress bar over cells).
    """
    from eval.benchmark import run_benchmark

    if executor is None or executor.kind == "inline":
        return run_benchmark(spec, out_dir, progress=progress, log=log, reset_stale=reset_stale)
    return run_benchmark_sharded(spec, out_dir, executor, progress=progress, log=log,
                                 threads=threads, reset_stale=reset_stale)


def run_benchmark_sharded(
    spec: BenchmarkSpec,
    out_dir: str | Path,
    executor: ExecutorConfig,
    progress: bool = True,
    log=None,  # noqa: ANN001 - as run_benchmark's
    chunks: int | None = None,
    threads: int = 1,
    reset_stale: bool = False,
) -> BenchmarkResult:
    """``eval.benchmark.run_benchmark`` with chunks of corruptions as executor units.

    Cells are the same numbers as one ``run_benchmark`` computes (every cell is a pure
    function of the spec; the timing fields are measurements and differ run to run).
    A chunk that fails is logged with its error, and the cells it left missing are computed
    by the final pass in this process (the cell cache tells which). Each chunk scores the
    clean cells itself too when they are not cached yet (the same numbers; the last write
    stands). The progress bar counts finished cells in the shared cell cache, so it moves
    while the chunks run, wherever they run.

    Args:
        spec: what to measure.
        out_dir: output folder (cell cache, reports); shared by all workers.
        executor: where the chunks run.
        progress: progress bar over cells (done / total, time left).
        log: as ``run_benchmark``'s (the final report pass).
        chunks: number of units (default: the executor's parallelism, at most the number of
            corruptions).
        threads: CPU threads per chunk; the cells equal a ``run_benchmark`` in a process
            set to as many (``perception.threads.set_cpu_threads``).
        reset_stale: as ``run_benchmark``'s.

    """
    import threading

    from tqdm import tqdm

    from eval.benchmark import CellCache, run_benchmark

    out = Path(out_dir).resolve()
    # Refuse (or reset) a folder of other settings before fanning out.
    CellCache(out).check_fingerprint(spec.fingerprint(), reset=reset_stale)
    n = chunks or parallelism(executor)
    n = max(1, min(n, len(spec.corruptions)))
    parts = list(enumerate(balanced_chunks(spec, n)))
    unit = functools.partial(benchmark_chunk, spec, str(out), threads)
    total = len(spec.variants) * (1 + len(spec.groups()))
    done0 = _count_cells(out, spec)
    bar = tqdm(total=total, initial=done0, desc=f"benchmark ({n} chunks)", unit="cell",
               disable=not progress, dynamic_ncols=True)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(2.0):
            bar.update(_count_cells(out, spec) - bar.n)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        outcome = run_units(unit, parts, executor, desc="benchmark chunks", progress=False)
    finally:
        stop.set()
        watcher.join()
        bar.update(_count_cells(out, spec) - bar.n)
        bar.close()
    if outcome.failures and log is not None:
        log(f"benchmark: {outcome.summary()}")
    return run_benchmark(spec, out, progress=False, log=log)


def replay_scene(cfg: ReplayConfig, threads: int, scene: tuple[str, str]) -> dict:
    """Replay one scene into ``<cfg.out_dir>/<scene name>/``: the unit of a split replay.

    ``scene`` is ``(token, name)``. Returns ``{"scene", "token", "out_dir", "summary"}`` with
    the scene's ``summary.json`` content.
    """
    from eval.replay import replay
    from perception.threads import set_cpu_threads

    set_cpu_threads(threads)  # see InferenceShard.threads
    token, name = scene
    sub = replace(cfg, scenes=(token,), split=None, out_dir=Path(cfg.out_dir) / name,
                  progress=False)
    summary = replay(sub)
    return {"scene": name, "token": token, "out_dir": str(sub.out_dir), "summary": summary.data}


def replay_split(cfg: ReplayConfig, executor: ExecutorConfig, threads: int = 1,
                 progress: bool = True) -> dict:
    """Replay every scene of ``cfg`` (``scenes`` and/or ``split``) as one executor unit each.

    Each scene gets its own folder under ``cfg.out_dir`` (its ticks.jsonl, keyframes.jsonl,
    summary, video and MCAP, exactly what ``eval.replay.replay`` writes for that one scene);
    ``<out_dir>/scenes.json`` lists them in scene order with each summary, and the scenes
    that failed with their errors. Playback (``realtime``) paces each scene on its own.

    Returns:
        The content of ``scenes.json``.

    """
    import orjson

    from eval.replay.source import resolve_scenes
    from sensors.datasets.nuscenes import NuScenesDataset

    ds = NuScenesDataset(cfg.dataroot, cfg.version)
    tokens = resolve_scenes(ds, cfg.scenes, cfg.split)
    scenes = [(t, ds.nusc.get("scene", t)["name"]) for t in tokens]
    out = Path(cfg.out_dir).resolve()
    cfg = replace(cfg, dataroot=Path(cfg.dataroot).resolve(), out_dir=out)
    outcome = run_units(functools.partial(replay_scene, cfg, threads), scenes, executor,
                        desc="replay (scenes)", progress=progress)
    index = {
        "scenes": [r for _, r in outcome.completed()],
        "failed": [f.to_dict() for f in outcome.failures],
        "executor": outcome.executor,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenes.json").write_bytes(orjson.dumps(
        index, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return index
