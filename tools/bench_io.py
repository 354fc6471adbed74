"""Alias of ``drivefuse bench-io`` (``eval.commands.bench_io``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.bench_io import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
