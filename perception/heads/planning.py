"""Planning head: 6 waypoints over 3 s from the fused BEV map, the route command and (optionally)
the ego status (speed, yaw rate) - switchable for the ego-status ablation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from perception.backbones.common import conv_bn_relu
from perception.config import PlanningConfig
from sensors.types import DrivingCommand


class PlanningHead(nn.Module):
    """(B, C, H, W) + command (B,) + ego status (B, 2) -> waypoints (B, T, 2) ego frame, metres."""

    def __init__(self, c_in: int, cfg: PlanningConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = 32
        self.conv = nn.Sequential(conv_bn_relu(c_in, c, stride=2), conv_bn_relu(c, c, stride=2))
        self.pool_hw = (4, 4)
        n_in = c * self.pool_hw[0] * self.pool_hw[1] + 3 + (2 if cfg.use_ego_status else 0)
        self.mlp = nn.Sequential(
            nn.Linear(n_in, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.num_waypoints * 2),
        )

    def forward(
        self, bev: torch.Tensor, command: torch.Tensor, ego_status: torch.Tensor
    ) -> torch.Tensor:
        """Waypoints at +dt .. +T*dt seconds."""
        x = F.adaptive_avg_pool2d(self.conv(bev), self.pool_hw).flatten(1)
        n_cmd = len(DrivingCommand)
        parts = [x, F.one_hot(command.long().clamp(0, n_cmd - 1), n_cmd).to(x.dtype)]
        if self.cfg.use_ego_status:
            parts.append(ego_status.to(x.dtype))
        out = self.mlp(torch.cat(parts, dim=1)).view(-1, self.cfg.num_waypoints, 2)
        # Waypoints are cumulative: predict per-step displacements, so every output is local.
        return out.cumsum(dim=1)
