"""The gated fuser's presence mask, tested directly with known answers: softmax over present
modalities only, per sample; absent maps (even NaN or inf) never reach the output."""

from __future__ import annotations

import math

import torch

from perception.config import preset
from perception.fusion import GatedFuser, build_fuser

CH = {"camera": 6, "lidar": 8, "ultrasonic": 3}


def _fuser() -> GatedFuser:
    """A gated fuser whose gate ignores its input: logits (0, ln 3, 0) in every cell."""
    fuser = build_fuser(preset("tiny", "gated"), dict(CH)).eval()
    assert isinstance(fuser, GatedFuser)
    with torch.no_grad():
        fuser.gate[-1].weight.zero_()
        fuser.gate[-1].bias.copy_(torch.tensor([0.0, math.log(3.0), 0.0]))
    return fuser


def _bevs(b: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn((b, c, 5, 7), generator=g) for m, c in CH.items()}


def test_weights_are_a_softmax_over_present_modalities_only():
    fuser, bevs = _fuser(), _bevs()
    with torch.no_grad():
        p = {m: fuser.proj[m](bevs[m]) for m in CH}

        def fuse(mask):
            return fuser(bevs, torch.tensor([mask]))

        torch.testing.assert_close(  # all present: e^0, e^ln3, e^0 -> 0.2, 0.6, 0.2
            fuse([True, True, True]), 0.2 * p["camera"] + 0.6 * p["lidar"] + 0.2 * p["ultrasonic"]
        )
        torch.testing.assert_close(  # no ultrasonic: renormalised over the other two
            fuse([True, True, False]), 0.25 * p["camera"] + 0.75 * p["lidar"]
        )
        torch.testing.assert_close(
            fuse([False, True, True]), 0.75 * p["lidar"] + 0.25 * p["ultrasonic"]
        )
        torch.testing.assert_close(fuse([True, False, False]), p["camera"])  # alone: weight 1
        assert (fuse([False, False, False]) == 0).all()  # nothing: zeros, not NaN


def test_presence_is_per_sample_and_absent_maps_never_leak():
    fuser = _fuser()
    bevs = _bevs(b=2)
    presence = torch.tensor([[True, True, True], [True, False, True]])
    with torch.no_grad():
        ref = fuser(bevs, presence)
        for poison in (float("nan"), float("inf"), 1e30):
            bad = dict(bevs)
            bad["lidar"] = bevs["lidar"].clone()
            bad["lidar"][1] = poison  # sample 1 has no LiDAR: its map is garbage
            got = fuser(bad, presence)
            assert torch.isfinite(got).all(), poison
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
        alone = fuser({m: t[1:] for m, t in bevs.items()}, presence[1:])
    torch.testing.assert_close(ref[1:], alone)  # a sample's answer ignores its batch mates
