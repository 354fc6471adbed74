"""Alias of ``drivefuse bench-model`` (``eval.commands.bench_model``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.bench_model import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
