"""nuScenes detection evaluation: the devkit's numbers, computed in columns and much faster.

Entry points: :func:`evaluate_detections` (results file or dict -> metrics summary),
:func:`write_results` (our ego-frame detections -> results file), :func:`validate_results`.
"""

from eval.detection.config import DetectionConfig, default_config, load_config
from eval.detection.data import DetectionMetricsSummary, EvalBoxSet, MetricCurves
from eval.detection.evaluate import (
    evaluate_boxes,
    evaluate_by_condition,
    evaluate_detections,
    evaluate_with_conditions,
    read_metrics,
    scene_conditions,
    write_metrics,
)
from eval.detection.loading import ResultsFormatError, load_gt, load_results, split_sample_tokens
from eval.detection.results import ResultsMeta, validate_results, write_results

__all__ = [
    "DetectionConfig",
    "DetectionMetricsSummary",
    "EvalBoxSet",
    "MetricCurves",
    "ResultsFormatError",
    "ResultsMeta",
    "default_config",
    "evaluate_boxes",
    "evaluate_by_condition",
    "evaluate_detections",
    "evaluate_with_conditions",
    "load_config",
    "load_gt",
    "load_results",
    "read_metrics",
    "scene_conditions",
    "split_sample_tokens",
    "validate_results",
    "write_metrics",
    "write_results",
]
