"""Per-condition scores (rain / night / fog / other from the scene descriptions) equal the
devkit's DetectionEval run on a split made of just those scenes."""

from __future__ import annotations

import json

import pytest
from eval_predictions import annotation_nusc, make_predictions
from test_detection_parity import assert_close, devkit_summary

from eval.detection import evaluate_by_condition, evaluate_detections, scene_conditions
from sensors.scene_description import Condition

SCENES = ("scene-0103", "scene-0061", "scene-0916")  # 0061 is mini_train: never scored
DESCRIPTIONS = ("Rain, busy intersection, peds", "Night, clear sky", "NIGHT, parking lot")


@pytest.fixture(scope="module")
def cond_nusc(tmp_path_factory):
    return annotation_nusc(
        tmp_path_factory, "nuscenes_conditions", scene_names=SCENES, seed=5,
        descriptions=DESCRIPTIONS,
    )


def _scene_samples(nusc, name: str) -> list[str]:
    scene = next(s for s in nusc.scene if s["name"] == name)
    return [s["token"] for s in nusc.sample if s["scene_token"] == scene["token"]]


def test_groups_follow_descriptions(cond_nusc):
    tokens = [t for name in ("scene-0103", "scene-0916") for t in _scene_samples(cond_nusc, name)]
    groups = scene_conditions(cond_nusc, tokens)
    # Upper-case "NIGHT" counts; the train scene's "Night" is not among the tokens asked for.
    assert groups == {
        "rain": _scene_samples(cond_nusc, "scene-0103"),
        "night": _scene_samples(cond_nusc, "scene-0916"),
    }
    rain_only = scene_conditions(cond_nusc, tokens, conditions=(Condition.RAIN,))
    assert rain_only == {
        "rain": _scene_samples(cond_nusc, "scene-0103"),
        "other": _scene_samples(cond_nusc, "scene-0916"),
    }


@pytest.mark.parametrize("kind", ["noisy", "many_false_positives"])
def test_each_condition_equals_devkit_on_its_scenes(cond_nusc, kind, tmp_path, monkeypatch):
    import nuscenes.eval.common.loaders as loaders
    from nuscenes.utils.splits import create_splits_scenes

    results = make_predictions(cond_nusc, kind, seed=11)
    groups = evaluate_by_condition(cond_nusc, results, "mini_val")
    assert set(groups) == {"rain", "night"}
    whole = evaluate_detections(cond_nusc, results, "mini_val")
    maps = []
    for name, scene in (("rain", "scene-0103"), ("night", "scene-0916")):
        n, ours = groups[name]
        keep = set(_scene_samples(cond_nusc, scene))
        assert n == len(keep)
        # The devkit scores a split; make "mini_val" hold only this condition's scene.
        splits = create_splits_scenes()
        splits["mini_val"] = [scene]
        monkeypatch.setattr(loaders, "create_splits_scenes", lambda s=splits: s)
        sub = dict(results, results={t: b for t, b in results["results"].items() if t in keep})
        (tmp_path / name).mkdir()
        ref = devkit_summary(cond_nusc, sub, tmp_path / name)
        got = json.loads(json.dumps(ours.to_dict()))
        for key in ("label_aps", "label_tp_errors", "tp_errors", "mean_ap", "nd_score"):
            assert_close(ref[key], got[key], f"{name}/{key}")
        maps.append(ours.mean_ap)
    # The split as a whole is a different number from either half (not a copy of one).
    assert all(abs(m - whole.mean_ap) > 1e-6 for m in maps)
