"""Alias of ``drivefuse train-refine`` (``eval.commands.train_refine``)."""

from eval.cli import run_main
from eval.commands.train_refine import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
