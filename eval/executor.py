"""The one executor seam: independent units of work run here, in a process pool, or on Ray.

A job that fans out (evaluation inference by scene, benchmark cells, replay scenes, dataset
scenes) describes its work as a list of *units* (picklable inputs: a dataroot path, scene
tokens, a checkpoint path, a corruption spec) and a *unit function*, a module-level function
of one unit that returns a plain, picklable result. ``run_units`` runs them:

- ``inline`` (the default): one after the other in this process;
- ``processes``: a local ``concurrent.futures`` process pool of ``workers`` processes;
- ``ray``: as Ray tasks, on a local Ray started with the machine's cores (``workers`` sets
  ``num_cpus``) or on a running cluster (``ray_address="auto"`` or ``"host:port"``).

Results come back in the units' order, never in completion order, so whatever merges them
writes byte-identical output for every executor and worker count. A unit that raises is
recorded (``UnitFailure``: its index, its inputs, the error and traceback) and the others
finish; ``UnitResults`` says which are missing. On Ray a unit whose worker process or node
dies is retried once (Ray's ``max_retries``); ordinary exceptions are caught inside the
task and recorded, never retried (``retry_exceptions`` stays off: a bug fails the same way
twice). Ray itself is the optional extra ``pip install 'drivefuse[distributed]'``.

Tools share one set of flags: ``add_executor_arguments`` (``--ray``, ``--ray-address``,
``--workers``, ``--ray-gpus-per-unit``) and ``executor_from_args``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from tqdm import tqdm

U = TypeVar("U")
R = TypeVar("R")

ExecutorKind = Literal["inline", "processes", "ray"]
RAY_INSTALL_HINT = "pip install 'drivefuse[distributed]'"


class RayNotInstalledError(ValueError):
    """``--ray`` was asked for but Ray is not installed (a ValueError: a bad command line)."""


class UnitsFailedError(RuntimeError):
    """Some units failed and the caller needs all of them (``UnitResults.require_all``)."""


@dataclass(frozen=True)
class ExecutorConfig:
    """Where units run.

    Attributes:
        kind: ``inline`` (this process), ``processes`` (local pool) or ``ray``.
        workers: ``processes``: pool size (None = the machine's cores); ``ray`` with no
            address: ``num_cpus`` of the local Ray it starts (None = the machine's cores);
            ignored when joining a cluster (the cluster's resources decide).
        ray_address: None starts a local Ray; ``"auto"`` joins the cluster ``ray start``
            runs on this machine (or ``RAY_ADDRESS``); ``"host:6379"`` joins that one.
        cpus_per_unit / gpus_per_unit: Ray resources one unit reserves (a GPU inference
            unit on a GPU cluster: ``gpus_per_unit=1``, or 0.5 to pack two on one GPU).
        max_retries: Ray retries of a unit whose worker died (not of one that raised).

    """

    kind: ExecutorKind = "inline"
    workers: int | None = None
    ray_address: str | None = None
    cpus_per_unit: float = 1.0
    gpus_per_unit: float = 0.0
    max_retries: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("inline", "processes", "ray"):
            raise ValueError(f"executor kind {self.kind!r}: expected inline, processes or ray")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"executor workers {self.workers}: must be at least 1")
        if self.ray_address is not None and self.kind != "ray":
            raise ValueError(f"ray_address {self.ray_address!r} given for a {self.kind} executor")
        if self.cpus_per_unit < 0 or self.gpus_per_unit < 0 or self.max_retries < 0:
            raise ValueError("cpus_per_unit, gpus_per_unit and max_retries must be >= 0")

    def describe(self) -> str:
        """One line for logs, e.g. ``ray (local, 2 CPUs)``."""
        match self.kind:
            case "inline":
                return "inline (this process)"
            case "processes":
                return f"processes ({self.workers or os.cpu_count()} workers)"
            case "ray":
                where = self.ray_address or f"local, {self.workers or os.cpu_count()} CPUs"
                return f"ray ({where})"
        raise AssertionError(self.kind)  # pragma: no cover - __post_init__ checked it


INLINE = ExecutorConfig()


@dataclass(frozen=True)
class UnitFailure:
    """A unit that raised, or whose worker was lost, with what it was asked to do.

    Attributes:
        index: position of the unit in the submitted list.
        unit: the unit's inputs, as submitted.
        error_type / message / traceback: the exception (the worker's traceback).
        worker_lost: the worker process or node died (on Ray: after its retry).

    """

    index: int
    unit: Any
    error_type: str
    message: str
    traceback: str = ""
    worker_lost: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (the inputs as their ``repr``)."""
        return {
            "index": self.index,
            "unit": repr(self.unit),
            "error": f"{self.error_type}: {self.message}",
            "worker_lost": self.worker_lost,
            "traceback": self.traceback,
        }


@dataclass(frozen=True)
class UnitResults(Generic[R]):
    """Outcome of ``run_units``, in the units' order.

    Attributes:
        results: the result of unit ``i`` at position ``i``; None where it failed.
        failures: one record per failed unit, by index.
        executor: ``ExecutorConfig.describe()`` of what ran them.
        wall_s: wall time of the run (including a Ray start-up it needed).

    """

    results: tuple[R | None, ...]
    failures: tuple[UnitFailure, ...] = ()
    executor: str = INLINE.describe()
    wall_s: float = 0.0
    _failed: frozenset[int] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_failed", frozenset(f.index for f in self.failures))

    @property
    def ok(self) -> bool:
        """Every unit succeeded."""
        return not self.failures

    @property
    def missing(self) -> tuple[int, ...]:
        """Indices of the units without a result."""
        return tuple(sorted(self._failed))

    def completed(self) -> list[tuple[int, R]]:
        """``(index, result)`` of the successful units, in unit order."""
        return [(i, r) for i, r in enumerate(self.results) if i not in self._failed]

    def summary(self) -> str:
        """E.g. ``3/4 units done; missing: #2 'scene-0003' (ValueError: bad file)``."""
        n = len(self.results)
        text = f"{n - len(self.failures)}/{n} units done"
        if self.failures:
            text += "; missing: " + ", ".join(
                f"#{f.index} {f.unit!r} ({f.error_type}: {f.message})"
                + (" [worker lost]" if f.worker_lost else "")
                for f in self.failures
            )
        return text

    def require_all(self) -> list[R]:
        """All results in unit order, or ``UnitsFailedError`` naming the missing units."""
        if self.failures:
            raise UnitsFailedError(self.summary())
        return list(self.results)  # type: ignore[arg-type]  # none failed, so none is None


def ray_available() -> bool:
    """Whether Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray() -> None:
    """Raise ``RayNotInstalledError`` (one line saying how to install it) without Ray."""
    if not ray_available():
        raise RayNotInstalledError(f"--ray needs Ray, which is not installed: {RAY_INSTALL_HINT}")


def _call_unit(fn: Callable[[Any], Any], index: int, unit: Any) -> tuple:
    """Run one unit; an exception becomes a record, so every executor reports it alike.

    Runs in the worker. Returns ``(index, True, result)`` or
    ``(index, False, (error type, message, traceback))``.
    """
    try:
        return index, True, fn(unit)
    except Exception as e:  # noqa: BLE001 - the unit's failure is data; the others go on
        return index, False, (type(e).__name__, str(e), traceback.format_exc())


def run_units(
    fn: Callable[[U], R],
    units: Sequence[U],
    executor: ExecutorConfig = INLINE,
    desc: str = "units",
    progress: bool = True,
) -> UnitResults[R]:
    """Run ``fn(unit)`` for every unit on ``executor``; results in the units' order.

    Args:
        fn: a module-level function (picklable by reference) of one unit; shared constant
            arguments can be bound with ``functools.partial``. It must not depend on which
            process runs it (no global state written by earlier units).
        units: picklable inputs, one per unit.
        executor: where to run (``INLINE`` by default).
        desc: progress-bar label.
        progress: show a tqdm bar (on stderr) that advances as units complete.

    Returns:
        ``UnitResults``: results by unit index, failure records, the executor description.

    """
    units = list(units)
    t0 = time.perf_counter()
    bar = tqdm(total=len(units), desc=desc, unit="unit", disable=not progress, file=sys.stderr)
    try:
        match executor.kind:
            case "inline":
                outcomes = [_call_unit(fn, i, u) for i, u in _ticking(units, bar)]
            case "processes":
                outcomes = _run_processes(fn, units, executor, bar)
            case "ray":
                outcomes = _run_ray(fn, units, executor, bar)
    finally:
        bar.close()
    results: list[Any] = [None] * len(units)
    failures = []
    for index, ok, payload in sorted(outcomes, key=lambda o: o[0]):
        if ok:
            results[index] = payload
        elif isinstance(payload, UnitFailure):
            failures.append(payload)
        else:
            error_type, message, tb = payload
            failures.append(UnitFailure(index, units[index], error_type, message, tb))
    return UnitResults(tuple(results), tuple(failures), executor.describe(),
                       time.perf_counter() - t0)


def _ticking(units: list, bar: tqdm):  # noqa: ANN202 - a generator of (index, unit)
    for i, u in enumerate(units):
        yield i, u
        bar.update(1)


PARENT_POLL_S = 1.0


def _init_worker(parent_pid: int) -> None:
    """Pool initializer: one compute thread (torch and Numba) in each worker, which is what a
    pool of ``workers`` processes on as many cores wants, and a watchdog that ends the worker
    once ``parent_pid`` (the process that made the pool) is gone.

    Why the watchdog: a worker forked from the fork server is the server's child, not the
    pool owner's, so nothing ends it when the owner is killed (SIGTERM or SIGKILL skip the
    pool's shutdown). It went on computing its unit for minutes, contending with the rerun
    that a resumable job's user starts next, and writing the same cells again.
    """
    from perception.threads import set_cpu_threads

    set_cpu_threads(1)
    if os.name == "posix":  # os.kill(pid, 0) is an existence probe only there
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True,
                         name="parent-watchdog").start()


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)  # no cleanup to run: the owner that would read the result is gone
        except PermissionError:
            pass  # the pid exists (owned by another user: not ours, but alive)


def _pool_context(fn: Callable):  # noqa: ANN202 - a multiprocessing context
    """A forkserver context (spawn where there is none), preloading torch, Numba and ``fn``'s
    module.

    Not plain fork: Numba's OpenMP threading layer aborts a forked child that runs a parallel
    kernel once the parent has launched its thread pool ("fork() called from a process already
    using GNU OpenMP"), which any parent that ran a kernel or ``set_cpu_threads`` has. The fork
    server is a fresh process that never computes; workers fork from it with the heavy modules
    already imported, so they start in a fraction of a second instead of importing torch again.
    """
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    target = getattr(fn, "func", fn)  # functools.partial
    module = getattr(target, "__module__", None)
    preload = ["numpy", "torch", "numba", "perception.threads"]
    if module and module != "__main__" and module in sys.modules:
        preload.append(module)
    ctx.set_forkserver_preload(preload)
    return ctx


def _run_processes(fn: Callable, units: list, cfg: ExecutorConfig, bar: tqdm) -> list[tuple]:
    ctx = _pool_context(fn)
    workers = max(1, min(cfg.workers or os.cpu_count() or 1, len(units) or 1))
    outcomes = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_call_unit, fn, i, u): i for i, u in enumerate(units)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                outcomes.append(fut.result())
            except BrokenProcessPool as e:  # a worker died: this and the queued units fail
                outcomes.append((i, False, UnitFailure(
                    i, units[i], type(e).__name__, str(e) or "a worker process died",
                    worker_lost=True)))
            except Exception as e:  # noqa: BLE001 - e.g. an unpicklable result
                outcomes.append((i, False, UnitFailure(i, units[i], type(e).__name__, str(e))))
            bar.update(1)
    return outcomes


def ensure_ray(cfg: ExecutorConfig) -> float:
    """Start (or join) Ray for ``cfg`` unless it is already up; returns the seconds it took.

    A Ray already initialised in this process (by an earlier call, a test fixture or the
    user) is reused as it is, so a tool that runs several fan-outs pays the start-up once.
    """
    require_ray()
    import ray

    if ray.is_initialized():
        return 0.0
    t0 = time.perf_counter()
    if cfg.ray_address is None:
        # "local" (not None): a RAY_ADDRESS in the environment must not silently turn a
        # laptop run into a cluster run; joining one is asked for with --ray-address.
        ray.init(address="local", num_cpus=cfg.workers or os.cpu_count(),
                 include_dashboard=False)
    else:
        ray.init(address=cfg.ray_address)
    return time.perf_counter() - t0


def _run_ray(fn: Callable, units: list, cfg: ExecutorConfig, bar: tqdm) -> list[tuple]:
    ensure_ray(cfg)
    import ray
    from ray.exceptions import NodeDiedError, OutOfMemoryError, RayError, WorkerCrashedError

    remote = ray.remote(_call_unit).options(
        num_cpus=cfg.cpus_per_unit,
        num_gpus=cfg.gpus_per_unit,
        max_retries=cfg.max_retries,  # a lost worker's unit runs again, once by default
        retry_exceptions=False,  # _call_unit catches them anyway: user errors are recorded
    )
    fn_ref = ray.put(fn)  # one copy of fn (and what a partial binds) for all tasks
    index_of = {remote.remote(fn_ref, i, u): i for i, u in enumerate(units)}
    pending = list(index_of)
    outcomes = []
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index_of[ref]
                try:
                    outcomes.append(ray.get(ref))
                except RayError as e:  # the task never returned: worker, node or memory lost
                    lost = isinstance(e, WorkerCrashedError | NodeDiedError | OutOfMemoryError)
                    note = f" (after {cfg.max_retries} retry)" if lost and cfg.max_retries else ""
                    outcomes.append((i, False, UnitFailure(
                        i, units[i], type(e).__name__, " ".join(str(e).split())[:500] + note,
                        worker_lost=lost)))
                bar.update(1)
    except BaseException:
        for ref in pending:  # Ctrl-C or a driver error: do not leave tasks running
            ray.cancel(ref, force=True)
        raise
    return outcomes


def add_executor_arguments(
    parser: argparse.ArgumentParser, workers_help: str | None = None
) -> None:
    """Add the shared scale-out flags: ``--ray``, ``--ray-address``, ``--workers``, GPUs."""
    g = parser.add_argument_group(
        "scale-out",
        "Units of work (scenes, cells, shards) run locally (see --workers) unless --ray; "
        "outputs are byte-identical whichever executor and worker count run them.",
    )
    g.add_argument("--ray", action="store_true",
                   help="run the units as Ray tasks (needs " + RAY_INSTALL_HINT + "); "
                   "without --ray-address starts a local Ray with --workers CPUs")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --ray (implies it): join a running cluster, 'auto' (the one "
                   "`ray start` runs on this machine) or host:port")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help=workers_help or "local workers: a process pool of N without --ray "
                   "(default: this process), the CPUs of the local Ray with --ray "
                   "(default: all cores)")
    g.add_argument("--ray-gpus-per-unit", type=float, default=0.0, metavar="G",
                   help="GPUs one Ray task reserves (e.g. 1 for GPU inference on a cluster)")


def executor_from_args(
    args: argparse.Namespace, default: ExecutorConfig | None = INLINE
) -> ExecutorConfig | None:
    """The ``ExecutorConfig`` the shared flags ask for (``default`` when none is given).

    ``--workers 1`` (or 0) means this process; ``--workers N`` a pool of N processes.

    Raises:
        RayNotInstalledError: ``--ray`` without Ray installed (the message says how).

    """
    if args.ray or args.ray_address is not None:
        require_ray()
        return ExecutorConfig("ray", workers=args.workers, ray_address=args.ray_address,
                              gpus_per_unit=args.ray_gpus_per_unit)
    if args.workers is not None and args.workers > 1:
        return ExecutorConfig("processes", workers=args.workers)
    if args.workers is not None:  # --workers 1 (or 0): explicitly this process
        return INLINE
    return default
