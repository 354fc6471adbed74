"""Alias of ``drivefuse train`` (``eval.commands.train``); see its ``--help``.

The script path ``torchrun --nproc_per_node N tools/train.py ...`` runs in a checkout.
"""

from eval.cli import run_main
from eval.commands.train import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
