"""Alias of ``drivefuse replay`` (``eval.commands.replay``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.replay import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
