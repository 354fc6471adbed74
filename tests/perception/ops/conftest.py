from pathlib import Path

import numpy as np
import pytest

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
    rng = np.random.default_rng(7)
    parts = []
    for k in range(10):
        p = real_sweep.copy()
        yaw = np.deg2rad(0.3 * k)
        c, s = np.cos(yaw), np.sin(yaw)
        x, y = p[:, 0].copy(), p[:, 1].copy()
        p[:, 0] = c * x - s * y + 0.4 * k
        p[:, 1] = s * x + c * y
        p[:, :3] += rng.normal(0.0, 0.02, size=(len(p), 3)).astype(np.float32)
        p[:, 4] = np.float32(0.05 * k)
        parts.append(p)
    return np.concatenate(parts).astype(np.float32)
