"""Alias of ``drivefuse evaluate`` (``eval.commands.evaluate``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.evaluate import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
