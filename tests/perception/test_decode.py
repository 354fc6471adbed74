import numpy as np
import pytest
import torch

from calibration.sample import Boxes3D
from perception.box_code import NUM_REG, VELOCITY_UNIT_MPS
from perception.config import preset
from perception.heads.detection import attribute_for, decode_detections
from perception.heads.losses import gaussian_focal_loss, regression_loss
from perception.heads.targets import detection_targets, draw_gaussian, gaussian_radius

pytest.importorskip("perception.ops.nms", reason="engineer C's circle NMS kernel")


def _gt():
    # Well separated boxes of several classes and groups (labels in DETECTION_CLASSES order).
    center = [[10.3, -4.1, -0.9], [-20.7, 15.2, -0.5], [30.1, 30.9, -1.2], [-5.5, -33.3, 0.1],
              [4.0, 25.0, -0.7]]
    wlh = [[1.9, 4.6, 1.7], [2.9, 10.1, 3.6], [0.6, 0.7, 1.8], [0.4, 0.4, 0.9], [2.0, 5.0, 2.0]]
    yaw = [0.3, -2.8, 1.2, 0.0, 3.0]
    vel = [[3.0, -1.0], [0.0, 0.1], [1.0, 1.0], [np.nan, np.nan], [-4.0, 0.5]]
    labels = [0, 1, 5, 8, 4]
    return Boxes3D(center, wlh, yaw, vel, labels, np.ones(5), num_lidar_pts=[9, 9, 9, 9, 9])


def test_targets_decode_back_to_the_ground_truth():
    cfg = preset("tiny")
    gt = _gt()
    heat, idx, tgt, mask, vmask = detection_targets(gt, cfg)
    assert heat.shape == (10, 64, 64) and heat.max() == 1.0
    assert int(mask.sum()) == 5 and int(vmask.sum()) == 4
    # Perfect head outputs: logits of the target heatmap, regression written at the centres
    # (targets hold m/s; the head outputs velocity in VELOCITY_UNIT_MPS).
    logits = torch.logit(torch.from_numpy(heat).clamp(1e-4, 1 - 1e-4))[None]
    g = len(cfg.detection.class_groups)
    reg = torch.zeros(1, g, NUM_REG, 64 * 64)
    for gi in range(g):
        for k in range(idx.shape[1]):
            if mask[gi, k]:
                out = tgt[gi, k].copy()
                out[8:] /= VELOCITY_UNIT_MPS
                reg[0, gi, :, idx[gi, k]] = torch.from_numpy(out)
    reg = reg.view(1, g, NUM_REG, 64, 64)
    (dets,) = decode_detections(logits, reg, cfg)
    assert len(dets) == 5
    order = [int(np.argmin(np.linalg.norm(dets.center_m - c, axis=1))) for c in gt.center_m]
    d = dets.subset(np.array(order))
    np.testing.assert_allclose(d.center_m, gt.center_m, atol=1e-4)
    np.testing.assert_allclose(d.wlh_m, gt.wlh_m, rtol=1e-5)
    np.testing.assert_allclose(np.cos(d.yaw_rad - gt.yaw_rad), 1.0, atol=1e-6)
    np.testing.assert_array_equal(d.labels, gt.labels)
    np.testing.assert_allclose(d.velocity_mps[:3], gt.velocity_mps[:3], atol=1e-5)
    assert (d.scores > 0.99).all()
    assert d.attributes[0] == "vehicle.moving" and d.attributes[1] == "vehicle.parked"
    assert d.attributes[2] == "pedestrian.moving" and d.attributes[3] == ""


def test_no_input_gives_no_boxes_and_nms_suppresses_duplicates():
    cfg = preset("tiny")
    logits = torch.full((2, 10, 64, 64), -10.0)
    logits[:, 0, 30, 30] = 5.0
    logits[:, 0, 30, 32] = 4.0  # 3.2 m away: within the car NMS radius (4 m) -> suppressed
    logits[:, 0, 30, 40] = 3.0  # 16 m away: kept
    reg = torch.zeros(2, 6, NUM_REG, 64, 64)
    reg[:, :, 7] = 1.0
    dets = decode_detections(logits, reg, cfg, has_input=torch.tensor([True, False]))
    assert len(dets[1]) == 0
    assert len(dets[0]) == 2
    np.testing.assert_allclose(dets[0].scores, torch.sigmoid(torch.tensor([5.0, 3.0])).numpy())


def test_gaussian_focal_loss_known_values():
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1.0
    target[0, 0, 1, 2] = 0.5
    logits = torch.zeros(1, 1, 3, 3)  # p = 0.5 everywhere
    p = 0.5
    pos = -((1 - p) ** 2) * np.log(p)
    neg = -(p**2) * np.log(1 - p) * (7 + (1 - 0.5) ** 4)
    assert float(gaussian_focal_loss(logits, target)) == pytest.approx(pos + neg, rel=1e-6)
    # A confident correct prediction scores far lower than a confident wrong one.
    good = torch.where(target == 1, 6.0, -6.0)
    good_loss = float(gaussian_focal_loss(good, target))
    assert good_loss < 0.01 < float(gaussian_focal_loss(-good, target))


def test_regression_loss_reads_only_object_centres_and_masks_unknown_velocity():
    reg = torch.zeros(1, 1, NUM_REG, 4, 4)
    reg[0, 0, :, 1, 2] = 1.0  # flat index 6
    idx = torch.tensor([[[6, 0]]])
    tgt = torch.zeros(1, 1, 2, NUM_REG)
    mask = torch.tensor([[[1.0, 0.0]]])
    vmask = torch.tensor([[[0.0, 0.0]]])
    # Error 1 on the 8 geometry channels, velocity masked -> 8 / 1 object.
    assert float(regression_loss(reg, idx, tgt, mask, vmask)) == pytest.approx(8.0)
    vmask[..., 0] = 1.0
    # Velocity outputs are in units of VELOCITY_UNIT_MPS (10 m/s): output 1 = 10 m/s error,
    # times the default code weight 0.2 per m/s, on each of the two components.
    assert float(regression_loss(reg, idx, tgt, mask, vmask)) == pytest.approx(12.0)
    # LossConfig.velocity_weight replaces the code weight of both velocity components.
    assert float(regression_loss(reg, idx, tgt, mask, vmask, 0.05)) == pytest.approx(9.0)


def test_gaussian_helpers():
    heat = np.zeros((9, 9), np.float32)
    draw_gaussian(heat, 0, 8, 2)  # corner: clipped, no error
    assert heat[8, 0] == 1.0 and heat[8, 1] < 1.0 and heat[5, 0] == 0.0
    assert gaussian_radius(3.0, 1.2, 0.1) > 0
    assert attribute_for("bicycle", 0.0, 0.5) == "cycle.without_rider"
    assert attribute_for("barrier", 5.0, 0.5) == ""


@pytest.mark.parametrize("shape", [(1, 10, 64, 64), (2, 3, 5, 7), (1, 1, 2, 2), (1, 2, 1, 6)])
def test_max_pool3_equals_torch_max_pool(shape):
    # The decoder's peak test (heat == its 3x3 max) must see the pooling kernel's values,
    # ties and borders included (-inf padding): quantised values make many ties.
    from perception.heads.detection import _max_pool3

    x = torch.from_numpy(np.random.default_rng(3).integers(0, 4, shape).astype(np.float32) / 4)
    want = torch.nn.functional.max_pool2d(x, 3, 1, 1)
    got = _max_pool3(x)
    assert got.shape == want.shape and torch.equal(got, want)
    assert torch.equal(x * (got == x), x * (want == x))


def test_attribute_lookup_equals_attribute_for():
    from perception.heads.detection import _attribute_tables, attribute_for
    from sensors.types import DETECTION_CLASSES

    moving, still = _attribute_tables()
    for i, c in enumerate(DETECTION_CLASSES):
        for speed in (0.0, 0.2, 0.21, 5.0, float("nan")):
            want = attribute_for(c, speed, 0.2)
            assert (moving[i] if speed > 0.2 else still[i]) == want, (c, speed)
