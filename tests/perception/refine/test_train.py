"""Training the crop network: labels from the nearest object, refinable subset, and a fit that
learns a class the first stage confuses from what the crops show."""

import numpy as np
import torch

from calibration.sample import Boxes3D
from perception.config import preset
from perception.refine.crops import GEOMETRY_FEATURES
from perception.refine.network import BACKGROUND, NUM_CLASSES, Refiner
from perception.refine.train import (
    ProposalSet,
    RefineTrainOptions,
    fit_refiner,
    match_labels,
    predict,
    refinable,
)
from sensors.types import DETECTION_CLASSES

PED, CONE = DETECTION_CLASSES.index("pedestrian"), DETECTION_CLASSES.index("traffic_cone")
CAR = DETECTION_CLASSES.index("car")


def _boxes(xy, labels) -> Boxes3D:
    n = len(xy)
    return Boxes3D(np.c_[np.asarray(xy, float), np.zeros(n)], np.ones((n, 3)), np.zeros(n),
                   np.zeros((n, 2)), labels, np.full(n, 0.5))


def test_labels_are_the_nearest_object_within_the_radius():
    gt = _boxes([[10, 0], [11.5, 0], [30, 5]], [PED, CONE, CAR])
    props = _boxes([[10.2, 0.1], [11.2, 0.0], [30, 7.5], [50, 0]], [CONE, CONE, CAR, PED])
    # Brute force: nearest centre, within 2 m.
    assert match_labels(props, gt).tolist() == [PED, CONE, BACKGROUND, BACKGROUND]
    assert match_labels(props, None).tolist() == [BACKGROUND] * 4


def _toy_set(n: int, seed: int) -> ProposalSet:
    """Pedestrians are red crops, cones blue; the first stage calls every one of them a cone
    with the same probabilities, so only the crop can tell them apart."""
    rng = np.random.default_rng(seed)
    label = rng.choice([PED, CONE, BACKGROUND], n, p=[0.4, 0.4, 0.2])
    crops = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.uint8)
    crops[label == PED, :, :, 0] += 180
    crops[label == CONE, :, :, 2] += 180
    prob = np.full((n, NUM_CLASSES), 0.05, np.float32)
    prob[:, CONE], prob[:, PED] = 0.6, 0.3
    return ProposalSet(crops, np.zeros((n, GEOMETRY_FEATURES), np.float32), prob,
                       np.zeros(n, np.float32), label, np.full(n, CONE), prob[:, CONE].copy(),
                       np.arange(n))


def test_fit_learns_what_only_the_crop_shows():
    torch.manual_seed(0)
    cfg = preset("tiny", "lidar_camera_refine")
    ref = Refiner(cfg)
    train, val = _toy_set(600, 0), _toy_set(200, 1)
    records = fit_refiner(ref, train, RefineTrainOptions(epochs=4, batch_size=64, lr=1e-2), val)
    assert records[-1]["loss"] < records[0]["loss"]
    pred = predict(ref, val).argmax(axis=1)
    obj = val.label != BACKGROUND
    # The first stage gets the pedestrians all wrong (it says cone); the refiner reads colour.
    assert (pred[obj] == val.label[obj]).mean() > 0.95
    assert records[-1]["val"]["first_stage_acc"] < 0.6


def test_refinable_keeps_refinable_first_labels_and_backgrounds_other_objects():
    data = _toy_set(50, 2)
    first = data.first_label.copy()
    first[:10] = CAR
    label = data.label.copy()
    label[10:20] = CAR
    data = ProposalSet(**{**{k: getattr(data, k) for k in ProposalSet.__dataclass_fields__},
                          "first_label": first, "label": label})
    sub = refinable(data, ("pedestrian", "traffic_cone"))
    assert len(sub) == 40 and (sub.first_label != CAR).all()
    assert (sub.label[:10] == BACKGROUND).all()  # cars under a cone proposal: not nameable


def test_proposal_set_round_trips(tmp_path):
    data = _toy_set(20, 3)
    data.save(tmp_path / "p.npz")
    back = ProposalSet.load(tmp_path / "p.npz")
    for k in ProposalSet.__dataclass_fields__:
        assert np.array_equal(getattr(back, k), getattr(data, k))


def test_concatenated_sets_keep_rows_and_number_samples_on():
    a, b = _toy_set(10, 4), _toy_set(6, 5)
    both = ProposalSet.concatenate([a, b])
    assert len(both) == 16 and np.array_equal(both.crops[10:], b.crops)
    assert both.sample[:10].tolist() == list(range(10))
    assert both.sample[10:].tolist() == list(range(10, 16))
