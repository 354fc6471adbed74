"""Data classes of the detection evaluation: boxes in columns, curves, the metrics summary."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eval.detection.config import CURVE_POINTS, TP_METRICS, DetectionConfig


def _ro(a: np.ndarray, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(a, dtype=dtype).reshape(shape))
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class EvalBoxSet:
    """Boxes of many samples in the global frame, one row per box, grouped by sample.

    Rows keep the order the official evaluation iterates boxes in (samples in
    ``sample_tokens`` order, boxes in file / annotation-table order within a sample), because
    that order decides ties in the confidence sort and in the nearest-centre match.

    Attributes:
        sample_tokens: the samples, in order (a sample may have no rows).
        sample_index: (N,) int64 row -> index into ``sample_tokens``; non-decreasing.
        translation: (N, 3) float64 box centre, global frame, metres.
        size: (N, 3) float64 width, length, height, metres.
        rotation: (N, 4) float64 quaternion (w, x, y, z), global frame.
        velocity: (N, 2) float64 (vx, vy), global frame, m/s; NaN when unknown.
        label: (N,) int64 index into ``DETECTION_CLASSES``.
        score: (N,) float64 detection confidence (-1 for ground truth).
        attribute: (N,) int64 index into ``ATTRIBUTE_NAMES``, -1 for no attribute.
        num_pts: (N,) int64 LiDAR + radar points in the box (ground truth), -1 when unknown.

    """

    sample_tokens: tuple[str, ...]
    sample_index: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    velocity: np.ndarray
    label: np.ndarray
    score: np.ndarray
    attribute: np.ndarray
    num_pts: np.ndarray

    def __post_init__(self) -> None:
        n = int(np.asarray(self.sample_index).shape[0])
        object.__setattr__(self, "sample_tokens", tuple(self.sample_tokens))
        object.__setattr__(self, "sample_index", _ro(self.sample_index, np.int64, (n,)))
        object.__setattr__(self, "translation", _ro(self.translation, np.float64, (n, 3)))
        object.__setattr__(self, "size", _ro(self.size, np.float64, (n, 3)))
        object.__setattr__(self, "rotation", _ro(self.rotation, np.float64, (n, 4)))
        object.__setattr__(self, "velocity", _ro(self.velocity, np.float64, (n, 2)))
        object.__setattr__(self, "label", _ro(self.label, np.int64, (n,)))
        object.__setattr__(self, "score", _ro(self.score, np.float64, (n,)))
        object.__setattr__(self, "attribute", _ro(self.attribute, np.int64, (n,)))
        object.__setattr__(self, "num_pts", _ro(self.num_pts, np.int64, (n,)))
        if n and np.any(np.diff(self.sample_index) < 0):
            raise ValueError("EvalBoxSet: rows must be grouped by sample in sample_tokens order")
        if n and (self.sample_index[0] < 0 or self.sample_index[-1] >= len(self.sample_tokens)):
            raise ValueError("EvalBoxSet: sample_index out of range")

    def __len__(self) -> int:
        return int(self.sample_index.shape[0])

    def subset(self, mask: np.ndarray) -> EvalBoxSet:
        """Rows where ``mask`` is True (order kept; all samples kept, possibly empty)."""
        return EvalBoxSet(
            self.sample_tokens,
            self.sample_index[mask],
            self.translation[mask],
            self.size[mask],
            self.rotation[mask],
            self.velocity[mask],
            self.label[mask],
            self.score[mask],
            self.attribute[mask],
            self.num_pts[mask],
        )

    def boxes_per_sample(self) -> np.ndarray:
        """(S,) int64 number of rows of each sample."""
        return np.bincount(self.sample_index, minlength=len(self.sample_tokens)).astype(np.int64)

    @staticmethod
    def concatenate(parts: list[EvalBoxSet]) -> EvalBoxSet:
        """Join sets with disjoint samples, in the order given."""
        tokens: list[str] = []
        idx = []
        for p in parts:
            idx.append(p.sample_index + len(tokens))
            tokens.extend(p.sample_tokens)

        def cat(name: str, width: int) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            if not arrays:
                return np.zeros((0, width) if width else (0,))
            return np.concatenate(arrays, axis=0)

        return EvalBoxSet(
            tokens,
            np.concatenate(idx) if idx else np.zeros(0, np.int64),
            cat("translation", 3),
            cat("size", 3),
            cat("rotation", 4),
            cat("velocity", 2),
            cat("label", 0),
            cat("score", 0),
            cat("attribute", 0),
            cat("num_pts", 0),
        )


CURVE_NAMES = (
    "recall",
    "precision",
    "confidence",
    "trans_err",
    "vel_err",
    "scale_err",
    "orient_err",
    "attr_err",
)


def _number(v: object, where: str) -> float:
    """A JSON number (null = NaN, as orjson writes NaN) as float, or a ValueError naming it."""
    if v is None:
        return float("nan")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where} must be a number, got {v!r}")
    return float(v)


@dataclass(frozen=True, eq=False)
class MetricCurves:
    """Precision/recall and TP-error curves of one class at one distance threshold.

    All arrays are (101,) float64, indexed by recall 0, 0.01, .., 1 (the devkit's
    ``DetectionMetricData``). ``confidence`` is the score threshold reaching that recall (0
    beyond the highest recall reached); the error curves are running means over the matches
    above that threshold.
    """

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    trans_err: np.ndarray
    vel_err: np.ndarray
    scale_err: np.ndarray
    orient_err: np.ndarray
    attr_err: np.ndarray

    def __post_init__(self) -> None:
        for name in CURVE_NAMES:
            object.__setattr__(self, name, _ro(getattr(self, name), np.float64, (CURVE_POINTS,)))

    @staticmethod
    def no_predictions() -> MetricCurves:
        """Curves of a class with no ground truth or no match: zero precision, errors 1."""
        ones = np.ones(CURVE_POINTS)
        zeros = np.zeros(CURVE_POINTS)
        return MetricCurves(
            np.linspace(0, 1, CURVE_POINTS), zeros, zeros, ones, ones, ones, ones, ones
        )

    @property
    def max_recall_index(self) -> int:
        """Index of the highest recall reached: the last non-zero confidence (0 if none)."""
        nz = np.nonzero(self.confidence)[0]
        return int(nz[-1]) if nz.size else 0

    @staticmethod
    def from_dict(content: dict) -> MetricCurves:
        """From a ``metrics_details.json`` entry (ours or the devkit's); null reads as NaN.

        Raises:
            ValueError: a curve is missing or is not 101 numbers.

        """
        arrays = {}
        for name in CURVE_NAMES:
            if name not in content:
                raise ValueError(f"curves: missing {name!r}")
            v = content[name]
            if not isinstance(v, list) or len(v) != CURVE_POINTS:
                raise ValueError(f"curves: {name!r} must be a list of {CURVE_POINTS} numbers")
            try:
                arrays[name] = np.array([np.nan if x is None else x for x in v], np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"curves: {name!r} has a non-numeric value") from None
        return MetricCurves(**arrays)

    def to_dict(self) -> dict[str, list[float]]:
        """The devkit's ``metrics_details.json`` entry layout."""
        return {
            "recall": self.recall.tolist(),
            "precision": self.precision.tolist(),
            "confidence": self.confidence.tolist(),
            "trans_err": self.trans_err.tolist(),
            "vel_err": self.vel_err.tolist(),
            "scale_err": self.scale_err.tolist(),
            "orient_err": self.orient_err.tolist(),
            "attr_err": self.attr_err.tolist(),
        }


@dataclass(frozen=True, eq=False)
class DetectionMetricsSummary:
    """Every number of a detection evaluation (the devkit's ``metrics_summary.json``).

    Attributes:
        label_aps: class -> distance threshold (m) -> AP.
        mean_dist_aps: class -> AP averaged over the thresholds.
        mean_ap: mAP, the mean of ``mean_dist_aps``.
        label_tp_errors: class -> TP metric -> error (NaN where undefined for the class).
        tp_errors: TP metric -> mean over classes, NaN ignored (mATE, mASE, mAOE, mAVE, mAAE).
        tp_scores: TP metric -> ``max(0, 1 - error)``.
        nd_score: NDS.
        eval_time_s: wall time of matching and metric computation, seconds.
        config: the settings used.
        meta: the results file's ``meta`` block.
        curves: (class, threshold) -> curves, for plots and ``metrics_details.json``.
        num_gt: class -> ground-truth boxes after filtering.
        num_pred: class -> predictions after filtering.

    """

    label_aps: dict[str, dict[float, float]]
    mean_dist_aps: dict[str, float]
    mean_ap: float
    label_tp_errors: dict[str, dict[str, float]]
    tp_errors: dict[str, float]
    tp_scores: dict[str, float]
    nd_score: float
    eval_time_s: float
    config: DetectionConfig
    meta: dict = field(default_factory=dict)
    curves: dict[tuple[str, float], MetricCurves] = field(default_factory=dict)
    num_gt: dict[str, int] = field(default_factory=dict)
    num_pred: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``metrics_summary.json`` in the devkit's layout (thresholds become string keys)."""
        return {
            "label_aps": {
                c: {str(th): float(ap) for th, ap in d.items()} for c, d in self.label_aps.items()
            },
            "mean_dist_aps": {c: float(v) for c, v in self.mean_dist_aps.items()},
            "mean_ap": float(self.mean_ap),
            "label_tp_errors": {
                c: {m: float(v) for m, v in d.items()} for c, d in self.label_tp_errors.items()
            },
            "tp_errors": {m: float(v) for m, v in self.tp_errors.items()},
            "tp_scores": {m: float(v) for m, v in self.tp_scores.items()},
            "nd_score": float(self.nd_score),
            "eval_time": float(self.eval_time_s),
            "cfg": self.config.to_dict(),
            "meta": dict(self.meta),
        }

    @staticmethod
    def from_dict(summary: dict, details: dict | None = None) -> DetectionMetricsSummary:
        """Read back ``metrics_summary.json`` (and ``metrics_details.json`` for the curves).

        Takes ours or the devkit's files (the devkit writes no ``meta``; NaN may be spelled
        NaN or null). ``num_gt`` / ``num_pred`` are not in the files and stay empty.

        Raises:
            ValueError: a missing field or a non-numeric value, naming it.

        """
        def get(key: str) -> object:
            if key not in summary:
                raise ValueError(f"metrics summary: missing field {key!r}")
            return summary[key]

        def table(key: str, cast_key: type = str) -> dict:
            d = get(key)
            if not isinstance(d, dict):
                raise ValueError(f"metrics summary: {key!r} must be an object")
            return {
                c: {cast_key(k): _number(v, f"{key}/{c}/{k}") for k, v in inner.items()}
                for c, inner in d.items()
            }

        def flat(key: str) -> dict[str, float]:
            d = get(key)
            if not isinstance(d, dict):
                raise ValueError(f"metrics summary: {key!r} must be an object")
            return {k: _number(v, f"{key}/{k}") for k, v in d.items()}

        curves: dict[tuple[str, float], MetricCurves] = {}
        for key, entry in (details or {}).items():
            cls, sep, th = key.rpartition(":")
            if not sep:
                raise ValueError(f"metrics details: key {key!r} is not 'class:threshold'")
            try:
                curves[(cls, float(th))] = MetricCurves.from_dict(entry)
            except ValueError as e:
                raise ValueError(f"metrics details: {key}: {e}") from None
        return DetectionMetricsSummary(
            label_aps=table("label_aps", float),
            mean_dist_aps=flat("mean_dist_aps"),
            mean_ap=_number(get("mean_ap"), "mean_ap"),
            label_tp_errors=table("label_tp_errors"),
            tp_errors=flat("tp_errors"),
            tp_scores=flat("tp_scores"),
            nd_score=_number(get("nd_score"), "nd_score"),
            eval_time_s=_number(get("eval_time"), "eval_time"),
            config=DetectionConfig.from_dict(get("cfg")),  # type: ignore[arg-type]
            meta=dict(summary.get("meta") or {}),
            curves=curves,
        )

    def details_dict(self) -> dict:
        """``metrics_details.json`` in the devkit's layout (``"car:0.5"`` -> curves)."""
        return {f"{c}:{th}": md.to_dict() for (c, th), md in self.curves.items()}

    def per_class_table(self) -> list[tuple[str, float, dict[str, float]]]:
        """(class, mean AP, TP errors) rows in config order."""
        return [
            (c, float(self.mean_dist_aps[c]), {m: self.label_tp_errors[c][m] for m in TP_METRICS})
            for c in self.config.class_names
        ]
