"""Fixtures shared by the test packages: the real nuScenes keyframe in ../shared/data."""

import json
from pathlib import Path

import numpy as np
import pytest

from sensors.readers import read_lidar_file

FRAME_DIR = Path(__file__).resolve().parents[1] / "../shared/data/nuscenes-frame"


@pytest.fixture(scope="session")
def frame_dir() -> Path:
    if not (FRAME_DIR / "frame.json").is_file():
        pytest.skip(f"real nuScenes keyframe not found at {FRAME_DIR.resolve()}")
    return FRAME_DIR


@pytest.fixture(scope="session")
def frame(frame_dir) -> dict:
    return json.loads((frame_dir / "frame.json").read_text())


@pytest.fixture(scope="session")
def frame_lidar(frame_dir, frame):
    return read_lidar_file(frame_dir / frame["lidar"]["file"], frame["lidar"]["timestamp_us"])


@pytest.fixture(scope="session")
def frame_matrices(frame) -> dict:
    return {
        ch: {k: np.array(v) for k, v in c.items() if isinstance(v, list)}
        for ch, c in frame["cameras"].items()
    }


@pytest.fixture(autouse=True)
def _restore_cpu_threads():
    """Every test starts with the thread counts the worker started with.

    Units run inline (``eval.sharding``) set this process's torch and Numba threads, and
    torch's convolutions round differently at other thread counts: a module-scoped result
    computed before such a test would then differ in the last bits from one computed after.
    """
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    yield
    if (torch.get_num_threads(), numba.get_num_threads()) != before:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
