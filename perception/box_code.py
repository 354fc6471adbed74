"""The box regression code: what the detection head's 10 regression channels mean.

Encoding (training targets) and decoding (network output -> boxes) live together here, and
every reader indexes channels by the named slices below, never by position.

Per object, at its centre cell ``(ix, iy)`` of the BEV grid:

=========  =======  =========================================================
channels   name     meaning
=========  =======  =========================================================
0, 1       OFFSET   centre offset inside the cell, cells (0..1)
2          Z        centre height, metres (ego frame)
3, 4, 5    LOG_WLH  log of width, length, height, log(metres)
6, 7       YAW      sin(yaw), cos(yaw) (yaw = atan2(sin, cos), ego frame)
8, 9       VELOCITY vx, vy; targets in m/s, outputs in ``VELOCITY_UNIT_MPS``
=========  =======  =========================================================
"""

from __future__ import annotations

import math

import numpy as np
import torch

from perception.config import GridConfig

REG_CHANNELS = ("dx", "dy", "z", "log_w", "log_l", "log_h", "sin_yaw", "cos_yaw", "vx", "vy")
NUM_REG = len(REG_CHANNELS)
OFFSET = slice(0, 2)
Z = 2
LOG_WLH = slice(3, 6)
YAW = slice(6, 8)
SIN_YAW, COS_YAW = 6, 7
VELOCITY = slice(8, 10)
# The head outputs velocity in units of 10 m/s, so that every regression output is O(1): with
# Adam each step moves an output by a bounded amount, and a raw m/s output needed ~10x more
# steps to reach highway speeds (~25 m/s) than a short run has (they stayed near 0).
VELOCITY_UNIT_MPS = 10.0


def encode_box(
    offset_cells: tuple[float, float],
    z_m: float,
    wlh_m: tuple[float, float, float],
    yaw_rad: float,
    velocity_mps: tuple[float, float] | None,
) -> tuple[float, ...]:
    """The regression target of one box (velocity 0 where unknown; mask it in the loss)."""
    w_m, l_m, h_m = wlh_m
    vx, vy = velocity_mps if velocity_mps is not None else (0.0, 0.0)
    return (
        offset_cells[0],
        offset_cells[1],
        z_m,
        math.log(max(w_m, 1e-3)),
        math.log(max(l_m, 1e-3)),
        math.log(max(h_m, 1e-3)),
        math.sin(yaw_rad),
        math.cos(yaw_rad),
        vx,
        vy,
    )


def output_to_target_units(device: torch.device | str) -> torch.Tensor:
    """(NUM_REG,) factors that bring network outputs to target units (velocity to m/s)."""
    unit = torch.ones(NUM_REG, device=device)
    unit[VELOCITY] = VELOCITY_UNIT_MPS
    return unit


def decode_boxes(
    r: np.ndarray, ix: np.ndarray, iy: np.ndarray, grid: GridConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes from network outputs ``r`` (n, NUM_REG) at cells ``ix``, ``iy`` (n,).

    Returns:
        ``x, y, z`` (n,) centre (ego frame, metres), ``wlh`` (n, 3) metres, ``yaw`` (n,)
        radians, ``velocity`` (n, 2) m/s.

    """
    x = (ix + r[:, OFFSET.start]) * grid.cell_m + grid.x_range_m[0]
    y = (iy + r[:, OFFSET.start + 1]) * grid.cell_m + grid.y_range_m[0]
    wlh = np.exp(np.clip(r[:, LOG_WLH], -5.0, 5.0))
    yaw = np.arctan2(r[:, SIN_YAW], r[:, COS_YAW])
    vel = r[:, VELOCITY] * VELOCITY_UNIT_MPS
    return x, y, r[:, Z], wlh, yaw, vel
