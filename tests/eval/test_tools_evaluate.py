"""drivefuse evaluate end to end: --results drop-in and --checkpoint (with a stand-in model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_predictions import make_predictions
from test_detection_parity import assert_close, devkit_summary

from calibration.sample import Boxes3D
from eval.cli import run_main
from eval.detection import ResultsFormatError
from perception.types import ControlCommand, FrameResult, PlanOutput

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tool():
    from eval.commands import evaluate  # `drivefuse evaluate`; tools/evaluate.py is its alias

    return evaluate


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
    rc = run_main(
        tool.main,
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

    from perception.control import ControlConfig

    control_cfg = ControlConfig()  # as Pipeline.control_cfg: the AEB metric's stopping rule

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

    def run_with_maps(self, sample, *shared, **kw):
        """The runner's entry point (shared preprocessing, reused branch maps: unused here)."""
        return self.run(sample), None


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


# ------------------------------------------------------------ failures, exit codes, stale outputs


class _Failing(_StandIn):
    """Fails on every ``every``-th sample with the error a corrupt file gives."""

    def __init__(self, every: int):
        super().__init__()
        self.every, self.calls = every, 0

    def run(self, sample):
        self.calls += 1
        if self.calls % self.every == 0:
            from sensors.readers import SensorFileError

            raise SensorFileError(f"/data/samples/CAM_FRONT/{sample.token}.jpg: JPEG truncated")
        return super().run(sample)


def _checkpoint_args(nusc, out, *extra):
    return ["--checkpoint", "unused", "--dataroot", nusc.dataroot, "--version", "v1.0-mini",
            "--split", "mini_val", "--out", str(out), "--no-plots", *extra]


def _stand_in(monkeypatch, model):
    import perception.pipeline

    monkeypatch.setattr(perception.pipeline.Pipeline, "from_checkpoint",
                        classmethod(lambda cls, path, device=None: model))


def test_every_sample_failed_exits_1_and_lists_failures_with_files(tool, nusc, tmp_path,
                                                                    monkeypatch, capsys):
    _stand_in(monkeypatch, _Failing(every=1))
    out = tmp_path / "all_failed"
    assert tool.main(_checkpoint_args(nusc, out)) == 1
    assert "samples failed (100.0%: all of them)" in capsys.readouterr().err
    md = (out / "summary.md").read_text()
    n = len(json.loads((out / "results.json").read_text())["results"])
    assert f"{n} of {n} samples failed" in md
    assert md.count("/data/samples/CAM_FRONT/") == n and "JPEG truncated" in md
    failures = json.loads((out / "failures.json").read_text())
    assert len(failures["failed_samples"]) == n


def test_max_failure_rate(tool, nusc, tmp_path, monkeypatch):
    _stand_in(monkeypatch, _Failing(every=2))  # half of the samples fail
    assert tool.main(_checkpoint_args(nusc, tmp_path / "a")) == 0  # default: only all-failed
    _stand_in(monkeypatch, _Failing(every=2))
    assert tool.main(_checkpoint_args(nusc, tmp_path / "b", "--max-failure-rate", "0.25")) == 1
    _stand_in(monkeypatch, _Failing(every=2))
    assert tool.main(_checkpoint_args(nusc, tmp_path / "c", "--max-failure-rate", "0.6")) == 0
    md = (tmp_path / "c" / "summary.md").read_text()
    assert "## Failures" in md and "samples failed" in md


def test_rerun_leaves_no_stale_outputs_and_a_failed_run_changes_nothing(tool, nusc, tmp_path):
    results = make_predictions(nusc, "noisy", seed=3)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # not an output of the tool: never touched
    args = ["--results", str(path), "--dataroot", nusc.dataroot, "--version", "v1.0-mini",
            "--split", "mini_val", "--out", str(out), "--no-plots"]
    assert tool.main([*args, "--by-condition"]) == 0
    assert (out / "metrics_by_condition.json").is_file()
    (out / "metrics_summary.json").write_text("{}")  # a marker: a rerun must replace it
    assert tool.main(args) == 0
    first = (out / "metrics_summary.json").read_text()
    assert json.loads(first)["mean_ap"] > 0
    assert not (out / "metrics_by_condition.json").exists()  # the rerun did not write it
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".out.staging-*"))
    results["results"][next(iter(results["results"]))] = "not a list"
    path.write_text(json.dumps(results))
    with pytest.raises(ResultsFormatError, match="must be a list of boxes"):
        tool.main(args)
    assert (out / "metrics_summary.json").read_text() == first
    assert not list(tmp_path.glob(".out.staging-*"))


def test_empty_weights_file_is_one_line_exit_2(tool, nusc, tmp_path, capsys):
    from perception.config import config_to_dict, preset

    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps(config_to_dict(preset("tiny", "lidar_only"))))
    (ck / "model.pt").write_bytes(b"")
    args = _checkpoint_args(nusc, tmp_path / "o")
    args[1] = str(ck)
    assert run_main(tool.main, args, prog="evaluate.py") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("evaluate.py: error: checkpoint ") and "model.pt: the weights " \
        "file is empty" in err[-1]
