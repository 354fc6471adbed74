"""Custom splits from ``<dataroot>/<version>/splits.json``: the same numbers as the devkit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_predictions import make_predictions
from test_detection_parity import assert_close

from eval.detection import evaluate_detections, split_sample_tokens

SPLIT = "my_two_scenes"
SCENES = ["scene-0061", "scene-0916"]  # one of mini_train, one of mini_val


def _scene_of(nusc, token: str) -> str:
    return nusc.get("scene", nusc.get("sample", token)["scene_token"])["name"]


@pytest.fixture
def custom_split(nusc):
    path = Path(nusc.dataroot) / nusc.version / "splits.json"
    path.write_text(json.dumps({SPLIT: SCENES, "bad": ["scene-9999"]}))
    yield path
    path.unlink()


def test_custom_split_equals_devkit_detection_eval(nusc, custom_split, tmp_path):
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    tokens = split_sample_tokens(nusc, SPLIT)
    assert tokens and {_scene_of(nusc, t) for t in tokens} == set(SCENES)
    assert tokens == [s["token"] for s in nusc.sample if _scene_of(nusc, s["token"]) in SCENES]
    preds = make_predictions(nusc, "noisy", seed=5)
    results = {"meta": preds["meta"], "results": {t: preds["results"].get(t, []) for t in tokens}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), SPLIT,
                       str(tmp_path / "devkit"), verbose=False)
    ref = json.loads(json.dumps(ev.evaluate()[0].serialize()))
    ours = json.loads(json.dumps(evaluate_detections(nusc, results, SPLIT).to_dict()))
    for key in ("label_aps", "mean_dist_aps", "label_tp_errors", "tp_errors", "mean_ap",
                "nd_score"):
        assert_close(ref[key], ours[key], key)
    assert 0.01 < ours["mean_ap"] < 0.95


def test_custom_split_faults_name_the_file(nusc, custom_split):
    with pytest.raises(ValueError, match=r"splits.json: split 'bad' names 1 scene.*scene-9999"):
        split_sample_tokens(nusc, "bad")
    with pytest.raises(ValueError, match=r"unknown split 'nope'.*splits.json.*my_two_scenes"):
        split_sample_tokens(nusc, "nope")


def test_no_custom_splits_file_is_named(nusc):
    with pytest.raises(ValueError, match=r"unknown split 'mine'.*no custom splits file .*splits"):
        split_sample_tokens(nusc, "mine")
