"""LiDAR branch: point-column normalisation and the multi-scale context path."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from perception.backbones.lidar import LidarBackbone, PillarFeatureNet
from perception.config import GridConfig, LidarConfig


def _pillars(m: int = 64, p: int = 6, c: int = 11, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(m, p, c, generator=g)
    num = torch.randint(1, p + 1, (m,), generator=g)
    return pts, num


def _fresh_pfn_output(points: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
    """Output of a freshly initialised (same seed) feature net in training mode."""
    torch.manual_seed(0)
    return PillarFeatureNet(points.shape[-1], 16).train()(points, num)


def test_pfn_output_does_not_depend_on_a_columns_units():
    # Time lag in seconds or in sweeps (x20), x in metres or centimetres: the same features.
    # Without the input normalisation a 0.15 s-scale column is ~100x weaker than x.
    pts, num = _pillars()
    scaled = pts.clone()
    scaled[..., 4] *= 20.0
    scaled[..., 0] *= 100.0
    torch.testing.assert_close(
        _fresh_pfn_output(scaled, num), _fresh_pfn_output(pts, num), rtol=1e-4, atol=1e-4
    )


def test_padding_rows_do_not_enter_the_normalisation():
    pts, num = _pillars()
    junk = pts.clone()
    valid = torch.arange(pts.shape[1])[None, :] < num[:, None]
    junk[~valid] = 1e6  # garbage in the padding must change nothing
    torch.testing.assert_close(_fresh_pfn_output(junk, num), _fresh_pfn_output(pts, num))


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_context_stages_shape_and_reach(stages):
    grid = GridConfig(cell_m=1.6)  # 64 x 64 cells
    cfg = replace(LidarConfig(), pfn_channels=8, bev_channels=8, context_stages=stages)
    torch.manual_seed(0)
    net = LidarBackbone(cfg, grid).eval()
    hp, wp = net.pillar_hw
    # One pillar at the grid centre; how far does its influence reach on the BEV map?
    pts = torch.randn(1, cfg.max_points_per_pillar, 11)
    num = torch.tensor([3])
    coords = torch.tensor([[0, 0, hp // 2, wp // 2]])
    with torch.no_grad():
        empty = net(pts[:0], coords[:0], num[:0], 1)
        one = net(pts, coords, num, 1)
    assert one.shape == (1, 8, grid.height, grid.width)
    changed = (one - empty).abs().amax(dim=1)[0] > 1e-6
    ys, xs = torch.nonzero(changed, as_tuple=True)
    reach_cells = int(max((ys - grid.height // 2).abs().max(), (xs - grid.width // 2).abs().max()))
    # Each stage roughly doubles the reach (9, 19, 31 cells): the tiny preset's two stages
    # see 30 m around a cell, enough for an 11 m motion trail.
    assert reach_cells == {1: 9, 2: 19, 3: 31}[stages]


def test_context_stages_must_be_positive():
    with pytest.raises(ValueError, match="context_stages"):
        LidarBackbone(replace(LidarConfig(), context_stages=0), GridConfig())
