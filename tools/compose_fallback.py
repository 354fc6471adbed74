"""Alias of ``drivefuse compose-fallback`` (``eval.commands.compose_fallback``)."""

from eval.cli import run_main
from eval.commands.compose_fallback import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
