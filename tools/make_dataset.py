"""Alias of ``drivefuse make-dataset`` (``eval.commands.make_dataset``); see its ``--help``."""

from eval.cli import run_main
from eval.commands.make_dataset import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
