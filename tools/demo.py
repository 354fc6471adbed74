"""Alias of ``drivefuse demo`` (``eval.commands.demo``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.demo import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
