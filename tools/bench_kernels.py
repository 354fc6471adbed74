"""Alias of ``drivefuse bench-kernels`` (``eval.commands.bench_kernels``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.bench_kernels import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
