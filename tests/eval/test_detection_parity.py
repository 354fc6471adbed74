"""Every number of the metrics summary equals the devkit's DetectionEval (within 1e-9)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from eval_predictions import make_predictions

from eval.detection import evaluate_detections, write_metrics
from eval.detection.data import CURVE_NAMES

KINDS = [
    "perfect",
    "noisy",
    "missing_classes",
    "many_false_positives",
    "empty_samples",
    "edges",
    "ties",
]


def devkit_summary(nusc, results: dict, tmp_path) -> dict:
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    ev = DetectionEval(
        nusc,
        config_factory("detection_cvpr_2019"),
        str(path),
        "mini_val",
        str(tmp_path / "devkit"),
        verbose=False,
    )
    metrics, _ = ev.evaluate()
    # Round-trip through JSON as metrics_summary.json does (float keys become strings).
    return json.loads(json.dumps(metrics.serialize()))


def assert_close(ref, ours, path=""):
    if isinstance(ref, dict):
        assert set(ref) == set(ours), f"{path}: keys {set(ref) ^ set(ours)}"
        for k in ref:
            assert_close(ref[k], ours[k], f"{path}/{k}")
    elif isinstance(ref, list):
        assert len(ref) == len(ours), path
        for i, (a, b) in enumerate(zip(ref, ours)):
            assert_close(a, b, f"{path}[{i}]")
    elif isinstance(ref, float) or isinstance(ours, float):
        if math.isnan(ref):
            assert math.isnan(ours), f"{path}: devkit NaN, ours {ours}"
        else:
            assert abs(ref - ours) <= 1e-9, f"{path}: devkit {ref!r}, ours {ours!r}"
    else:
        assert ref == ours, f"{path}: devkit {ref!r}, ours {ours!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_matches_devkit(nusc, kind, tmp_path):
    results = make_predictions(nusc, kind, seed=KINDS.index(kind))
    ref = devkit_summary(nusc, results, tmp_path)
    summary = evaluate_detections(nusc, results, "mini_val")
    ours = json.loads(json.dumps(summary.to_dict()))
    for key in ("label_aps", "mean_dist_aps", "label_tp_errors", "tp_errors", "tp_scores", "cfg"):
        assert_close(ref[key], ours[key], key)
    for key in ("mean_ap", "nd_score"):
        assert_close(ref[key], ours[key], key)
    # The numbers are not all trivial: predictions found something.
    if kind == "perfect":
        assert ours["mean_ap"] > 1 - 1e-9, ours["mean_dist_aps"]
        assert ours["tp_errors"]["trans_err"] < 1e-9
    else:
        assert 0.01 < ours["mean_ap"] < 0.95


def test_path_and_dict_agree_and_files_match_devkit_layout(nusc, tmp_path):
    results = make_predictions(nusc, "noisy", seed=11)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    a = evaluate_detections(nusc, path, "mini_val")
    b = evaluate_detections(nusc, results, "mini_val")
    assert a.to_dict()["label_aps"] == b.to_dict()["label_aps"]
    assert a.nd_score == b.nd_score
    paths = write_metrics(a, tmp_path / "out")
    written = json.loads(paths["summary"].read_text())
    assert list(written) == [
        "label_aps",
        "mean_dist_aps",
        "mean_ap",
        "label_tp_errors",
        "tp_errors",
        "tp_scores",
        "nd_score",
        "eval_time",
        "cfg",
        "meta",
    ]
    assert written["meta"] == results["meta"]
    details = json.loads(paths["details"].read_text())
    assert set(details) == {
        f"{c}:{th}" for c in a.config.class_names for th in (0.5, 1.0, 2.0, 4.0)
    }
    assert len(details["car:2.0"]["precision"]) == 101


def test_curves_match_devkit_metric_data(nusc, tmp_path):
    """The full 101-point curves (metrics_details.json), not just their means."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    results = make_predictions(nusc, "ties", seed=5)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    ev = DetectionEval(
        nusc,
        config_factory("detection_cvpr_2019"),
        str(path),
        "mini_val",
        str(tmp_path / "dk"),
        verbose=False,
    )
    _, md_list = ev.evaluate()
    ours = evaluate_detections(nusc, results, "mini_val")
    for (cls, th), md in md_list.md.items():
        mine = ours.curves[(cls, th)]
        for name in CURVE_NAMES:
            np.testing.assert_allclose(
                getattr(mine, name),
                getattr(md, name),
                rtol=0,
                atol=1e-9,
                err_msg=f"{cls}:{th} {name}",
            )


def test_missing_sample_is_a_clear_error(nusc):
    from eval.detection import ResultsFormatError

    results = make_predictions(nusc, "noisy")
    dropped = next(iter(results["results"]))
    del results["results"][dropped]
    with pytest.raises(ResultsFormatError, match="1 of its .* samples missing"):
        evaluate_detections(nusc, results, "mini_val")


def test_all_samples_empty_scores_zero_where_the_devkit_crashes(nusc):
    results = make_predictions(nusc, "noisy")
    results["results"] = {t: [] for t in results["results"]}
    s = evaluate_detections(nusc, results, "mini_val")
    assert s.mean_ap == 0.0 and s.nd_score == 0.0
    assert all(v == 1.0 for v in s.tp_errors.values())
    assert s.label_tp_errors["barrier"]["vel_err"] != s.label_tp_errors["barrier"]["vel_err"]
