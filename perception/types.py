"""Outputs of the perception stack: detections, plan, control, per-frame result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calibration.sample import Boxes3D

# Detections3D is a Boxes3D whose ``scores`` are model confidences (ego frame at the reference
# LiDAR timestamp). One type for ground truth and predictions keeps eval and drawing code single.
Detections3D = Boxes3D


@dataclass(frozen=True, eq=False)
class PlanOutput:
    """Planned ego trajectory.

    Attributes:
        waypoints_xy_ego_m: (6, 2) float64 positions at +0.5 s .. +3.0 s in the ego frame.
        dt_s: time between waypoints, seconds.

    """

    waypoints_xy_ego_m: np.ndarray
    dt_s: float = 0.5


@dataclass(frozen=True, eq=False)
class ControlCommand:
    """Low-level control for one tick.

    Attributes:
        steer_rad: front-wheel steering angle, radians (positive = left).
        accel_mps2: longitudinal acceleration request, m/s^2 (negative = decelerate).
        brake: brake request in [0, 1].
        trajectory: (6, 2) the plan the command follows, ego frame, metres.
        aeb: True when automatic emergency braking fired.
        reason: why AEB fired (``"ultrasonic 0.42 m"``, ``"box car in path at 3.1 m"``) or ``""``.

    """

    steer_rad: float
    accel_mps2: float
    brake: float
    trajectory: np.ndarray
    aeb: bool = False
    reason: str = ""


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything the pipeline produced for one ``SyncedSample``.

    Attributes:
        token: the sample's token.
        detections: boxes in the reference ego frame.
        plan: planned trajectory.
        control: control command.
        timings_ms: per-stage wall time, milliseconds (stage name -> ms).

    """

    token: str
    detections: Detections3D
    plan: PlanOutput
    control: ControlCommand
    timings_ms: dict[str, float] = field(default_factory=dict)
