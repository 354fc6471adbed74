"""Provenance records the data by a machine-independent name, never an absolute path."""

from __future__ import annotations

import json
from pathlib import Path

from perception.train import provenance_dataroot

REPO = Path(__file__).resolve().parents[2]


def test_dataroot_inside_the_repository_is_relative(monkeypatch):
    monkeypatch.chdir(REPO / "tests")
    assert provenance_dataroot("../data/sim-trainval") == "data/sim-trainval"
    assert provenance_dataroot(REPO / "data" / "x") == "data/x"


def test_dataroot_elsewhere_is_its_folder_name(tmp_path):
    assert provenance_dataroot(tmp_path / "nuscenes") == "nuscenes"


def test_shipped_checkpoints_record_no_absolute_path():
    files = sorted((REPO / "perception" / "checkpoints").glob("*/provenance.json"))
    assert files
    for f in files:
        root = json.loads(f.read_text())["dataroot"]
        assert not Path(root).is_absolute(), f"{f}: {root}"
