from pathlib import Path

import numpy as np
import pytest

from sensors.synthetic_sample import accumulated_sweeps as accumulate

FRAME_DIR = Path(__file__).resolve().parents[3] / "../shared/data/nuscenes-frame"

@pytest.fixture(scope="session")
def real_sweep() -> np.ndarray:
    """The real nuScenes LIDAR_TOP sweep, (N, 5) float32 [x, y, z, intensity, ring]."""
    files = sorted(FRAME_DIR.glob("*LIDAR_TOP*.pcd.bin"))
    if not files:
        pytest.skip(f"real nuScenes frame not found under {FRAME_DIR.resolve()}")
    pts = np.fromfile(files[0], dtype=np.float32).reshape(-1, 5)
    assert pts.shape[0] > 30000
    return pts


@pytest.fixture(scope="session")
def accumulated_sweeps(real_sweep) -> np.ndarray:
    """10 sweeps like multi-sweep accumulation: the real sweep seen from an ego moving ~8 m/s
    and turning slightly (0.4 m and 0.3 deg per 50 ms sweep) plus 2 cm jitter, (N, 5) with the
    time lag in column 4."""
    return accumulate(real_sweep)
