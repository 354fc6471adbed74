"""What the replay summary measures: stage latency percentiles and the keyframe metrics.

Latency keeps one float per tick and stage in compact arrays (8 bytes each: an hour at 20 Hz is
a few MB); keyframe detections are spilled to ``keyframes.jsonl`` as they come and read back
once at the end, so memory stays flat however long the drive.
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np
import orjson

from eval.detection import DetectionMetricsSummary, default_config, evaluate_boxes, load_results
from eval.detection.config import DetectionConfig
from eval.detection.loading import ego_translations, filter_boxes, load_gt_and_bike_racks


class LatencyStats:
    """Per-stage latency samples (ms) -> p50 / p95 / max / mean."""

    def __init__(self) -> None:
        self._values: dict[str, array] = {}

    def add(self, latency_ms: dict[str, float]) -> None:
        """Record one tick's stages."""
        for k, v in latency_ms.items():
            self._values.setdefault(k, array("d")).append(float(v))

    def median(self, stage: str) -> float:
        """Median of one stage (NaN when never recorded)."""
        v = self._values.get(stage)
        return float(np.median(np.frombuffer(v, np.float64))) if v else float("nan")

    def table(self) -> dict[str, dict[str, float]]:
        """Stage -> {n, p50, p95, max, mean}, stages in first-seen order."""
        out = {}
        for k, v in self._values.items():
            a = np.frombuffer(v, np.float64)
            out[k] = {
                "n": int(a.size),
                "p50": float(np.percentile(a, 50)),
                "p95": float(np.percentile(a, 95)),
                "max": float(a.max()),
                "mean": float(a.mean()),
            }
        return out


def evaluate_keyframes(
    nusc,  # noqa: ANN001 - a nuscenes.NuScenes
    results: dict,
    config: DetectionConfig | None = None,
) -> DetectionMetricsSummary:
    """The nuScenes detection metrics of ``results`` on exactly its samples (the replayed
    keyframes), as the devkit's ``DetectionEval`` scores a split made of just those samples:
    the same loading, the same filters (range, bike racks, no-points boxes) and scoring as
    ``eval.detection.evaluate_detections``.
    """
    config = config or default_config()
    pred, meta = load_results(results, config.max_boxes_per_sample)
    tokens = list(results["results"])
    gt, racks = load_gt_and_bike_racks(nusc, tokens)
    ego_gt = ego_translations(nusc, tokens)
    gt = filter_boxes(nusc, gt, config, ego_gt, racks)
    gt_id = {t: i for i, t in enumerate(tokens)}
    pred_to_gt = np.array([gt_id[t] for t in pred.sample_tokens], np.int64)
    inverse = {g: i for i, g in enumerate(pred_to_gt.tolist())}
    pred_racks = {inverse[si]: recs for si, recs in racks.items() if si in inverse}
    pred = filter_boxes(nusc, pred, config, ego_gt[pred_to_gt], pred_racks)
    return evaluate_boxes(gt, pred, config, meta)


class KeyframeSpill:
    """Keyframe result records written to a JSON-lines file as they come, read back at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._f = path.open("wb")

    def write(self, sample_token: str, records: list[dict]) -> None:
        """One keyframe's result records (global frame, nuScenes fields)."""
        self._f.write(orjson.dumps({"sample_token": sample_token, "boxes": records}) + b"\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._f.closed:
            self._f.close()

    def results(self, meta: dict) -> dict:
        """The nuScenes results dict of every keyframe written (file order)."""
        self.close()
        out: dict[str, list[dict]] = {}
        with self.path.open("rb") as f:
            for line in f:
                if line.strip():
                    rec = orjson.loads(line)
                    out[rec["sample_token"]] = rec["boxes"]
        return {"meta": meta, "results": out}
