from pathlib import Path

import pytest

from sensors.sim import SimConfig, generate_dataset

# Two scenes (one mini_train, one mini_val) of 4 s: 8 keyframes, 80 LiDAR sweeps each.
TINY = SimConfig(num_scenes=2, scene_duration_s=4.0, num_workers=1, seed=0)


@pytest.fixture(scope="session")
def tiny_cfg() -> SimConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return generate_dataset(TINY, tmp_path_factory.mktemp("sim_tiny"), progress=False)


@pytest.fixture(scope="session")
def tiny_nusc(tiny_root):
    from nuscenes import NuScenes

    return NuScenes(version=TINY.version, dataroot=str(tiny_root), verbose=False)
