"""Bad checkpoint files: a clear error naming the file and the fault, never unsafe loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from perception.checkpoint import CheckpointError, load_config, read_state_dict
from perception.config import config_to_dict, preset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint folder with a valid tiny config and a small, valid weights file."""
    (tmp_path / "config.json").write_text(json.dumps(config_to_dict(preset("tiny", "gated"))))
    torch.save({"w": torch.ones(3), "b": torch.zeros(2)}, tmp_path / "model.pt")
    return tmp_path


def test_valid_weights_read(ckpt):
    state = read_state_dict(ckpt / "model.pt")
    assert sorted(state) == ["b", "w"] and state["w"].tolist() == [1.0, 1.0, 1.0]


def test_empty_weights_named(ckpt):
    (ckpt / "model.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model.pt: the weights file is empty \(0 bytes\)"):
        read_state_dict(ckpt / "model.pt")


def test_truncated_weights_named(ckpt):
    raw = (ckpt / "model.pt").read_bytes()
    (ckpt / "model.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"model.pt: truncated or not a torch weights file"):
        read_state_dict(ckpt / "model.pt")


class _Payload:
    """Any pickled object that is not a tensor: the weights-only loader must refuse it."""


def test_pickled_object_is_refused_without_suggesting_unsafe_loading(ckpt):
    torch.save({"model": _Payload()}, ckpt / "model.pt")
    with pytest.raises(CheckpointError) as e:
        read_state_dict(ckpt / "model.pt")
    msg = str(e.value)
    assert "model.pt: not a weights-only state dict (it holds the Python object " in msg
    assert "_Payload" in msg
    for hint in ("weights_only", "can still be loaded", "trust", "safe_globals"):
        assert hint not in msg, hint


def test_non_state_dict_is_refused(ckpt):
    torch.save([torch.ones(2)], ckpt / "model.pt")
    with pytest.raises(CheckpointError, match=r"model.pt: expected a state dict .* got list"):
        read_state_dict(ckpt / "model.pt")
    torch.save({"epoch": 3, "w": torch.ones(1)}, ckpt / "model.pt")
    with pytest.raises(CheckpointError, match="got dict with non-tensor entries"):
        read_state_dict(ckpt / "model.pt")


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("lidar", "max_pillars", 0, "lidar.max_pillars must be > 0"),
        ("lidar", "max_pillars", "12000", "lidar.max_pillars must be int"),
        ("lidar", "num_blocks", 1.5, "lidar.num_blocks must be int"),
        ("detection", "score_threshold", 1.5, r"detection.score_threshold must be in \[0, 1\]"),
        ("detection", "top_k", -4, "detection.top_k must be > 0"),
        ("detection", "branch_convs", 1, "detection.branch_convs must be bool"),
        ("train", "modality_dropout", [0.1, 1.2, 0.0], "train.modality_dropout must be in"),
        ("grid", "cell_m", 0.0, "grid.cell_m must be > 0"),
        ("lidar", "pillar_m", 0, "lidar.pillar_m must be > 0"),  # would divide by zero
        ("grid", "x_range_m", [10.0, -10.0], "grid.x_range_m must be .min, max. with min < max"),
        ("camera", "image_hw", [100, 176], r"camera.image_hw \(100, 176\) must be multiples"),
        ("camera", "depth_bins_m", [5.0, 2.0, 24], "camera.depth_bins_m must be"),
        ("planning", "dt_s", float("nan"), "not valid JSON .*NaN and Infinity are not JSON"),
        ("fusion", "modalities", "camera", "fusion.modalities must be a list"),
    ],
)
def test_config_types_and_ranges_named(ckpt, section, field, value, message):
    data = json.loads((ckpt / "config.json").read_text())
    data[section][field] = value
    (ckpt / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"config.json: {message}"):
        load_config(ckpt)


def test_shipped_and_preset_configs_pass(ckpt):
    assert load_config(ckpt).name == "tiny_gated"
    for cfg_file in sorted((REPO / "perception" / "checkpoints").glob("*/config.json")):
        load_config(cfg_file.parent)
