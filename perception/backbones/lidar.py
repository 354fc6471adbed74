"""LiDAR branch: pillars (from the voxelization kernel) -> pillar feature net -> scatter -> 2D CNN.

The kernel turns multi-sweep points into pillars on the (fine) pillar grid; the pillar feature
net (PointPillars' PFN: a shared linear layer per point and a max over the pillar) gives one
vector per pillar; the vectors are scattered into a dense canvas with gradients (torch
indexing); a strided conv brings the canvas to the BEV grid and residual blocks add context.
For the ``serial`` variant, per-point camera features ("painting") are appended to every point
before the PFN.
"""

from __future__ import annotations

import torch
from torch import nn

from perception.backbones.common import BasicBlock, conv_bn_relu
from perception.config import GridConfig, LidarConfig


class PillarFeatureNet(nn.Module):
    """(M, P, C_in) points per pillar + (M,) counts -> (M, C_out) pillar features."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        # The point columns live on very different scales (std on synthetic drives: x, y
        # ~17 m, intensity ~13, offsets ~0.2 m, time lag 0.15 s). Without normalisation the
        # linear layer needs ~100x larger weights on the time lag than on x to use it at all,
        # which a short AdamW run never reaches, so velocity (read from the lag) was not
        # learned. A non-affine batch norm over the real points puts every column on unit
        # scale, whatever the dataset's units (nuScenes intensity 0-255, KITTI 0-1).
        self.input_norm = nn.BatchNorm1d(c_in, affine=False)
        self.linear = nn.Linear(c_in, c_out, bias=False)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, points: torch.Tensor, num_points: torch.Tensor) -> torch.Tensor:
        """Shared per-point MLP then max over the valid points of each pillar."""
        m, p, _ = points.shape
        if m == 0:
            return points.new_zeros((0, self.linear.out_features))
        valid = torch.arange(p, device=points.device)[None, :] < num_points[:, None]  # (M, P)
        x = self.linear(self.input_norm(points[valid]))  # only real points shape the stats
        x = torch.relu(self.norm(x))
        dense = x.new_zeros((m, p, x.shape[-1]))
        dense[valid] = x
        # ReLU output >= 0, so the zero padding never wins the max over a non-empty pillar.
        return dense.max(dim=1).values


def scatter_pillars(
    feats: torch.Tensor, coords: torch.Tensor, batch_size: int, grid_hw: tuple[int, int]
) -> torch.Tensor:
    """(M, C) pillar features at (M, 4) [b, z, y, x] -> (B, C, H, W) dense canvas (zeros)."""
    h, w = grid_hw
    c = feats.shape[-1]
    canvas = feats.new_zeros((batch_size * h * w, c))
    flat = coords[:, 0] * (h * w) + coords[:, 2] * w + coords[:, 3]
    canvas = canvas.index_copy(0, flat, feats)
    return canvas.view(batch_size, h, w, c).permute(0, 3, 1, 2).contiguous()


class LidarBackbone(nn.Module):
    """Pillars -> (B, C, H, W) LiDAR BEV map on the BEV grid."""

    def __init__(self, lidar: LidarConfig, grid: GridConfig, paint_channels: int = 0) -> None:
        super().__init__()
        self.stride = round(grid.cell_m / lidar.pillar_m)
        self.pillar_hw = (grid.height * self.stride, grid.width * self.stride)
        self.pfn = PillarFeatureNet(lidar.point_channels + 6 + paint_channels, lidar.pfn_channels)
        c = lidar.bev_channels
        self.down = conv_bn_relu(lidar.pfn_channels, c, stride=self.stride)
        self.blocks = nn.Sequential(*[BasicBlock(c, c) for _ in range(lidar.num_blocks)])
        # Context path: each stage halves the resolution, widening the receptive field cheaply
        # (large vehicles; the motion trail that velocity is read from). Every stage's output
        # is brought back to BEV resolution and merged with a 1x1 conv.
        if lidar.context_stages < 1:
            raise ValueError("LidarConfig.context_stages must be >= 1")
        self.low = nn.Sequential(BasicBlock(c, c, stride=2), BasicBlock(c, c))
        self.lower = nn.ModuleList(
            nn.Sequential(BasicBlock(c, c, stride=2), BasicBlock(c, c))
            for _ in range(lidar.context_stages - 1)
        )
        self.merge = conv_bn_relu((1 + lidar.context_stages) * c, c, kernel=1)
        self.out_channels = c

    def forward(
        self,
        pillars: torch.Tensor,
        coords: torch.Tensor,
        num_points: torch.Tensor,
        batch_size: int,
        painted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pillar features -> BEV map.

        Args:
            pillars: (M, P, 11) kernel features [x, y, z, intensity, time_lag, offsets].
            coords: (M, 4) int64 [b, z, y, x] on the pillar grid.
            num_points: (M,) int64 real points per pillar.
            batch_size: B.
            painted: (M, P, C_paint) camera features per point (serial fusion) or None.

        Returns:
            (B, C, H, W).

        """
        if painted is not None:
            pillars = torch.cat([pillars, painted], dim=-1)
        feats = self.pfn(pillars, num_points)
        canvas = scatter_pillars(feats, coords, batch_size, self.pillar_hw)
        x = self.blocks(self.down(canvas))
        y = self.low(x)
        levels = [x, nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest")]
        for stage in self.lower:
            y = stage(y)
            levels.append(nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest"))
        return self.merge(torch.cat(levels, dim=1))


def gather_paint(img_feats: torch.Tensor, paint_index: torch.Tensor) -> torch.Tensor:
    """Point painting by gather (differentiable w.r.t. the image features).

    Args:
        img_feats: (B, K, C, h, w) image features.
        paint_index: (M, P) flat index into (B, K, h, w) from
            ``perception.backbones.lidar_inputs.paint_index``,
            -1 where no camera sees the point.

    Returns:
        (M, P, C) camera features per pillar point (zeros where unseen or padding).

    """
    c = img_feats.shape[2]
    flat = img_feats.permute(0, 1, 3, 4, 2).reshape(-1, c)
    seen = paint_index >= 0
    painted = flat[paint_index.clamp(min=0).reshape(-1)].view(*paint_index.shape, c)
    return painted * seen[..., None].to(painted.dtype)
