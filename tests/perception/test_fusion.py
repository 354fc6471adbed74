import pytest
import torch

from perception.config import MODALITY_ORDER, preset
from perception.fusion import build_fuser

CH = {"camera": 6, "lidar": 8, "ultrasonic": 3}


def _inputs(b=4, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn((b, c, h, w), generator=g) for m, c in CH.items()}


def _run(fuser, kind, bevs, presence):
    if kind == "late":
        n = len(presence)
        out = fuser(bevs, presence, torch.tensor([2] * n), torch.zeros(n, 2))
        return torch.cat([out.heatmap.flatten(1), out.reg.flatten(1), out.waypoints.flatten(1)], 1)
    return fuser(bevs, presence)


@pytest.mark.parametrize("kind", ["mean", "weighted", "concat_conv", "gated", "late"])
def test_fuser_ignores_absent_inputs_and_uses_present_ones(kind):
    cfg = preset("tiny", kind)
    fuser = build_fuser(cfg, dict(CH)).eval()
    bevs = _inputs()
    # Sample 0: everything; 1: no camera; 2: only ultrasonic; 3: nothing.
    presence = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        ref = _run(fuser, kind, bevs, presence)
        for m in MODALITY_ORDER:
            poisoned = dict(bevs)
            poisoned[m] = bevs[m] * 1e3 + torch.nan_to_num(torch.full_like(bevs[m], 7.0))
            got = _run(fuser, kind, poisoned, presence)
            absent = ~presence[:, MODALITY_ORDER.index(m)]
            # Samples lacking m are bit-for-bit unaffected; samples that have m do change.
            torch.testing.assert_close(got[absent], ref[absent], rtol=0, atol=0)
            assert (got[~absent] - ref[~absent]).abs().amax() > 1e-3
    assert torch.isfinite(ref).all()
    if kind != "late":
        assert (ref[3] == 0).all()  # nothing present: zeros, never NaN or bias


def test_weighted_fuser_renormalises_over_present_modalities():
    cfg = preset("tiny", "weighted")
    fuser = build_fuser(cfg, dict(CH)).eval()
    with torch.no_grad():
        fuser.logits.copy_(torch.tensor([[0.0], [1.0], [2.0]]))
    bevs = _inputs(b=1)
    with torch.no_grad():
        proj = {m: fuser.proj[m](bevs[m]) for m in CH}
        out = fuser(bevs, torch.tensor([[False, True, True]]))
    w = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    torch.testing.assert_close(out, w[0] * proj["lidar"] + w[1] * proj["ultrasonic"])


def test_mean_fuser_is_the_mean_of_present_projections():
    cfg = preset("tiny", "mean")
    fuser = build_fuser(cfg, dict(CH)).eval()
    bevs = _inputs(b=1)
    with torch.no_grad():
        proj = {m: fuser.proj[m](bevs[m]) for m in CH}
        out = fuser(bevs, torch.tensor([[True, False, True]]))
    torch.testing.assert_close(out, (proj["camera"] + proj["ultrasonic"]) / 2)


@pytest.mark.parametrize("kind", ["weighted", "gated"])
def test_anchor_starts_the_fuser_near_the_anchored_modality(kind):
    from perception.fusion import anchor

    cfg = preset("tiny", kind)
    torch.manual_seed(0)
    fuser = build_fuser(cfg, dict(CH)).eval()
    bevs = _inputs(b=2)
    presence = torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        proj = {m: fuser.proj[m](bevs[m]) for m in CH}
        before = fuser(bevs, presence)
        assert anchor(fuser, "lidar", 3.0)
        after = fuser(bevs, presence)
    # All present: LiDAR weighted e^3 : 1 : 1 against the others, i.e. 0.909 of the output.
    w = torch.exp(torch.tensor(3.0)) / (torch.exp(torch.tensor(3.0)) + 2)
    err_after = (after[0] - proj["lidar"][0]).abs().mean()
    err_before = (before[0] - proj["lidar"][0]).abs().mean()
    assert err_after < 0.35 * err_before
    if kind == "weighted":
        others = (proj["camera"][0] + proj["ultrasonic"][0]) * (1 - w) / 2
        torch.testing.assert_close(after[0], w * proj["lidar"][0] + others, rtol=1e-5,
                                   atol=1e-5)
    # LiDAR absent: the anchor cannot resurrect it; the rest is renormalised as before.
    torch.testing.assert_close(after[1], before[1], rtol=1e-6, atol=1e-6)


def test_anchor_reports_fusers_without_a_knob():
    from perception.fusion import anchor

    for kind in ("mean", "concat_conv"):
        assert not anchor(build_fuser(preset("tiny", kind), dict(CH)), "lidar")
    assert not anchor(build_fuser(preset("tiny", "gated"), {"camera": 6}), "lidar")
