"""Alias of ``drivefuse bench-replay`` (``eval.commands.bench_replay``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.bench_replay import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
