"""eval.cli.run_main: bad input -> one stderr line naming the fault, exit 2; --debug re-raises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eval.cli import run_main
from sensors.readers import SensorFileError

REPO = Path(__file__).resolve().parents[2]


def _bad(argv: list[str]) -> int:
    raise SensorFileError(f"/data/x.pcd.bin: size 7 bytes is not a multiple of 20 ({argv})")


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert run_main(_bad, ["--x"], prog="tool") == 2
    err = capsys.readouterr().err
    assert err == "tool: error: /data/x.pcd.bin: size 7 bytes is not a multiple of 20 (['--x'])\n"


def test_debug_flag_reraises_and_is_not_passed_on(monkeypatch):
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        raise FileNotFoundError("missing.json")

    with pytest.raises(FileNotFoundError):
        run_main(main, ["--a", "--debug"])
    assert seen == [["--a"]]
    monkeypatch.setenv("DRIVEFUSE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_main(main, [])


def test_return_code_passes_through_and_bugs_are_not_hidden(monkeypatch):
    assert run_main(lambda argv: 3, []) == 3
    assert run_main(lambda argv: None, []) == 0
    monkeypatch.setattr(sys, "argv", ["prog", "--debug", "--b"])
    got: list[list[str]] = []
    assert run_main(lambda: got.append(sys.argv[1:])) == 0  # a main() that reads sys.argv
    assert got == [["--b"]] and sys.argv == ["prog", "--debug", "--b"]

    def buggy(argv: list[str]) -> int:
        raise TypeError("a bug, not bad input")

    with pytest.raises(TypeError):
        run_main(buggy, [])


def test_evaluate_tool_missing_tables_is_one_line_naming_the_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "evaluate.py"), "--results",
         str(tmp_path / "nope.json"), "--dataroot", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("evaluate.py: error: ") and str(tmp_path / "v1.0-mini") in lines[0]
