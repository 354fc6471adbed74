"""BEV fusers: one ``build_fuser(cfg)``; every fuser takes a presence mask.

Input to every fuser: ``bevs`` (modality name -> (B, C_m, H, W)) for the modalities the model
uses, and ``presence`` (B, 3) bool in ``MODALITY_ORDER``. A missing modality's map is never
read: it is zeroed before any learned mixing and left out of every normalisation, so its
(meaningless) branch output cannot leak into the result. With nothing present the output is
zeros, never NaN.
"""

from __future__ import annotations

import torch
from torch import nn

from perception.backbones.common import conv_bn_relu
from perception.config import MODALITY_ORDER, FusionKind, ModelConfig
from sensors.types import Modality


def _mask(presence: torch.Tensor, modality: str) -> torch.Tensor:
    """(B, 1, 1, 1) float 0/1 for one modality."""
    return presence[:, MODALITY_ORDER.index(modality)].float().view(-1, 1, 1, 1)


def _zero_absent(x: torch.Tensor, presence: torch.Tensor, modality: str) -> torch.Tensor:
    """``x`` with the samples lacking ``modality`` set to 0.

    A select, not a multiplication by the 0/1 mask: an absent branch's map may hold NaN or
    inf (a sensor that produced nothing), and NaN * 0 is NaN.
    """
    keep = presence[:, MODALITY_ORDER.index(modality)].view(-1, 1, 1, 1)
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


class _Projecting(nn.Module):
    """Base: a 1x1 projection of each modality to the common width C."""

    def __init__(self, in_channels: dict[str, int], channels: int) -> None:
        super().__init__()
        self.modalities = tuple(in_channels)
        self.proj = nn.ModuleDict(
            {m: conv_bn_relu(c, channels, kernel=1) for m, c in in_channels.items()}
        )
        self.channels = channels

    def projected(
        self, bevs: dict[str, torch.Tensor], presence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked masked projections (B, M, C, H, W) and the presence (B, M) of each."""
        feats = [_zero_absent(self.proj[m](bevs[m]), presence, m) for m in self.modalities]
        present = torch.stack(
            [presence[:, MODALITY_ORDER.index(m)] for m in self.modalities], dim=1
        )
        return torch.stack(feats, dim=1), present


def _masked_softmax(logits: torch.Tensor, present: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over present entries only; all-absent gives all-zero weights (not NaN)."""
    logits = logits.masked_fill(~present, float("-inf"))
    w = torch.softmax(logits, dim=dim)
    return torch.nan_to_num(w, nan=0.0)


class MeanFuser(_Projecting):
    """Project each modality to C and average the present ones."""

    def forward(self, bevs: dict[str, torch.Tensor], presence: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) mean over present modalities."""
        feats, present = self.projected(bevs, presence)
        count = present.sum(dim=1).clamp(min=1).float().view(-1, 1, 1, 1)
        return feats.sum(dim=1) / count


class WeightedFuser(_Projecting):
    """Learned softmax weight per modality (or per modality and channel), renormalised."""

    def __init__(self, in_channels: dict[str, int], channels: int, per_channel: bool) -> None:
        super().__init__(in_channels, channels)
        self.logits = nn.Parameter(torch.zeros(len(in_channels), channels if per_channel else 1))

    @torch.no_grad()
    def anchor(self, modality: str, logit: float) -> None:
        """Start with ``modality`` weighted ``e**logit`` times each other one (see ``anchor``)."""
        self.logits[self.modalities.index(modality)] += logit

    def forward(self, bevs: dict[str, torch.Tensor], presence: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) weighted sum; weights renormalised over the present modalities."""
        feats, present = self.projected(bevs, presence)  # (B, M, C, H, W), (B, M)
        b, m = present.shape
        logits = self.logits[None].expand(b, -1, -1)  # (B, M, C or 1)
        w = _masked_softmax(logits, present[:, :, None], dim=1)
        return (feats * w[..., None, None]).sum(dim=1)


class ConcatConvFuser(nn.Module):
    """Concatenate (absent maps zeroed, plus presence planes) and convolve (BEVFusion ConvFuser)."""

    def __init__(self, in_channels: dict[str, int], channels: int) -> None:
        super().__init__()
        self.modalities = tuple(in_channels)
        c_in = sum(in_channels.values()) + len(in_channels)
        # The presence planes tell the conv which inputs are real, so a zeroed map is read as
        # "absent" rather than as "nothing there".
        self.fuse = nn.Sequential(conv_bn_relu(c_in, channels), conv_bn_relu(channels, channels))
        self.channels = channels

    def forward(self, bevs: dict[str, torch.Tensor], presence: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W)."""
        parts = []
        ref = bevs[self.modalities[0]]
        for m in self.modalities:
            parts.append(_zero_absent(bevs[m], presence, m))
        for m in self.modalities:
            parts.append(_mask(presence, m).expand(-1, 1, ref.shape[-2], ref.shape[-1]))
        out = self.fuse(torch.cat(parts, dim=1))
        anything = presence[:, [MODALITY_ORDER.index(m) for m in self.modalities]].any(dim=1)
        return out * anything.float().view(-1, 1, 1, 1)


class GatedFuser(_Projecting):
    """Per-cell modality weights predicted from all (masked) maps: attention-style gating."""

    def __init__(self, in_channels: dict[str, int], channels: int) -> None:
        super().__init__(in_channels, channels)
        m = len(in_channels)
        self.gate = nn.Sequential(
            conv_bn_relu(m * channels + m, channels), nn.Conv2d(channels, m, 1)
        )

    @torch.no_grad()
    def anchor(self, modality: str, logit: float) -> None:
        """Start with ``modality`` gated ``e**logit`` times each other one, in every cell."""
        self.gate[-1].bias[self.modalities.index(modality)] += logit

    def forward(self, bevs: dict[str, torch.Tensor], presence: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) = sum_m softmax_m(gate)[m] * proj_m, softmax over present modalities."""
        feats, present = self.projected(bevs, presence)  # (B, M, C, H, W)
        b, m, c, h, w = feats.shape
        planes = present.float()[:, :, None, None].expand(b, m, h, w)
        logits = self.gate(torch.cat([feats.flatten(1, 2), planes], dim=1))  # (B, M, H, W)
        weights = _masked_softmax(logits, present[:, :, None, None].expand_as(logits), dim=1)
        return (feats * weights[:, :, None]).sum(dim=1)


Fuser = MeanFuser | WeightedFuser | ConcatConvFuser | GatedFuser


def anchor(fuser: nn.Module, modality: str, logit: float = 3.0) -> bool:
    """Bias a freshly built fuser towards passing one modality through.

    When the heads and that modality's projection come from a single-sensor checkpoint
    (``--init-from lidar_only``), the fused model then starts where that model ended, and
    training has to learn what the other sensors add instead of re-learning the heads on a
    1/M-scaled mixture. Weights stay learnable; only the softmax fusers (``weighted``,
    ``gated``) have such a knob.

    Returns:
        True when the fuser was biased, False when it has no weights to bias (``mean``,
        ``concat_conv``, ``late``) or does not use ``modality``.

    """
    fn = getattr(fuser, "anchor", None)
    if fn is None or modality not in getattr(fuser, "modalities", ()):
        return False
    fn(modality, logit)
    return True


def build_fuser(cfg: ModelConfig, in_channels: dict[str, int]) -> nn.Module:
    """The fuser named by ``cfg.fusion.kind``.

    Args:
        cfg: model configuration.
        in_channels: channels of each used modality's BEV map, in ``MODALITY_ORDER``.

    Returns:
        A module ``(bevs, presence) -> (B, C, H, W)``; for ``late`` a module that also owns
        one set of heads per modality (see ``perception.heads.LateFusionHeads``).

    """
    c = cfg.fusion.channels
    match cfg.fusion.kind:
        case FusionKind.MEAN | FusionKind.REFINE:  # refine: lidar_only's layers
            return MeanFuser(in_channels, c)
        case FusionKind.WEIGHTED:
            return WeightedFuser(in_channels, c, cfg.fusion.per_channel_weights)
        case FusionKind.CONCAT_CONV:
            return ConcatConvFuser(in_channels, c)
        case FusionKind.GATED:
            return GatedFuser(in_channels, c)
        case FusionKind.SERIAL:
            # Camera is already inside the LiDAR map (painting); combine what remains.
            rest = {m: ch for m, ch in in_channels.items() if m != Modality.CAMERA}
            return ConcatConvFuser(rest, c)
        case FusionKind.LATE:
            from perception.heads import LateFusionHeads

            return LateFusionHeads(cfg, in_channels)
        case other:
            raise ValueError(f"unknown fusion kind {other!r}")
