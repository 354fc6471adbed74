"""The executor seam: the same units give the same merged bytes inline, in processes, on Ray."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eval.executor import (
    INLINE,
    PARENT_POLL_S,
    RAY_INSTALL_HINT,
    ExecutorConfig,
    RayNotInstalledError,
    UnitsFailedError,
    add_executor_arguments,
    ensure_ray,
    executor_from_args,
    run_units,
)


def _unit(spec: tuple[int, int]) -> dict:
    """A unit whose result depends only on its inputs; unit 0 is slow, so it finishes last."""
    seed, n = spec
    if seed == 0:
        time.sleep(0.4)  # completion order != unit order: a merge by completion would show
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    x = np.random.default_rng(seed).normal(size=n)
    return {"seed": seed, "sum": float(x.sum()), "first": x[:3].tolist()}


UNITS = [(0, 50), (1, 10), (2, -1), (3, 7), (4, 0), (5, 33)]


def _merged(res) -> bytes:
    return json.dumps([r for _, r in res.completed()]).encode()


def _check(res) -> None:
    assert res.missing == (2,)
    (f,) = res.failures
    assert f.index == 2 and f.unit == (2, -1)
    assert f.error_type == "ValueError" and "got -1" in f.message
    assert "raise ValueError" in f.traceback and not f.worker_lost
    assert [i for i, _ in res.completed()] == [0, 1, 3, 4, 5]
    assert res.results[2] is None
    assert "5/6 units done" in res.summary() and "#2 (2, -1)" in res.summary()


def test_inline_records_the_failure_and_finishes_the_rest():
    res = run_units(_unit, UNITS, INLINE, progress=False)
    _check(res)
    assert res.results[1] == _unit((1, 10))
    with pytest.raises(UnitsFailedError, match=r"#2 \(2, -1\)"):
        res.require_all()
    assert run_units(_unit, UNITS[:2], progress=False).require_all()[0]["seed"] == 0


def test_process_pool_merges_in_unit_order():
    inline = run_units(_unit, UNITS, INLINE, progress=False)
    pooled = run_units(_unit, UNITS, ExecutorConfig("processes", workers=2), progress=False)
    _check(pooled)
    assert _merged(pooled) == _merged(inline)


def _paint_unit(n: int) -> float:
    """A unit that runs a parallel Numba kernel (point painting) in the worker."""
    from perception.ops.painting import paint_points

    rng = np.random.default_rng(n)
    xyz = rng.uniform(-20, 20, (n, 3)).astype(np.float32)
    proj = np.tile(np.array([[1.0, 0, 0, 8], [0, 1.0, 0, 8], [0, 0, 0, 1.0]]), (2, 1, 1))
    feats = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    return float(paint_points(xyz, proj, feats, np.array([True, True])).sum())


def test_process_pool_after_the_parent_ran_a_parallel_kernel():
    # The parent launches Numba's OpenMP pool (as every drivefuse command does when it sets
    # its threads and runs a kernel); a plain-fork pool's children then abort on their first
    # parallel kernel and every unit is lost.
    # (tests/conftest.py restores this worker's thread counts afterwards.)
    from perception.threads import set_cpu_threads

    set_cpu_threads(2)
    expected = [_paint_unit(n) for n in (500, 900)]
    res = run_units(_paint_unit, [500, 900], ExecutorConfig("processes", workers=2),
                    progress=False)
    assert not res.failures, res.summary()
    assert list(res.results) == expected


def _die_in_pool(i: int) -> int:
    if i == 1:
        os._exit(3)
    return i


def test_process_pool_records_a_lost_worker():
    res = run_units(_die_in_pool, [0, 1], ExecutorConfig("processes", workers=2), progress=False)
    assert 1 in res.missing
    lost = {f.index: f for f in res.failures}[1]
    assert lost.worker_lost and lost.error_type == "BrokenProcessPool"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    # Workers import this test module by value (it is not on their sys.path).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = ExecutorConfig("ray", workers=2)
    ensure_ray(cfg)  # left running: later Ray tests in this process reuse it (no 5 s restart)
    return cfg


def _die_first_time(marker: str) -> str:
    p = Path(marker)
    if not p.exists():
        p.write_text("died once")
        os._exit(1)  # the worker process is lost, as when a node goes away
    return "second attempt"


def _always_die(_: str) -> str:
    os._exit(1)


def test_ray_matches_inline_bytes_and_records_failures(local_ray):
    inline = run_units(_unit, UNITS, INLINE, progress=False)
    res = run_units(_unit, UNITS, local_ray, progress=False)
    _check(res)
    assert _merged(res) == _merged(inline)
    assert res.executor.startswith("ray")


def test_ray_retries_a_lost_worker_once(local_ray, tmp_path):
    marker = str(tmp_path / "marker")
    res = run_units(_die_first_time, [marker], local_ray, progress=False)
    assert res.require_all() == ["second attempt"]
    gone = run_units(_always_die, ["x"], local_ray, progress=False)
    (f,) = gone.failures
    assert f.worker_lost and f.unit == "x" and "after 1 retry" in f.message
    # The retry is the one max_retries asks for, not more: with none, it is lost at once.
    marker2 = str(tmp_path / "marker2")
    once = run_units(_die_first_time, [marker2],
                     ExecutorConfig("ray", max_retries=0), progress=False)
    assert once.missing == (0,) and once.failures[0].worker_lost


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_executor_arguments(p)
    return p.parse_args(argv)


def test_flags_choose_the_executor():
    assert executor_from_args(_parse([])) == INLINE
    default = ExecutorConfig("processes", workers=2)
    assert executor_from_args(_parse([]), default) == default
    assert executor_from_args(_parse(["--workers", "1"]), default) == INLINE
    assert executor_from_args(_parse(["--workers", "3"])) == ExecutorConfig("processes", 3)
    if "ray" in sys.modules or _ray_importable():
        cfg = executor_from_args(_parse(["--ray", "--workers", "2"]))
        assert cfg == ExecutorConfig("ray", workers=2)
        cfg = executor_from_args(_parse(["--ray-address", "auto", "--ray-gpus-per-unit", "1"]))
        assert cfg.kind == "ray" and cfg.ray_address == "auto" and cfg.gpus_per_unit == 1.0


def _ray_importable() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def test_ray_flag_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(RayNotInstalledError) as e:
        executor_from_args(_parse(["--ray"]))
    assert RAY_INSTALL_HINT in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RayNotInstalledError):
        run_units(functools.partial(int), ["1"], ExecutorConfig("ray"), progress=False)
    assert executor_from_args(_parse(["--workers", "2"])).kind == "processes"


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="kind"):
        ExecutorConfig("threads")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        ExecutorConfig("processes", workers=0)
    with pytest.raises(ValueError, match="ray_address"):
        ExecutorConfig("inline", ray_address="auto")


WORKER_MODULE = '''
import os, sys, time
from pathlib import Path

def sleepy(path: str) -> int:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)
    return 0

if __name__ == "__main__":
    from eval.executor import ExecutorConfig, run_units
    run_units(sleepy, [sys.argv[1]], ExecutorConfig("processes", workers=1), progress=False)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie awaiting its reaper is gone too
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_a_killed_pool_owner_takes_its_workers_with_it(tmp_path):
    """SIGKILL skips the pool's shutdown; the workers (children of the fork server, not of
    the owner) must still end instead of computing on for minutes beside the rerun."""
    import signal
    import subprocess

    (tmp_path / "pool_owner.py").write_text(WORKER_MODULE)
    marker = tmp_path / "worker.pid"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    owner = subprocess.Popen([sys.executable, str(tmp_path / "pool_owner.py"), str(marker)],
                             env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.is_file() or not marker.read_text():
            assert owner.poll() is None, "the pool owner exited before its worker started"
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        worker = int(marker.read_text())
        assert _alive(worker)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10 * PARENT_POLL_S + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its killed pool owner"
    finally:
        owner.kill()
        if marker.is_file() and marker.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(marker.read_text()), signal.SIGKILL)
