"""The ``drivefuse`` command's subcommands: one module each, argument parsing + one call.

Each module has ``main(argv) -> int``; ``eval.cli.main`` dispatches ``drivefuse <name>`` to
it, and the ``tools/*.py`` scripts are aliases of the same ``main``. The logic lives in the
packages (``eval``, ``perception``, ``sensors``); a module here only turns a command line into
that one call and prints where the outputs went. Each ``--help`` names the inputs it reads and
the outputs it writes.
"""
