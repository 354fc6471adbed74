"""Ultrasonic branch: the near-field free/occupied raster (kernel) -> small CNN on the BEV grid."""

from __future__ import annotations

import torch
from torch import nn

from perception.backbones.common import conv_bn_relu
from perception.config import GridConfig, LidarConfig, UltrasonicConfig


class UltrasonicBackbone(nn.Module):
    """(B, 2, Hp, Wp) raster on the pillar grid -> (B, C, H, W) on the BEV grid."""

    def __init__(self, cfg: UltrasonicConfig, grid: GridConfig, lidar: LidarConfig) -> None:
        super().__init__()
        stride = round(grid.cell_m / lidar.pillar_m)
        c = cfg.channels
        self.net = nn.Sequential(conv_bn_relu(2, c, stride=stride), conv_bn_relu(c, c))
        self.out_channels = c

    def forward(self, raster: torch.Tensor) -> torch.Tensor:
        """Near-field evidence -> features (zeros stay near zero: BN sees mostly empty maps)."""
        return self.net(raster)
