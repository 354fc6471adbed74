"""Ultrasonic preprocessing: the echo ranges with their sensor geometry, and the free /
occupied evidence raster on the LiDAR pillar grid that the ultrasonic branch reads.
"""

from __future__ import annotations

import numpy as np

from calibration.sample import SyncedSample
from calibration.ultrasonic_layout import UltrasonicLayout, default_layout
from perception.backbones.lidar_inputs import pillar_grid_hw
from perception.config import ModelConfig


def ultrasonic_arrays(sample: SyncedSample) -> tuple[np.ndarray, UltrasonicLayout]:
    """(12,) float32 ranges of ``sample`` (NaN = no echo, all NaN when the ultrasonic
    sensors are missing) and the sensor layout they were measured with.
    """
    layout: UltrasonicLayout = sample.ultrasonic_layout or default_layout()
    if sample.ultrasonic is not None:
        return np.asarray(sample.ultrasonic.ranges_m, np.float32), layout
    return np.full(12, np.nan, np.float32), layout


def ultrasonic_bev(
    ranges_m: np.ndarray,
    position_m: np.ndarray,
    yaw_rad: np.ndarray,
    half_fov_rad: float,
    max_range_m: float,
    present: bool,
    cfg: ModelConfig,
) -> np.ndarray:
    """(2, Hp, Wp) float32 ultrasonic evidence on the pillar grid (zeros when absent).

    Args:
        ranges_m: (12,) echo ranges, NaN = no echo.
        position_m: (12, 3) sensor positions, ego frame.
        yaw_rad: (12,) sensor boresights, ego frame.
        half_fov_rad: half opening angle of each cone.
        max_range_m: furthest echo.
        present: whether the sample has ultrasonic data at all.
        cfg: model configuration (grid).

    """
    hw = pillar_grid_hw(cfg)
    if not present:
        return np.zeros((2, *hw), np.float32)
    from perception.ops.ultrasonic_raster import ultrasonic_raster

    return ultrasonic_raster(
        ranges_m.astype(np.float32),
        position_m.astype(np.float32),
        yaw_rad.astype(np.float32),
        half_fov_rad,
        max_range_m,
        np.asarray(cfg.grid.bev_range_m, np.float32),
        hw,
    )
