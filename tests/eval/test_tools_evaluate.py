"""tools/evaluate.py end to end: --results drop-in and --checkpoint (with a stand-in model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from eval_predictions import make_predictions
from test_detection_parity import assert_close, devkit_summary

from calibration.sample import Boxes3D
from perception.types import ControlCommand, FrameResult, PlanOutput

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("evaluate_tool", REPO / "tools" / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_results_drop_in_writes_devkit_layout_markdown_and_plots(tool, nusc, tmp_path):
    results = make_predictions(nusc, "noisy", seed=21)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "out"
    rc = tool.main(
        [
            "--results",
            str(path),
            "--dataroot",
            nusc.dataroot,
            "--version",
            "v1.0-mini",
            "--split",
            "mini_val",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    ours = json.loads((out / "metrics_summary.json").read_text())
    ref = devkit_summary(nusc, results, tmp_path)
    for key in ("label_aps", "label_tp_errors", "tp_errors", "mean_ap", "nd_score"):
        assert_close(ref[key], ours[key], key)
    md = (out / "summary.md").read_text()
    assert f"mAP {ours['mean_ap']:.4f} | NDS {ours['nd_score']:.4f}" in md
    assert "| barrier |" in md and "n/a" in md
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "pr_all_classes.png" in plots and "car_pr_tp.png" in plots and len(plots) == 11


def test_broken_results_exit_2_with_validator_messages(tool, nusc, tmp_path, capsys):
    results = make_predictions(nusc, "noisy", seed=2)
    tok = next(t for t, b in results["results"].items() if b)
    results["results"][tok][0]["detection_name"] = "unicorn"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(results))
    rc = tool.main(
        [
            "--results",
            str(path),
            "--dataroot",
            nusc.dataroot,
            "--version",
            "v1.0-mini",
            "--split",
            "mini_val",
            "--out",
            str(tmp_path / "o"),
            "--no-plots",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown detection_name 'unicorn'" in err and tok in err


class _StandIn:
    """Plays the trained model: ground-truth boxes (ego frame) as detections, GT future as
    plan; checks the tool's plumbing (ego -> global, tokens, poses, meta) end to end."""

    class cfg:  # noqa: N801 - mimics ModelConfig's attributes used by the tool
        class planning:  # noqa: N801
            dt_s = 0.5
            use_ego_status = True

        @staticmethod
        def uses(modality: str) -> bool:
            return modality == "lidar"

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def run(self, sample):
        b = sample.boxes
        keep = b.num_lidar_pts != 0
        b = b.subset(keep)
        n = len(b)
        dets = Boxes3D(
            b.center_m + self.rng.normal(0, 0.3, (n, 3)),
            b.wlh_m,
            b.yaw_rad,
            np.zeros((n, 2)),
            b.labels,
            self.rng.uniform(0.1, 1, n),
            b.attributes,
        )
        fut = np.nan_to_num(sample.future_xy_ego_m)
        return FrameResult(
            sample.token, dets, PlanOutput(fut + 0.5), ControlCommand(0.0, 0.0, 0.0, fut, aeb=False)
        )


def test_checkpoint_path(tool, nusc, tmp_path, monkeypatch):
    import perception.pipeline

    monkeypatch.setattr(
        perception.pipeline.Pipeline,
        "from_checkpoint",
        classmethod(lambda cls, path, device=None: _StandIn()),
    )
    out = tmp_path / "ck"
    rc = tool.main(
        [
            "--checkpoint",
            str(tmp_path / "unused"),
            "--dataroot",
            nusc.dataroot,
            "--version",
            "v1.0-mini",
            "--split",
            "mini_val",
            "--out",
            str(out),
            "--no-plots",
        ]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["use_lidar"] and not results["meta"]["use_camera"]
    ours = json.loads((out / "metrics_summary.json").read_text())
    ref = devkit_summary(nusc, results, tmp_path)
    for key in ("label_aps", "label_tp_errors", "tp_errors", "mean_ap", "nd_score"):
        assert_close(ref[key], ours[key], key)
    # Detections were GT + 0.3 m noise, so the boxes landed where the GT is, in global frame.
    assert ours["label_aps"]["car"]["2.0"] > 0.9
    report = json.loads((out / "planning.json").read_text())
    assert report["planning"]["L2_at_1s_m"] == pytest.approx(np.sqrt(0.5), abs=1e-9)
    assert report["failures"] == 0 and report["aeb"]["num_fired"] == 0
