"""Scaling measurements for ``tools/bench_scale.py``: wall time of the fanned-out jobs.

Each job (evaluation inference sharded by scene; the fusion benchmark in chunks of
corruptions) is timed in this process (the plain loop, no executor), then through the
executor with 1 and with N concurrent units, on a local process pool and on a local Ray.
Ray's own start-up (``ray.init``) and the first round-trip to a fresh worker (it imports the
project: torch, numba, the devkit) are measured apart, since a long job pays them once.
Every unit uses one torch thread, so the workers, not the threads, are what changes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from eval.executor import ExecutorConfig, ensure_ray, run_units


@dataclass(frozen=True)
class Timed:
    """One measurement.

    Attributes:
        job: ``evaluation`` or ``benchmark``.
        executor: ``loop`` (no executor), ``processes`` or ``ray``.
        workers: units running at once.
        wall_s: wall time of the job (start-up of Ray excluded; see ``ray_startup``).
        units: units the job was cut into.

    """

    job: str
    executor: str
    workers: int
    wall_s: float
    units: int


def _warm_import(_: int) -> float:
    """A unit that imports what the real units import; returns its own time in seconds."""
    t0 = time.perf_counter()
    import eval.benchmark  # noqa: F401
    import eval.runner  # noqa: F401
    import perception.pipeline  # noqa: F401
    import sensors.datasets.nuscenes  # noqa: F401

    return time.perf_counter() - t0


def ray_startup(num_cpus: int) -> dict[str, float]:
    """Seconds for ``ray.init`` of a local Ray and for the first task on each fresh worker."""
    cfg = ExecutorConfig("ray", workers=num_cpus)
    init_s = ensure_ray(cfg)
    t0 = time.perf_counter()
    run_units(_warm_import, range(num_cpus), cfg, progress=False).require_all()
    return {"ray_init_s": init_s, "first_tasks_s": time.perf_counter() - t0}


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_evaluation(
    checkpoint: str, dataroot: str, version: str, split: str, workers: tuple[int, ...],
    max_samples: int | None = None, with_ray: bool = True,
) -> list[Timed]:
    """Inference over a split (no metrics): loop, then processes and Ray for each count."""
    from eval.runner import run_model
    from eval.sharding import run_model_sharded, shards_by_scene
    from perception.threads import set_cpu_threads
    from sensors.datasets.nuscenes import NuScenesDataset

    set_cpu_threads(1)
    ds = NuScenesDataset(dataroot, version)
    tokens = ds.split_sample_tokens(split)[:max_samples]
    n_units = len(shards_by_scene(ds, tokens))
    # Warm-up (Numba cache loads, torch's first-call allocations, the checkpoint's file in the
    # page cache), so the loop is not charged with what the forked workers then inherit.
    run_model(checkpoint, ds, tokens[:2], progress=False)
    out = [Timed("evaluation", "loop", 1,
                 _timed(lambda: run_model(checkpoint, ds, tokens, progress=False)), 1)]
    for kind in ("processes", "ray") if with_ray else ("processes",):
        for n in workers:
            cfg = _executor(kind, n, max(workers))
            wall = _timed(lambda cfg=cfg: run_model_sharded(
                checkpoint, ds, tokens, cfg, threads=1, progress=False))
            out.append(Timed("evaluation", kind, n, wall, n_units))
    return out


def time_benchmark(
    spec, workers: tuple[int, ...], with_ray: bool = True,  # noqa: ANN001 - a BenchmarkSpec
) -> list[Timed]:
    """The benchmark into fresh folders: loop, then processes and Ray, one chunk a worker."""
    from eval.benchmark import run_benchmark
    from eval.sharding import run_benchmark_sharded
    from perception.threads import set_cpu_threads

    set_cpu_threads(1)
    spec = replace(spec, memory=False)
    quiet = lambda s: None  # noqa: E731 - run_benchmark's log callback, silenced
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = [Timed("benchmark", "loop", 1, _timed(
            lambda: run_benchmark(spec, root / "loop", progress=False, log=quiet)), 1)]
        for kind in ("processes", "ray") if with_ray else ("processes",):
            for n in workers:
                cfg = _executor(kind, n, max(workers))
                folder = root / f"{kind}{n}"
                wall = _timed(lambda cfg=cfg, folder=folder, n=n: run_benchmark_sharded(
                    spec, folder, cfg, progress=False, log=quiet, chunks=n))
                out.append(Timed("benchmark", kind, n, wall, min(n, len(spec.corruptions))))
    return out


def _executor(kind: str, n: int, ray_cpus: int) -> ExecutorConfig:
    if kind == "processes":
        return ExecutorConfig("processes", workers=n)
    # One Ray for every count (started with the most CPUs): fewer units at once by making
    # each reserve more CPUs. Units still use one torch thread (see the callers).
    return ExecutorConfig("ray", workers=ray_cpus, cpus_per_unit=ray_cpus / n)


def scaling_table(
    rows: list[Timed], startup: dict[str, float] | None, load: tuple[float, float] | None = None
) -> str:
    """Markdown: wall time per job, executor and worker count, speed-up over the loop."""
    lines = ["| job | executor | workers | units | wall s | speed-up vs loop |",
             "|---|---|---:|---:|---:|---:|"]
    loop = {r.job: r.wall_s for r in rows if r.executor == "loop"}
    for r in rows:
        lines.append(f"| {r.job} | {r.executor} | {r.workers} | {r.units} | {r.wall_s:.1f} | "
                     f"{loop[r.job] / r.wall_s:.2f}x |")
    text = "\n".join(lines) + "\n"
    if startup:
        text += (f"\nRay start-up (not in the rows above): ray.init {startup['ray_init_s']:.1f} s;"
                 f" first task on each fresh worker (imports) {startup['first_tasks_s']:.1f} s.\n")
    if load:
        text += (f"\nLoad average (1 min) at the start / end: {load[0]:.2f} / {load[1]:.2f} "
                 "(other processes on the machine compete for the same cores).\n")
    return text
