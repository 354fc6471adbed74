"""A guard for command-line tools: bad input gives one line naming the fault, not a traceback.

Every ``tools/*.py`` ends with ``raise SystemExit(run_main(main))``. The project's bad-input
errors are all ``ValueError`` subclasses (``SensorFileError``, ``ResultsFormatError``,
``CheckpointError``, ``CalibrationError``, JSON decode errors) or ``OSError`` (a missing or
unreadable file); those print ``<prog>: error: <message>`` on stderr and exit with code 2, the
code argparse uses for a bad command line. ``--debug`` anywhere on the command line (or
``DRIVEFUSE_DEBUG=1``) lets the exception through with its traceback. Anything else (a bug)
is never caught here, so it still shows its traceback.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

DEBUG_FLAG = "--debug"
DEBUG_ENV = "DRIVEFUSE_DEBUG"
EXIT_BAD_INPUT = 2

# ValueError covers the project's own error classes (all subclass it) and json/orjson decode
# errors; OSError covers FileNotFoundError, IsADirectoryError, PermissionError; a
# weights-only torch.load refusing a payload raises UnpicklingError.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, pickle.UnpicklingError)


def _takes_argv(main: Callable[..., object]) -> bool:
    try:
        return len(inspect.signature(main).parameters) > 0
    except (TypeError, ValueError):
        return False


def run_main(
    main: Callable[..., int | None], argv: list[str] | None = None, prog: str | None = None
) -> int:
    """Run a tool's ``main`` and turn a bad-input error into one stderr line and exit code 2.

    Args:
        main: the tool's entry point, ``main(argv)`` or ``main()`` (then it reads
            ``sys.argv``); its return value (``None`` = 0) is the exit code.
        argv: the arguments (default ``sys.argv[1:]``); ``--debug`` is removed before
            ``main`` sees them.
        prog: the name in the error line (default: the script's file name).

    Returns:
        The exit code: ``main``'s, or 2 after a bad-input error.

    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    prog = prog or Path(sys.argv[0]).name or "drivefuse"
    try:
        if _takes_argv(main):
            rc = main(args)
        else:
            saved = sys.argv
            sys.argv = [saved[0] if saved else prog, *args]
            try:
                rc = main()
            finally:
                sys.argv = saved
    except BAD_INPUT_ERRORS as e:
        if debug:
            raise
        msg = str(e) or type(e).__name__
        # FileNotFoundError's str() is "[Errno 2] No such file or directory: 'x'": keep it, it
        # names the file; a one-line message keeps logs and shells readable.
        print(f"{prog}: error: {' '.join(msg.split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return int(rc or 0)


@contextlib.contextmanager
def staged_output_dir(out: Path, owned: Iterable[str]) -> Iterator[Path]:
    """A temporary folder beside ``out`` that replaces the job's outputs in ``out`` on success.

    The job writes everything into the yielded folder. When the block exits normally, every
    name in ``owned`` that the new run did not write is deleted from ``out`` (no stale
    metrics from an earlier run beside new ones) and each new entry is moved into ``out``
    with ``os.replace`` (same file system, so each move is atomic). Other files in ``out``
    are never touched. When the block raises, ``out`` is left exactly as it was.

    Args:
        out: the final output folder (created when absent).
        owned: file and folder names this job writes (and so may replace or remove).

    Yields:
        The staging folder.

    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield stage
        new = {p.name for p in stage.iterdir()}
        for name in set(owned) | new:
            old = out / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        for name in sorted(new):
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# ``drivefuse <command>``: (name, what it does) in the order ``drivefuse --help`` lists them.
# Each command's own ``--help`` names its inputs and outputs.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("evaluate", "score a checkpoint or a results JSON on a nuScenes-format dataroot "
                 "(devkit-identical detection metrics, planning L2, AEB)"),
    ("replay", "drive a scene tick by tick through a checkpoint: per-tick log, latency, "
               "video and Foxglove recording"),
    ("bench", "fusion benchmark: every variant clean and under corruptions and sensor faults"),
    ("train", "train a fusion variant into a checkpoint folder (torchrun for several GPUs)"),
    ("train-refine", "train the camera-crop refinement of lidar_camera_refine on its frozen "
                     "LiDAR first stage's proposals"),
    ("make-dataset", "write a synthetic nuScenes-format dataset"),
    ("demo", "the end-to-end demo: dataset, shipped checkpoints, benchmark, figures, replay"),
    ("bench-eval", "benchmark the detection evaluation against the nuscenes-devkit's"),
    ("bench-io", "benchmark sample reading (camera decode, LiDAR sweeps) against the devkit"),
    ("bench-kernels", "benchmark the perception kernels against their peers"),
    ("bench-model", "per-stage latency and peak memory of every variant"),
    ("bench-replay", "replay speed per shipped variant (ticks/s, real-time factor)"),
    ("bench-scale", "wall time of evaluation and a benchmark slice with 1 and N workers "
                    "(process pool, Ray)"),
    ("compose-fallback", "keep single-sensor models inside fused checkpoints as fallback "
                         "experts"),
)


def command_main(name: str) -> Callable[..., int | None]:
    """The ``main`` of ``drivefuse <name>``, imported only when that command runs (no torch
    import for ``drivefuse --help``).

    Raises:
        KeyError: ``name`` is not a command.

    """
    match name:
        case "demo":
            from eval.commands.demo import main
        case "bench":
            from eval.commands.bench_fusion import main
        case "evaluate":
            from eval.commands.evaluate import main
        case "replay":
            from eval.commands.replay import main
        case "train":
            from eval.commands.train import main
        case "train-refine":
            from eval.commands.train_refine import main
        case "make-dataset":
            from eval.commands.make_dataset import main
        case "bench-eval":
            from eval.commands.bench_eval import main
        case "bench-io":
            from eval.commands.bench_io import main
        case "bench-kernels":
            from eval.commands.bench_kernels import main
        case "bench-model":
            from eval.commands.bench_model import main
        case "bench-replay":
            from eval.commands.bench_replay import main
        case "bench-scale":
            from eval.commands.bench_scale import main
        case "compose-fallback":
            from eval.commands.compose_fallback import main
        case _:
            raise KeyError(name)
    return main


def _usage() -> str:
    width = max(len(n) for n, _ in COMMANDS)
    lines = [f"  {n:<{width}}  {what}" for n, what in COMMANDS]
    return (
        "usage: drivefuse <command> [options]   (drivefuse <command> --help for its inputs "
        "and outputs)\n\nMulti-sensor BEV fusion perception: datasets, training, evaluation, "
        "replay, benchmarks.\n\ncommands:\n" + "\n".join(lines) + "\n\n"
        f"Bad input prints one 'drivefuse <command>: error: ...' line and exits "
        f"{EXIT_BAD_INPUT}; {DEBUG_FLAG} (or {DEBUG_ENV}=1) shows the traceback.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """The ``drivefuse`` console script: dispatch ``drivefuse <command> ...`` to its ``main``.

    Args:
        argv: the arguments after ``drivefuse`` (default ``sys.argv[1:]``).

    Returns:
        The command's exit code; 0 for ``--help``; 2 for a missing or unknown command.

    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage(), end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_BAD_INPUT
    if args[0] == "--version":
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"drivefuse {version('drivefuse')}")
        except PackageNotFoundError:  # running from a checkout that was never installed
            print("drivefuse (not installed)")
        return 0
    name, rest = args[0], args[1:]
    prog = f"drivefuse {name}"
    try:
        cmd = command_main(name)
    except KeyError:
        known = ", ".join(n for n, _ in COMMANDS)
        print(f"drivefuse: error: unknown command {name!r} (commands: {known})", file=sys.stderr)
        return EXIT_BAD_INPUT
    # argparse takes its "usage: <prog>" from sys.argv[0]: make it the subcommand.
    saved = sys.argv
    sys.argv = [prog, *rest]
    try:
        return run_main(cmd, rest, prog=prog)
    finally:
        sys.argv = saved
