"""Task heads on the fused BEV map: detection (CenterPoint-style) and planning (waypoints)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from perception.config import MODALITY_ORDER, ModelConfig
from perception.heads.detection import DetectionHead, decode_detections
from perception.heads.planning import PlanningHead

__all__ = ["DetectionHead", "HeadOutputs", "Heads", "LateFusionHeads", "PlanningHead",
           "decode_detections"]


@dataclass(frozen=True, eq=False)
class HeadOutputs:
    """Raw head outputs.

    Attributes:
        heatmap: (B, num_classes, H, W) logits, grouped class order.
        reg: (B, G, 10, H, W) box regression (``perception.box_code``).
        waypoints: (B, T, 2) planned ego positions, metres.
        depth_logits: (B, K, D, h, w) camera lift depth logits when the camera branch ran in
            training with depth targets, else None.

    """

    heatmap: torch.Tensor
    reg: torch.Tensor
    waypoints: torch.Tensor
    depth_logits: torch.Tensor | None = None


class Heads(nn.Module):
    """Detection + planning on one BEV map."""

    def __init__(self, c_in: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.detection = DetectionHead(c_in, cfg)
        self.planning = PlanningHead(c_in, cfg.planning)

    def forward(
        self, bev: torch.Tensor, command: torch.Tensor, ego_status: torch.Tensor
    ) -> HeadOutputs:
        """All head outputs for a (B, C, H, W) map."""
        heat, reg = self.detection(bev)
        return HeadOutputs(heat, reg, self.planning(bev, command, ego_status))


class LateFusionHeads(nn.Module):
    """Decision-level fusion: one set of heads per modality, outputs mixed by learned weights.

    The weights (one softmax over modalities per output kind: heatmap, regression, plan) are
    renormalised over the modalities present in each sample, so a missing sensor's head is
    never read.
    """

    def __init__(self, cfg: ModelConfig, in_channels: dict[str, int]) -> None:
        super().__init__()
        self.modalities = tuple(in_channels)
        self.heads = nn.ModuleDict({m: Heads(c, cfg) for m, c in in_channels.items()})
        self.logits = nn.Parameter(torch.zeros(3, len(in_channels)))

    def forward(
        self,
        bevs: dict[str, torch.Tensor],
        presence: torch.Tensor,
        command: torch.Tensor,
        ego_status: torch.Tensor,
    ) -> HeadOutputs:
        """Weighted combination of the per-modality head outputs."""
        outs = [self.heads[m](bevs[m], command, ego_status) for m in self.modalities]
        present = torch.stack(
            [presence[:, MODALITY_ORDER.index(m)] for m in self.modalities], dim=1
        )  # (B, M)
        b = present.shape[0]
        logits = self.logits[None].expand(b, -1, -1).masked_fill(~present[:, None, :], -1e9)
        w = torch.softmax(logits, dim=-1) * present[:, None, :].float()  # (B, 3, M)

        def mix(values: list[torch.Tensor], kind: int) -> torch.Tensor:
            stacked = torch.stack([v.float() for v in values], dim=1)  # (B, M, ...)
            ww = w[:, kind].view(b, -1, *([1] * (stacked.dim() - 2)))
            return (stacked * ww).sum(dim=1)

        return HeadOutputs(
            heatmap=mix([o.heatmap for o in outs], 0),
            reg=mix([o.reg for o in outs], 1),
            waypoints=mix([o.waypoints for o in outs], 2),
        )
