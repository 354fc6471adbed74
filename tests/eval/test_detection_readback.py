"""metrics_summary.json / metrics_details.json read back into our data classes (ours and the
devkit's files), as the devkit's ``deserialize`` does."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from eval_predictions import make_predictions

from eval.detection import DetectionMetricsSummary, evaluate_detections, read_metrics, write_metrics
from eval.detection.data import CURVE_NAMES


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.fixture(scope="module")
def summary(nusc):
    return evaluate_detections(nusc, make_predictions(nusc, "noisy", seed=8), "mini_val")


def test_our_files_read_back_to_the_same_summary(summary, tmp_path):
    write_metrics(summary, tmp_path)
    back = read_metrics(tmp_path)
    assert back.mean_ap == summary.mean_ap and back.nd_score == summary.nd_score
    assert back.label_aps == summary.label_aps  # float threshold keys again, not strings
    assert back.config.to_dict() == summary.config.to_dict() and back.meta == summary.meta
    for c, d in summary.label_tp_errors.items():
        assert all(_same(v, back.label_tp_errors[c][m]) for m, v in d.items()), c
    assert set(back.curves) == set(summary.curves) and len(back.curves) == 40
    for key, md in summary.curves.items():
        for name in CURVE_NAMES:
            np.testing.assert_array_equal(getattr(back.curves[key], name), getattr(md, name))
    assert back.to_dict() == json.loads(json.dumps(summary.to_dict()))


def test_devkit_files_read_into_our_classes(nusc, summary, tmp_path):
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    path = tmp_path / "results.json"
    path.write_text(json.dumps(make_predictions(nusc, "noisy", seed=8)))
    out = tmp_path / "devkit"
    ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), "mini_val",
                       str(out), verbose=False)
    ev.main(render_curves=False)  # writes metrics_summary.json and metrics_details.json
    back = read_metrics(out)
    assert abs(back.mean_ap - summary.mean_ap) < 1e-9
    assert abs(back.nd_score - summary.nd_score) < 1e-9
    md = summary.curves[("car", 2.0)]
    np.testing.assert_allclose(back.curves[("car", 2.0)].precision, md.precision, atol=1e-12)
    assert back.meta == {"use_camera": False, "use_lidar": True, "use_radar": False,
                         "use_map": False, "use_external": False}


def test_bad_metrics_files_name_file_and_field(summary, tmp_path):
    write_metrics(summary, tmp_path)
    d = json.loads((tmp_path / "metrics_summary.json").read_text())
    del d["tp_scores"]
    (tmp_path / "metrics_summary.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"metrics_summary.json.*missing field 'tp_scores'"):
        read_metrics(tmp_path)
    d["tp_scores"] = {"trans_err": "high"}
    with pytest.raises(ValueError, match=r"tp_scores/trans_err must be a number"):
        DetectionMetricsSummary.from_dict(d)
    with pytest.raises(FileNotFoundError, match="metrics_summary.json"):
        read_metrics(tmp_path / "nothing")
