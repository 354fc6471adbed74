"""Detection evaluation settings (the devkit's ``detection_cvpr_2019`` by default).

The numbers themselves are read from the installed nuscenes-devkit's shipped JSON so that our
defaults can never drift from the official ones; a user can pass any other JSON of that layout.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import orjson

from sensors.types import DETECTION_CLASSES

# The attribute vocabulary of the detection challenge (devkit order).
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "pedestrian.moving",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "cycle.with_rider",
    "cycle.without_rider",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
)
# The five true-positive error metrics, in the devkit's order (also the order of NDS terms).
TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
TP_METRIC_ABBREVIATIONS: dict[str, str] = {
    "trans_err": "mATE",
    "scale_err": "mASE",
    "orient_err": "mAOE",
    "vel_err": "mAVE",
    "attr_err": "mAAE",
}
TP_METRIC_UNITS: dict[str, str] = {
    "trans_err": "m",
    "scale_err": "1-IoU",
    "orient_err": "rad",
    "vel_err": "m/s",
    "attr_err": "1-acc",
}
# TP metrics that are undefined for a class (reported as NaN and left out of the class mean):
# cones have no heading, attribute or velocity; barriers have no attribute or velocity.
UNDEFINED_TP_METRICS: dict[str, frozenset[str]] = {
    "traffic_cone": frozenset({"attr_err", "vel_err", "orient_err"}),
    "barrier": frozenset({"attr_err", "vel_err"}),
}
# Classes whose heading is only defined up to 180 degrees.
HALF_PERIOD_YAW_CLASSES: frozenset[str] = frozenset({"barrier"})
# nuScenes categories whose annotations remove bicycle/motorcycle boxes parked inside them.
BIKE_RACK_CATEGORY = "static_object.bicycle_rack"
BIKE_RACK_FILTERED_CLASSES: frozenset[str] = frozenset({"bicycle", "motorcycle"})

# Number of points the precision/recall curves are resampled onto (recall 0, 0.01, .., 1).
CURVE_POINTS = 101


@dataclass(frozen=True)
class DetectionConfig:
    """How detections are scored.

    Attributes:
        class_range_m: per class, boxes whose xy distance to the ego vehicle is not below this
            (metres) are dropped, for ground truth and predictions alike.
        dist_fcn: matching distance; only ``"center_distance"`` (xy centre distance) exists.
        dist_ths_m: matching thresholds (metres); AP is averaged over them.
        dist_th_tp_m: the threshold whose matches give the TP errors; one of ``dist_ths_m``.
        min_recall: recall below which (inclusive) AP and TP errors ignore the curve.
        min_precision: precision subtracted (and clipped at 0) before AP is normalised.
        max_boxes_per_sample: most predictions a sample may have.
        mean_ap_weight: weight of mAP in NDS against each of the five TP scores.

    """

    class_range_m: tuple[tuple[str, float], ...]
    dist_fcn: str = "center_distance"
    dist_ths_m: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp_m: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    max_boxes_per_sample: int = 500
    mean_ap_weight: float = 5

    def __post_init__(self) -> None:
        names = [c for c, _ in self.class_range_m]
        if sorted(names) != sorted(DETECTION_CLASSES) or len(set(names)) != len(names):
            raise ValueError(
                f"DetectionConfig: class_range must name each of {DETECTION_CLASSES} once, "
                f"got {names}"
            )
        if self.dist_fcn != "center_distance":
            raise ValueError(f"DetectionConfig: unknown dist_fcn {self.dist_fcn!r}")
        if self.dist_th_tp_m not in self.dist_ths_m:
            raise ValueError(
                f"DetectionConfig: dist_th_tp {self.dist_th_tp_m} is not one of {self.dist_ths_m}"
            )
        if not (0 <= self.min_precision < 1 and 0 <= self.min_recall <= 1):
            raise ValueError(
                "DetectionConfig: min_precision must be in [0, 1), min_recall in [0, 1]"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        """Evaluated classes in config order (the order every per-class table uses)."""
        return tuple(c for c, _ in self.class_range_m)

    @property
    def class_range(self) -> dict[str, float]:
        """Class -> range (metres)."""
        return dict(self.class_range_m)

    @property
    def first_curve_index(self) -> int:
        """First index of the 101-point curves that AP and TP errors use.

        The bin at ``min_recall`` itself is excluded, hence the ``+ 1``.
        """
        return _round_half_even(100 * self.min_recall) + 1

    def to_dict(self) -> dict:
        """The devkit's JSON layout of a detection config."""
        return {
            "class_range": dict(self.class_range_m),
            "dist_fcn": self.dist_fcn,
            "dist_ths": list(self.dist_ths_m),
            "dist_th_tp": self.dist_th_tp_m,
            "min_recall": self.min_recall,
            "min_precision": self.min_precision,
            "max_boxes_per_sample": self.max_boxes_per_sample,
            "mean_ap_weight": self.mean_ap_weight,
        }

    @staticmethod
    def from_dict(content: dict) -> DetectionConfig:
        """From the devkit's JSON layout (``class_range``, ``dist_ths``, ...)."""
        try:
            return DetectionConfig(
                class_range_m=tuple(content["class_range"].items()),
                dist_fcn=content["dist_fcn"],
                dist_ths_m=tuple(content["dist_ths"]),
                dist_th_tp_m=content["dist_th_tp"],
                min_recall=content["min_recall"],
                min_precision=content["min_precision"],
                max_boxes_per_sample=content["max_boxes_per_sample"],
                mean_ap_weight=content["mean_ap_weight"],
            )
        except KeyError as e:
            raise ValueError(
                f"DetectionConfig: config is missing the field {e.args[0]!r}"
            ) from None


def _round_half_even(x: float) -> int:
    # Python's round() (banker's rounding) is what the official code uses for this index.
    return int(round(x)) if math.isfinite(x) else 0


def devkit_config_path(name: str = "detection_cvpr_2019") -> Path:
    """Path of a detection config JSON shipped with the installed nuscenes-devkit."""
    # find_spec locates the package without importing it (importing pulls in matplotlib, cv2).
    spec = importlib.util.find_spec("nuscenes")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("nuscenes-devkit is not installed; pass a config JSON path")
    path = Path(spec.origin).resolve().parent / "eval" / "detection" / "configs" / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no detection config named {name!r} at {path}")
    return path


def load_config(name_or_path: str | Path = "detection_cvpr_2019") -> DetectionConfig:
    """A config by devkit name (``"detection_cvpr_2019"``) or from a JSON file path."""
    p = Path(name_or_path)
    path = p if p.suffix == ".json" or p.is_file() else devkit_config_path(str(name_or_path))
    try:
        content = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return DetectionConfig.from_dict(content)


def default_config() -> DetectionConfig:
    """The official ``detection_cvpr_2019`` settings."""
    return load_config("detection_cvpr_2019")
