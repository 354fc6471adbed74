"""Alias of ``drivefuse bench-eval`` (``eval.commands.bench_eval``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.bench_eval import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
