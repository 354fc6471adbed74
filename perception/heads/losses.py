"""Training losses: Gaussian focal loss, masked L1 box regression, waypoint L1, task weighting."""

from __future__ import annotations

import torch
from torch import nn

from perception.box_code import NUM_REG, VELOCITY, output_to_target_units
from perception.config import LossConfig

# CenterPoint's nuScenes code weights: velocity matters less than geometry early in training.
# ``LossConfig.velocity_weight`` overrides the last two.
REG_CODE_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


def depth_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the lift depth distribution against LiDAR depth bins.

    Args:
        logits: (B, K, D, h, w) depth logits.
        target: (B, K, h, w) int64 bin, -1 where no LiDAR return was seen (ignored).

    Returns:
        Mean over supervised pixels (0 when there are none, still differentiable).

    """
    d = logits.shape[2]
    flat = logits.float().movedim(2, -1).reshape(-1, d)
    tgt = target.reshape(-1)
    if not bool((tgt >= 0).any()):
        return flat.sum() * 0.0
    return nn.functional.cross_entropy(flat, tgt, ignore_index=-1)


def gaussian_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss on (B, C, H, W) logits vs Gaussian targets, per positive.

    ``-(1-p)^2 log p`` at peaks (target == 1) and ``-(1-t)^4 p^2 log(1-p)`` elsewhere, summed
    and divided by the number of peaks (at least 1).
    """
    logits = logits.float()
    logp = nn.functional.logsigmoid(logits)
    log1mp = nn.functional.logsigmoid(-logits)
    p = logp.exp()
    pos = target.eq(1).float()
    neg_w = (1 - target).pow(4)
    pos_loss = -(((1 - p) ** 2) * logp * pos).sum()
    neg_loss = -((p**2) * log1mp * neg_w * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def regression_loss(
    reg: torch.Tensor,
    index: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    vel_mask: torch.Tensor,
    velocity_weight: float = REG_CODE_WEIGHTS[VELOCITY.start],
) -> torch.Tensor:
    """Weighted L1 at the object centres.

    Args:
        reg: (B, G, 10, H, W) predictions.
        index: (B, G, K) flat cell of each object.
        target: (B, G, K, 10).
        mask: (B, G, K) 1 for real objects.
        vel_mask: (B, G, K) 1 where the velocity target is known.
        velocity_weight: code weight of the two velocity components (per m/s of error).

    Returns:
        Scalar: mean over real objects of the code-weighted L1.

    """
    b, g, c, h, w = reg.shape
    flat = reg.float().view(b, g, c, h * w)
    pred = flat.gather(3, index[:, :, None, :].expand(b, g, c, index.shape[-1]))
    pred = pred.permute(0, 1, 3, 2)  # (B, G, K, 10)
    # Velocity outputs are in VELOCITY_UNIT_MPS; the loss compares metres per second.
    pred = pred * output_to_target_units(reg.device)
    code = (*REG_CODE_WEIGHTS[: VELOCITY.start], velocity_weight, velocity_weight)
    weights = torch.tensor(code, device=reg.device).view(1, 1, 1, NUM_REG)
    m = mask[..., None].expand_as(pred).clone()
    m[..., VELOCITY] = m[..., VELOCITY] * vel_mask[..., None]
    err = (pred - target).abs() * weights * m
    return err.sum() / mask.sum().clamp(min=1.0)


def planning_loss(
    waypoints: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """L1 over known future positions: (B, T, 2) vs (B, T, 2) with a (B, T) mask."""
    err = (waypoints.float() - target).abs().sum(-1) * mask
    return err.sum() / mask.sum().clamp(min=1.0)


class TaskWeighting(nn.Module):
    """Combine detection and planning losses: fixed weights or learned uncertainty.

    Learned: ``sum_i exp(-s_i) L_i + s_i`` with one log-variance ``s_i`` per task (Kendall,
    Gal & Cipolla 2018), so the balance adapts instead of being hand-tuned.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.log_vars = nn.Parameter(torch.zeros(2)) if cfg.learned_uncertainty else None

    def forward(
        self, heat: torch.Tensor, reg: torch.Tensor, plan: torch.Tensor
    ) -> torch.Tensor:
        """Total loss from the three parts."""
        det = self.cfg.heatmap_weight * heat + self.cfg.regression_weight * reg
        if self.log_vars is None:
            return det + self.cfg.planning_weight * plan
        s = self.log_vars
        return torch.exp(-s[0]) * det + s[0] + torch.exp(-s[1]) * plan + s[1]
