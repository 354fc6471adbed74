"""The ``drivefuse`` command: every subcommand dispatches, its --help names inputs and outputs,
bad commands exit 2, and the tools/*.py scripts are thin aliases holding no logic."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from eval import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", [n for n, _ in cli.COMMANDS])
def test_every_command_help_names_its_inputs_and_outputs(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: drivefuse {name} ")
    assert "\nInputs:" in out and "\nOutputs:" in out


def test_top_level_help_lists_every_command_and_bad_commands_exit_2(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, _ in cli.COMMANDS:
        assert f"\n  {name} " in out
    assert cli.main(["no-such-job"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("drivefuse: error: unknown command 'no-such-job'")
    assert len(err.strip().splitlines()) == 1
    assert cli.main([]) == cli.EXIT_BAD_INPUT  # no command: the usage, on stderr
    assert "commands:" in capsys.readouterr().err
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("drivefuse ")


def test_bad_input_in_a_command_is_one_line_named_after_the_subcommand(tmp_path, capsys):
    rc = cli.main(["bench-io", "--frame", str(tmp_path / "nowhere")])
    assert rc == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == f"drivefuse bench-io: error: no frame.json in {tmp_path / 'nowhere'}; " \
                  "use --dataroot\n"


def test_console_script_is_the_dispatcher():
    # From pyproject itself: a stale drivefuse.egg-info in the checkout can shadow the
    # installed metadata (the wheel test in test_install.py runs the installed script).
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["drivefuse"].partition(":")
    assert getattr(importlib.import_module(module), attr) is cli.main


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "tools").glob("*.py")))
def test_tools_are_aliases_of_a_command(script):
    tree = ast.parse((REPO / "tools" / script).read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and
                                         isinstance(n.value, ast.Constant))]  # docstring
    # Nothing but imports and the __main__ guard: no function, no constant, no sys.path edit.
    assert all(isinstance(n, (ast.Import, ast.ImportFrom)) or _is_main_guard(n) for n in body)
    imports = {(n.module, a.name) for n in body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("eval.commands." + script.removesuffix(".py"), "main") in imports
    (guard,) = [n for n in body if _is_main_guard(n)]
    assert ast.unparse(guard.body[0]) == "raise SystemExit(run_main(main))"
    # The command the alias runs is one `drivefuse` dispatches to.
    names = {n for n, _ in cli.COMMANDS}
    assert any(cli.command_main(n).__module__ == f"eval.commands.{script[:-3]}" for n in names)
