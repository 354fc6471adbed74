"""Layering: geometry (``calibration``) depends on no reader or dataset, only the frame types."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CALIBRATION = Path(__file__).resolve().parents[2] / "calibration"
ALLOWED_SENSORS = {"sensors.types"}  # the frame-type leaf


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):  # function-level (lazy) imports count too
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_calibration_imports_nothing_from_sensors_but_the_frame_types():
    offenders = {
        f"{p.name}: {m}"
        for p in sorted(CALIBRATION.glob("*.py"))
        for m in _imported_modules(p)
        if (m == "sensors" or m.startswith("sensors.")) and m not in ALLOWED_SENSORS
    }
    assert not offenders, offenders


def test_frame_type_leaf_imports_nothing_of_ours():
    ours = {m for m in _imported_modules(CALIBRATION.parent / "sensors" / "types.py")
            if m.split(".")[0] in {"sensors", "calibration", "perception", "eval"}}
    assert not ours, ours


def test_importing_all_of_calibration_loads_no_sensors_module_but_the_leaf():
    code = (
        "import importlib, pkgutil, sys, calibration\n"
        "for m in pkgutil.iter_modules(calibration.__path__):\n"
        "    importlib.import_module('calibration.' + m.name)\n"
        "print(sorted(k for k in sys.modules if k.startswith('sensors')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=CALIBRATION.parent).stdout.strip()
    assert out == "['sensors', 'sensors.types']"
