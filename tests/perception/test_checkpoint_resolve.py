"""Shipped checkpoints resolve by variant name from any working directory; paths win."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from perception.checkpoint import (
    SHIPPED_CHECKPOINTS_DIR,
    load_config,
    resolve_checkpoint,
    shipped_variants,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "perception" / "checkpoints"


def test_every_shipped_folder_is_a_variant_and_resolves_from_another_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # nothing named like a variant here
    expected = sorted(d.name for d in SHIPPED.iterdir() if (d / "model.pt").is_file())
    assert len(expected) >= 9 and list(shipped_variants()) == expected
    for name in expected:
        assert resolve_checkpoint(name) == SHIPPED / name
    assert SHIPPED_CHECKPOINTS_DIR == SHIPPED
    assert load_config("gated").fusion.kind == "gated"


def test_an_existing_path_wins_over_a_variant_name(tmp_path, monkeypatch):
    mine = tmp_path / "gated"
    shutil.copytree(SHIPPED / "lidar_only", mine)
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("gated") == Path("gated")  # the local folder, not the shipped one
    assert load_config("gated").variant == "lidar_only"
    assert resolve_checkpoint(mine / "model.pt") == mine


def test_unknown_name_and_incomplete_folder_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    unknown = r"^checkpoint gatd: missing model\.pt .*shipped: camera_only, concat_conv"
    with pytest.raises(FileNotFoundError, match=unknown):
        resolve_checkpoint("gatd")
    with pytest.raises(FileNotFoundError, match="nor a shipped variant"):
        resolve_checkpoint("some/where/gated")  # a path that does not exist is not a name
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"half: missing model\.pt"):
        resolve_checkpoint("half")
