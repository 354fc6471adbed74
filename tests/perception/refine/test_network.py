"""The refinement's combination: monotone, presence-aware, identity without cameras; class
probabilities read from the heatmap; re-labelled duplicates suppressed."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from calibration.sample import Boxes3D
from perception.config import preset
from perception.heads.targets import class_group_order
from perception.refine.network import (
    BACKGROUND,
    NUM_CLASSES,
    Refiner,
    ScoreCombiner,
    _suppress_relabelled,
    class_group_index,
    proposal_class_probs,
)
from sensors.synthetic_sample import make_sample
from sensors.types import DETECTION_CLASSES

CFG = preset("tiny", "lidar_camera_refine")


def _random_combiner(seed: int) -> ScoreCombiner:
    torch.manual_seed(seed)
    c = ScoreCombiner()
    with torch.no_grad():
        for p in c.parameters():
            p.normal_(0, 1.5)
    return c


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refined_score_is_monotone_in_both_stages_evidence(seed):
    c = _random_combiner(seed)
    g = torch.Generator().manual_seed(seed)
    m = 64
    lidar = torch.rand(m, NUM_CLASSES, generator=g)
    cam = torch.randn(m, NUM_CLASSES + 1, generator=g) * 3
    scale = torch.randn(m, generator=g)
    base = c(lidar, cam, scale)
    for k in range(NUM_CLASSES):
        more_cam = cam.clone()
        more_cam[:, k] += torch.rand(m, generator=g) * 4
        more_lidar = lidar.clone()
        more_lidar[:, k] = (more_lidar[:, k] + torch.rand(m, generator=g) * 0.5).clamp(max=1)
        # Raising one class's evidence in either stage never lowers that class's score...
        assert (c(lidar, more_cam, scale)[:, k] >= base[:, k] - 1e-6).all()
        assert (c(more_lidar, cam, scale)[:, k] >= base[:, k] - 1e-6).all()
        # ...and more camera evidence for background never raises any class's score.
    more_bg = cam.clone()
    more_bg[:, BACKGROUND] += 3
    assert (c(lidar, more_bg, scale) <= base + 1e-6).all()


def test_initial_combiner_keeps_the_first_stage_ranking():
    c = ScoreCombiner()
    lidar = torch.rand(50, NUM_CLASSES)
    cam = torch.zeros(50, NUM_CLASSES + 1)  # an uninformative camera
    out = torch.sigmoid(c(lidar, cam, torch.zeros(50)))
    for k in range(NUM_CLASSES):
        assert torch.equal(out[:, k].argsort(), lidar[:, k].argsort())


def _dets(n: int = 5) -> Boxes3D:
    rng = np.random.default_rng(0)
    center = np.column_stack([np.linspace(8, 30, n), rng.uniform(-2, 2, n), np.zeros(n)])
    return Boxes3D(center, np.tile([0.7, 0.7, 1.7], (n, 1)), np.zeros(n), np.zeros((n, 2)),
                   np.array([8, 9, 0, 8, 5])[:n], np.linspace(0.9, 0.3, n))


def test_without_cameras_the_detections_are_the_first_stages():
    ref = Refiner(CFG).eval()
    dets = _dets()
    blind = replace(make_sample(0, image_hw=(450, 800)), cameras=(None,) * 6)
    probs = np.random.default_rng(1).uniform(0, 1, (len(dets), NUM_CLASSES))
    assert ref.refine_detections(dets, probs, blind) is dets


def test_boxes_no_camera_sees_keep_label_and_score():
    torch.manual_seed(0)
    ref = Refiner(CFG).eval()
    with torch.no_grad():  # a camera with strong opinions
        for p in ref.parameters():
            p.normal_(0, 2)
    s = make_sample(0, image_hw=(450, 800))
    dets = _dets()
    # The second box goes straight above the car, where no camera looks.
    center = dets.center_m.copy()
    center[1] = (0.0, 0.0, 40.0)
    dets = replace(dets, center_m=center)
    probs = np.random.default_rng(2).uniform(0, 1, (len(dets), NUM_CLASSES))
    probs[np.arange(len(dets)), dets.labels] = dets.scores
    out = ref.refine_detections(dets, probs, s)
    i = int(np.flatnonzero(np.isclose(out.center_m[:, 2], 40.0))[0])
    assert out.labels[i] == dets.labels[1] and out.scores[i] == dets.scores[1]
    assert np.all(np.diff(out.scores) <= 0)  # highest first


def _forcing(cls: str) -> Refiner:
    """A refiner whose combination names ``cls`` for every crop, score ~1."""
    ref = Refiner(CFG).eval()
    with torch.no_grad():
        ref.combiner.bias.fill_(-30.0)
        ref.combiner.bias[DETECTION_CLASSES.index(cls)] = 30.0
    return ref


def test_relabelled_box_takes_its_new_groups_box_and_vehicles_pass_unchanged():
    s = make_sample(0, image_hw=(450, 800))
    ped, bike = DETECTION_CLASSES.index("pedestrian"), DETECTION_CLASSES.index("bicycle")
    car = DETECTION_CLASSES.index("car")
    # Three boxes ahead, apart: a pedestrian, a bicycle and a car, all seen by CAM_FRONT.
    dets = Boxes3D([[10.0, -3.0, 0.0], [14.0, 0.0, 0.0], [18.0, 3.0, 0.0]],
                   [[0.7, 0.7, 1.7], [0.6, 1.7, 1.2], [1.9, 4.5, 1.6]], [0.0, 0.0, 0.0],
                   np.zeros((3, 2)), [ped, bike, car], [0.8, 0.6, 0.7])
    n_groups = len(CFG.detection.class_groups)
    group_boxes = np.zeros((3, n_groups, 9))
    for gi in range(n_groups):  # recognisable geometry per group
        group_boxes[:, gi, :3] = dets.center_m + [0.1 * (gi + 1), 0.0, 0.0]
        group_boxes[:, gi, 3:6] = 0.5 + gi
        group_boxes[:, gi, 6] = 0.1 * gi
    probs = np.full((3, NUM_CLASSES), 0.1)
    out = _forcing("bicycle").refine_detections(dets, probs, s, group_boxes)
    by_x = {round(x): i for i, x in enumerate(out.center_m[:, 0])}
    bike_group = next(i for i, g in enumerate(CFG.detection.class_groups) if "bicycle" in g)
    i = by_x[10]  # the pedestrian, now a bicycle: the bicycle group's box at its cell
    assert out.labels[i] == bike and out.scores[i] > 0.99
    assert np.allclose(out.wlh_m[i], 0.5 + bike_group)
    assert np.allclose(out.center_m[i], group_boxes[0, bike_group, :3])
    assert out.attributes[i] in ("cycle.with_rider", "cycle.without_rider")
    j = by_x[14]  # already a bicycle: re-scored, its own box
    assert out.labels[j] == bike and np.allclose(out.wlh_m[j], dets.wlh_m[1])
    k = by_x[18]  # a car: not a refinable class, the first stage's box and score
    assert out.labels[k] == car and out.scores[k] == 0.7
    assert np.array_equal(out.wlh_m[k], dets.wlh_m[2])


def test_refinable_proposals_never_become_vehicles():
    s = make_sample(0, image_hw=(450, 800))
    ped = DETECTION_CLASSES.index("pedestrian")
    dets = Boxes3D([[10.0, 0.0, 0.0]], [[0.7, 0.7, 1.7]], [0.0], np.zeros((1, 2)), [ped], [0.8])
    # The combination would say "car"; cars are not among the classes it decides between.
    out = _forcing("car").refine_detections(dets, np.full((1, NUM_CLASSES), 0.1), s)
    assert DETECTION_CLASSES[out.labels[0]] in CFG.refine.classes


def test_class_probs_read_the_heatmap_cell_in_class_order():
    g = CFG.grid
    heat = torch.full((NUM_CLASSES, g.height, g.width), -5.0)
    order = class_group_order(CFG)
    dets = _dets(2)
    # Inside a cell, away from its edges (x = 8.4 m: cell 37.25 of the 1.6 m grid).
    dets = replace(dets, center_m=dets.center_m + [[0.4, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ix = int((dets.center_m[0, 0] - g.x_range_m[0]) // g.cell_m)
    iy = int((dets.center_m[0, 1] - g.y_range_m[0]) // g.cell_m)
    ped = DETECTION_CLASSES.index("pedestrian")
    heat[order.index(ped), iy, ix] = 2.0
    probs = proposal_class_probs(heat, dets, CFG)
    assert probs.shape == (2, NUM_CLASSES)
    assert probs[0, dets.labels[0]] == dets.scores[0]  # its own class: its decoded score
    assert DETECTION_CLASSES[dets.labels[0]] == "traffic_cone"
    assert probs[0, ped] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-6)
    assert probs[0, DETECTION_CLASSES.index("car")] == pytest.approx(1 / (1 + np.exp(5.0)),
                                                                     rel=1e-5)


def test_relabelled_duplicates_are_dropped_never_unseen_boxes():
    xy = np.array([[10.0, 0.0], [10.2, 0.0], [20.0, 0.0], [20.1, 0.0]])
    ped, cone = DETECTION_CLASSES.index("pedestrian"), DETECTION_CLASSES.index("traffic_cone")
    first = np.array([ped, cone, ped, ped])
    # Box 1 was a cone next to a pedestrian; the camera calls it a pedestrian too: a duplicate.
    labels = np.array([ped, ped, ped, ped])
    scores = np.array([0.9, 0.6, 0.8, 0.7])
    refined = np.array([True, True, False, False])
    keep = _suppress_relabelled(xy, labels, scores, refined, first, CFG)
    assert keep.tolist() == [0, 2, 3]  # 3 repeats 2, but neither changed: NMS already ran


def _suppress_one_by_one(xy, labels, scores, refined, first, cfg):
    """The definition: changed boxes in score order, each against the kept higher ones."""
    group = class_group_index(labels, cfg)
    radius = np.asarray(cfg.detection.nms_radius_m, np.float64)[group]
    drop = np.zeros(len(labels), bool)
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels))
    for i in order:
        if not (refined[i] and labels[i] != first[i] and radius[i] > 0):
            continue
        higher = (rank < rank[i]) & (group == group[i]) & ~drop
        if (np.hypot(*(xy[higher] - xy[i]).T) <= radius[i]).any():
            drop[i] = True
    return np.flatnonzero(~drop)


def test_a_dropped_relabelled_box_suppresses_nothing_below_it():
    ped, cone = DETECTION_CLASSES.index("pedestrian"), DETECTION_CLASSES.index("traffic_cone")
    r = float(np.asarray(CFG.detection.nms_radius_m)[class_group_index(np.array([ped]), CFG)][0])
    # A chain 0 - 1 - 2, each link just inside the radius, 0 and 2 apart by more than it.
    xy = np.array([[10.0, 0.0], [10.0 + 0.9 * r, 0.0], [10.0 + 1.8 * r, 0.0]])
    first = np.array([ped, cone, cone])
    labels = np.array([ped, ped, ped])
    keep = _suppress_relabelled(xy, labels, np.array([0.9, 0.8, 0.7]), np.ones(3, bool),
                                first, CFG)
    # 1 is dropped by 0; 2 then has no kept neighbour within the radius.
    assert keep.tolist() == [0, 2]


def test_suppression_equals_the_one_by_one_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        xy = rng.uniform(0, 6, (n, 2))
        first = rng.integers(0, len(DETECTION_CLASSES), n)
        labels = np.where(rng.random(n) < 0.5, rng.integers(0, len(DETECTION_CLASSES), n),
                          first)
        scores = np.round(rng.random(n), 1)  # ties: the stable order decides
        refined = rng.random(n) < 0.7
        np.testing.assert_array_equal(
            _suppress_relabelled(xy, labels, scores, refined, first, CFG),
            _suppress_one_by_one(xy, labels, scores, refined, first, CFG))
