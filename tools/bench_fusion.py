"""Alias of ``drivefuse bench`` (``eval.commands.bench_fusion``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.bench_fusion import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
