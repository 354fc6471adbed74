"""Parity with the devkit on a synthetic drive from sensors.sim (real sensor-driven
num_lidar_pts, tracked agents, ego motion), in addition to the annotation-only fixture."""

from __future__ import annotations

import json

import pytest
from eval_predictions import make_predictions
from test_detection_parity import assert_close, devkit_summary

from eval.detection import evaluate_detections


@pytest.fixture(scope="module")
def sim_nusc(tmp_path_factory):
    sim = pytest.importorskip("sensors.sim")
    from nuscenes import NuScenes

    # Keyframes only (LiDAR at 2 Hz) keeps generation to a few seconds.
    cfg = sim.SimConfig(num_scenes=2, scene_duration_s=3.0, lidar_hz=2.0, num_workers=1, seed=1)
    root = sim.generate_dataset(cfg, tmp_path_factory.mktemp("sim_eval"), progress=False)
    return NuScenes(cfg.version, str(root), verbose=False)


@pytest.mark.parametrize("kind", ["perfect", "noisy", "many_false_positives", "ties"])
def test_matches_devkit_on_generated_drive(sim_nusc, kind, tmp_path):
    results = make_predictions(sim_nusc, kind, seed=7)
    ref = devkit_summary(sim_nusc, results, tmp_path)
    ours = json.loads(json.dumps(evaluate_detections(sim_nusc, results, "mini_val").to_dict()))
    for key in (
        "label_aps",
        "mean_dist_aps",
        "label_tp_errors",
        "tp_errors",
        "tp_scores",
        "mean_ap",
        "nd_score",
    ):
        assert_close(ref[key], ours[key], key)
    if kind == "perfect":
        present = [c for c, v in ours["label_aps"].items() if v["0.5"] > 0]
        assert present and all(ours["mean_dist_aps"][c] > 1 - 1e-9 for c in present)
