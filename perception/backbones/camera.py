"""Camera branch: a compact ResNet-style CNN with a light neck, and the lift-splat view transform.

The image CNN runs on all cameras of the batch at once; the depth head predicts a distribution
over ``D`` depth bins per feature pixel plus ``C`` context channels (Lift). The outer product is
pooled into the BEV grid by the cell index of every frustum point (Splat), either by the
``perception.ops.bev_pool`` kernel wrapped in an autograd Function, or by ``index_add_`` in
torch. Both give the same forward values and gradients (tests check it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from perception.backbones.common import BasicBlock, conv_bn_relu
from perception.config import CameraConfig, GridConfig


class CameraEncoder(nn.Module):
    """Images (N, 3, H, W) -> features (N, C_neck, H / s, W / s), s = ``cfg.feature_stride``."""

    def __init__(self, cfg: CameraConfig) -> None:
        super().__init__()
        c0 = cfg.stem_channels
        self.stem = nn.Sequential(conv_bn_relu(3, c0, 2), conv_bn_relu(c0, c0, 2))
        stages = []
        c_prev = c0
        for i, c in enumerate(cfg.stage_channels):
            stages.append(BasicBlock(c_prev, c, stride=1 if i == 0 else 2))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        # Neck: the last two stages (the earlier one pooled to the last one's stride) fused
        # by a 1x1 conv, so that the depth head sees both fine and semantic features.
        c_skip = cfg.stage_channels[-2] if len(cfg.stage_channels) > 1 else 0
        self.neck = conv_bn_relu(cfg.stage_channels[-1] + c_skip, cfg.stage_channels[-1], kernel=1)
        self.out_channels = cfg.stage_channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float -> (N, C, h, w)."""
        x = self.stem(images)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        if len(feats) > 1:
            skip = F.avg_pool2d(feats[-2], kernel_size=2, stride=2, ceil_mode=True)
            skip = skip[..., : x.shape[-2], : x.shape[-1]]
            x = torch.cat([x, skip], dim=1)
        return self.neck(x)


class BevPoolFunction(torch.autograd.Function):
    """Autograd wrapper of the ``perception.ops.bev_pool`` kernel (numpy, CPU)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        depth: torch.Tensor,
        feats: torch.Tensor,
        cell_index: torch.Tensor,
        num_cells: int,
    ) -> torch.Tensor:
        """(N, D, h, w) x (N, h, w, C) pooled by (N, D, h, w) cell index -> (num_cells, C)."""
        from perception.ops.bev_pool import bev_pool

        d = depth.detach().float().cpu().contiguous().numpy()
        f = feats.detach().float().cpu().contiguous().numpy()
        ci = cell_index.detach().cpu().numpy().astype(np.int32)
        out = bev_pool(d, f, ci, int(num_cells))
        ctx.save_for_backward(depth, feats, cell_index)
        return torch.from_numpy(np.asarray(out)).to(device=depth.device, dtype=torch.float32)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        """Gradients for depth and feats from the kernel's backward."""
        from perception.ops.bev_pool import bev_pool_backward

        depth, feats, cell_index = ctx.saved_tensors  # type: ignore[attr-defined]
        gd, gf = bev_pool_backward(
            grad_out.detach().float().cpu().contiguous().numpy(),
            depth.detach().float().cpu().contiguous().numpy(),
            feats.detach().float().cpu().contiguous().numpy(),
            cell_index.detach().cpu().numpy().astype(np.int32),
        )
        return (
            torch.from_numpy(np.asarray(gd)).to(depth.device, depth.dtype),
            torch.from_numpy(np.asarray(gf)).to(feats.device, feats.dtype),
            None,
            None,
        )


def bev_pool_torch(
    depth: torch.Tensor, feats: torch.Tensor, cell_index: torch.Tensor, num_cells: int
) -> torch.Tensor:
    """Pure-torch BEV pooling (``index_add_``): same contract as the kernel, any device.

    Args:
        depth: (N, D, h, w) depth probabilities.
        feats: (N, h, w, C) context features.
        cell_index: (N, D, h, w) int BEV cell per frustum point, -1 = outside the grid.
        num_cells: number of output cells.

    Returns:
        (num_cells, C) sum of ``depth * feats`` over the frustum points of each cell.

    """
    valid = cell_index >= 0
    idx = cell_index[valid].long()
    # Gather (point -> camera/pixel) first so that only points inside the grid are multiplied.
    n, d, h, w = depth.shape
    flat = valid.nonzero(as_tuple=True)
    contrib = depth[flat].unsqueeze(-1) * feats[flat[0], flat[2], flat[3]]
    out = torch.zeros((num_cells, feats.shape[-1]), dtype=contrib.dtype, device=feats.device)
    return out.index_add_(0, idx, contrib)


class LiftSplat(nn.Module):
    """Depth distribution + context per feature pixel, splatted onto the BEV grid."""

    def __init__(self, c_in: int, cam: CameraConfig, grid: GridConfig) -> None:
        super().__init__()
        self.num_depth = int(cam.depth_bins_m[2])
        self.channels = cam.feature_channels
        self.head = nn.Conv2d(c_in, self.num_depth + self.channels, 1)
        self.grid_hw = (grid.height, grid.width)
        self.pool_impl = cam.pool_impl

    def forward(
        self,
        feats: torch.Tensor,
        cell_index: torch.Tensor,
        camera_mask: torch.Tensor,
        return_depth_logits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Lift and splat.

        Args:
            feats: (B * K, C_in, h, w) image features of K cameras per sample.
            cell_index: (B, K, D, h, w) int64, -1 outside the grid or for a missing camera.
            camera_mask: (B, K) bool.
            return_depth_logits: also return the (B, K, D, h, w) depth logits (for depth
                supervision).

        Returns:
            (B, C, H, W) camera BEV features (zero where no camera sees), and the depth logits
            when asked.

        """
        b, k = camera_mask.shape
        hgrid, wgrid = self.grid_hw
        x = self.head(feats)
        logits = x[:, : self.num_depth].float()
        depth = logits.softmax(dim=1)  # (BK, D, h, w)
        ctx = x[:, self.num_depth :].float().permute(0, 2, 3, 1).contiguous()  # (BK, h, w, C)
        n_cells = hgrid * wgrid
        # Missing cameras contribute nothing; cells are offset per sample so one pool serves B.
        ci = torch.where(camera_mask[:, :, None, None, None], cell_index, -1)
        offset = (torch.arange(b, device=ci.device) * n_cells).view(b, 1, 1, 1, 1)
        ci = torch.where(ci >= 0, ci + offset, -1).flatten(0, 1)
        if self.pool_impl == "kernel" and not depth.is_cuda:
            pooled = BevPoolFunction.apply(depth, ctx, ci, b * n_cells)
        else:
            pooled = bev_pool_torch(depth, ctx, ci, b * n_cells)
        bev = pooled.view(b, hgrid, wgrid, self.channels).permute(0, 3, 1, 2).contiguous()
        if return_depth_logits:
            return bev, logits.unflatten(0, (b, k))
        return bev


class CameraBackbone(nn.Module):
    """Images -> image features -> (lift-splat) camera BEV map, with a small BEV encoder."""

    def __init__(self, cam: CameraConfig, grid: GridConfig, lift: bool = True) -> None:
        super().__init__()
        self.encoder = CameraEncoder(cam)
        self.lift = lift
        self.out_channels = cam.feature_channels
        if lift:
            self.view_transform = LiftSplat(self.encoder.out_channels, cam, grid)
            self.bev_encoder = BasicBlock(cam.feature_channels, cam.feature_channels)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K, 3, H, W) -> (B * K, C, h, w) image features."""
        return self.encoder(images.flatten(0, 1))
