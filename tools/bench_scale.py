"""Alias of ``drivefuse bench-scale`` (``eval.commands.bench_scale``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.bench_scale import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
