"""``ModelRun``'s typed records (``SampleFacts``, ``SampleFailure``) and what ``report`` makes
of them: the AEB metric with the pipeline's controller, sensor-fault counts, the ablation key."""

from __future__ import annotations

import numpy as np

from calibration.se3 import SE3
from eval.runner import ModelRun, SampleFacts, SampleFailure
from perception.control import ControlConfig


class _OneSampleScene:
    """The least of a ``NuScenes`` that ``nuscenes_future_boxes`` reads: a lone keyframe."""

    def get(self, table: str, token: str) -> dict:
        match table:
            case "sample":
                return {"timestamp": 0, "data": {"LIDAR_TOP": "sd"}, "next": ""}
            case "sample_data":
                return {"ego_pose_token": "pose"}
            case "ego_pose":
                return {"translation": [0.0, 0.0, 0.0], "rotation": [1.0, 0.0, 0.0, 0.0]}
        raise KeyError(table)


def _line(step_m: float) -> np.ndarray:
    """Six waypoints 0.5 s apart straight ahead, ``step_m`` apart (3 s horizon)."""
    return np.c_[step_m * np.arange(1, 7), np.zeros(6)]


def _run(control: ControlConfig | None = None, future: np.ndarray | None = None) -> ModelRun:
    # 10 m/s with an obstacle 15 m ahead: the default controller (6 m/s^2) stops in 10.8 m,
    # one braking at 3 m/s^2 needs 19.2 m -- so only the latter calls braking "needed".
    run = ModelRun(control=control)
    run.add_empty("t", SE3.identity())
    run.plans["t"] = _line(5.0)
    run.samples["t"] = SampleFacts(
        future_xy=future, steer_rad=0.0, aeb=True, can_speed_mps=10.0,
        can_yaw_rate_radps=0.0, can_steering_rad=0.0, obstacle_distance_m=15.0,
        ego_speed_mps=10.0,
    )
    return run


def test_aeb_metric_uses_the_runs_controller_config():
    assert _run().report(None)["aeb"]["num_needed"] == 0
    soft = _run(ControlConfig(aeb_decel_mps2=3.0)).report(None)["aeb"]
    assert soft["num_needed"] == 1 and soft["precision"] == 1.0


def test_report_counts_failures_and_sensor_faults():
    run = _run()
    run.failures.append(SampleFailure.of("u", ValueError("bad frame")))
    run.sensor_faults.extend(["fault a", "fault b"])  # type: ignore[list-item]
    out = run.report(None)
    assert (out["samples"], out["failures"], out["sensor_faults"]) == (1, 1, 2)
    assert run.failures[0].to_dict() == {"sample_token": "u", "error": "ValueError: bad frame"}
    assert out["control_vs_can_bus"]["steer_mae_rad"] == 0.0


def test_ego_status_ablation_has_a_plain_key():
    run = _run(future=_line(5.0))
    run.plans_without_ego_status["t"] = _line(4.0)  # 1, 2, .. 6 m off: 3.5 m on average
    out = run.report(_OneSampleScene())
    ab = out["planning_ego_status_ablation"]
    assert ab["with_ego_status"]["L2_avg_3s_m"] == 0.0
    np.testing.assert_allclose(ab["difference (without - with)"]["L2_avg_3s_m"], 3.5)
    assert out["planning"]["L2_avg_3s_m"] == 0.0
