"""Writing our detections as a nuScenes results file, and validating any results file."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from calibration.sample import Boxes3D
from calibration.se3 import SE3
from eval.detection.config import ATTRIBUTE_NAMES
from eval.detection.data import EvalBoxSet
from sensors.types import DETECTION_CLASSES

MAX_BOXES_PER_SAMPLE = 500
_META_FIELDS = ("use_camera", "use_lidar", "use_radar", "use_map", "use_external")
_VECTOR_FIELDS = (("translation", 3), ("size", 3), ("rotation", 4), ("velocity", 2))


@dataclass(frozen=True)
class ResultsMeta:
    """The ``meta`` block of a results file: which inputs the method used."""

    use_camera: bool = False
    use_lidar: bool = False
    use_radar: bool = False
    use_map: bool = False
    use_external: bool = False

    def to_dict(self) -> dict[str, bool]:
        """As written to the file."""
        return {f: bool(getattr(self, f)) for f in _META_FIELDS}


def _global_columns(
    boxes_ego: Boxes3D, global_SE3_ego: SE3  # noqa: N803 - frame naming convention
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centres, sizes, (w, x, y, z) yaw quaternions and velocities (NaN -> 0) of ``boxes_ego``
    in the global frame, as a results file holds them.
    """
    g = boxes_ego.transformed(global_SE3_ego)
    half = g.yaw_rad / 2
    q = np.stack([np.cos(half), np.zeros_like(half), np.zeros_like(half), np.sin(half)], axis=1)
    vel = np.where(np.isfinite(g.velocity_mps), g.velocity_mps, 0.0)
    return g.center_m, g.wlh_m, q, vel


def boxes_to_records(
    sample_token: str,
    boxes_ego: Boxes3D,
    global_SE3_ego: SE3,  # noqa: N803 - frame naming convention
) -> list[dict]:
    """Result records of one sample's boxes, moved from the ego frame to the global frame.

    Rotation is yaw about the global z axis written as a (w, x, y, z) quaternion; velocity is
    the rotated (vx, vy); a NaN velocity (not estimated) is written as 0.
    """
    center, wlh, q, vel = _global_columns(boxes_ego, global_SE3_ego)
    # Whole arrays to Python lists at once (the same floats as per-element conversion).
    columns = zip(center.tolist(), wlh.tolist(), q.tolist(), vel.tolist(),
                  np.asarray(boxes_ego.labels).tolist(),
                  np.asarray(boxes_ego.scores, np.float64).tolist(), boxes_ego.attributes,
                  strict=True)
    return [
        {
            "sample_token": sample_token,
            "translation": t,
            "size": s,
            "rotation": r,
            "velocity": v,
            "detection_name": DETECTION_CLASSES[int(lab)],
            "detection_score": sc,
            "attribute_name": a,
        }
        for t, s, r, v, lab, sc, a in columns
    ]


def _capped(boxes: Boxes3D, max_boxes_per_sample: int) -> Boxes3D:
    if len(boxes) <= max_boxes_per_sample:
        return boxes
    # Stable sort: equal scores keep their order.
    keep = np.sort(np.argsort(-boxes.scores, kind="stable")[:max_boxes_per_sample])
    return boxes.subset(keep)


def results_boxes(
    dets_by_sample: Mapping[str, Boxes3D],
    global_SE3_ego_by_sample: Mapping[str, SE3],  # noqa: N803 - frame naming convention
    max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE,
) -> EvalBoxSet:
    """The columns ``load_results(write_results(...))`` reads back, without the records.

    The same boxes, values and order as the file round trip (float64 of the same floats; a
    NaN velocity as 0; at most ``max_boxes_per_sample`` per sample), and the same refusal of
    non-finite values. The benchmark scores hundreds of cells: building and parsing a
    record dict per box was over half of a cell's scoring time.
    """
    from eval.detection.loading import ATTRIBUTE_TO_ID, boxes_from_columns

    tokens = list(dets_by_sample)
    parts = []
    for i, token in enumerate(tokens):
        if token not in global_SE3_ego_by_sample:
            raise KeyError(f"results_boxes: no ego pose for sample {token}")
        boxes = _capped(dets_by_sample[token], max_boxes_per_sample)
        if not len(boxes):
            continue
        center, wlh, q, vel = _global_columns(boxes, global_SE3_ego_by_sample[token])
        parts.append({
            "sample_index": np.full(len(boxes), i, np.int64),
            "translation": np.asarray(center, np.float64),
            "size": np.asarray(wlh, np.float64),
            "rotation": np.asarray(q, np.float64),
            "velocity": np.asarray(vel, np.float64),
            "label": np.asarray(boxes.labels, np.int64),
            "score": np.asarray(boxes.scores, np.float64),
            "attribute": np.array([ATTRIBUTE_TO_ID[a] for a in boxes.attributes], np.int64),
            "num_pts": np.full(len(boxes), -1, np.int64),
        })
    return boxes_from_columns(tokens, parts, "results")


def write_results(
    dets_by_sample: Mapping[str, Boxes3D],
    global_SE3_ego_by_sample: Mapping[str, SE3],  # noqa: N803 - frame naming convention
    meta: ResultsMeta | Mapping[str, bool],
    path: str | Path | None = None,
    max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE,
) -> dict:
    """Build (and optionally write) a nuScenes detection results file from ego-frame boxes.

    Args:
        dets_by_sample: sample token -> detections in that sample's ego frame (empty allowed).
        global_SE3_ego_by_sample: sample token -> ego pose at the sample's LiDAR timestamp.
        meta: which inputs the method used.
        path: where to write the JSON (None: only return it).
        max_boxes_per_sample: keep only this many highest-scoring boxes per sample (the
            official limit is 500).

    Returns:
        ``{"meta": {...}, "results": {sample_token: [box records]}}``.

    """
    meta_dict = (
        meta.to_dict()
        if isinstance(meta, ResultsMeta)
        else {f: bool(meta.get(f, False)) for f in _META_FIELDS}
    )
    results: dict[str, list[dict]] = {}
    for token, boxes in dets_by_sample.items():
        if token not in global_SE3_ego_by_sample:
            raise KeyError(f"write_results: no ego pose for sample {token}")
        results[token] = boxes_to_records(token, _capped(boxes, max_boxes_per_sample),
                                          global_SE3_ego_by_sample[token])
    out = {"meta": meta_dict, "results": results}
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(orjson.dumps(out))
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def box_problems(box: object, sample_token: str, index: int) -> list[str]:
    """What is wrong with one box record (empty list: nothing)."""
    where = f"sample {sample_token} box {index}"
    if not isinstance(box, dict):
        return [f"{where}: a box must be a JSON object, got {type(box).__name__}"]
    problems = []
    if box.get("sample_token") != sample_token:
        problems.append(
            f"{where}: sample_token is {box.get('sample_token')!r}, but the box is listed "
            f"under {sample_token!r}"
        )
    for name, width in _VECTOR_FIELDS:
        if name not in box:
            problems.append(f"{where}: missing field {name!r}")
            continue
        v = box[name]
        if not isinstance(v, list) or len(v) != width:
            got = len(v) if isinstance(v, list) else type(v).__name__
            problems.append(f"{where}: {name} must be a list of {width} numbers, got {got}")
            continue
        if not all(_is_number(x) for x in v):
            problems.append(f"{where}: {name} has a non-numeric value {v}")
        elif not all(math.isfinite(x) for x in v):
            problems.append(f"{where}: {name} has a non-finite value {v}")
        elif name == "size" and min(v) <= 0:
            problems.append(f"{where}: size must be positive, got {v}")
        elif name == "rotation" and sum(x * x for x in v) == 0:
            problems.append(f"{where}: rotation is the zero quaternion")
    name = box.get("detection_name")
    if name not in DETECTION_CLASSES:
        problems.append(
            f"{where}: unknown detection_name {name!r}; expected one of {list(DETECTION_CLASSES)}"
        )
    if "detection_score" not in box:
        problems.append(f"{where}: missing field 'detection_score'")
    else:
        s = box["detection_score"]
        if not _is_number(s):
            problems.append(f"{where}: detection_score must be a number, got {s!r}")
        elif not math.isfinite(s):
            problems.append(f"{where}: detection_score is non-finite ({s})")
    attr = box.get("attribute_name")
    if attr is None:
        problems.append(f"{where}: missing field 'attribute_name' (use \"\" for none)")
    elif attr != "" and attr not in ATTRIBUTE_NAMES:
        problems.append(
            f'{where}: unknown attribute_name {attr!r}; expected "" or one of '
            f"{list(ATTRIBUTE_NAMES)}"
        )
    return problems


def validate_results(
    results: dict | str | Path,
    sample_tokens: Iterable[str] | None = None,
    max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE,
    max_problems: int = 50,
) -> list[str]:
    """Every problem of a results file that would make the official evaluation fail or lie.

    Args:
        results: the results dict or JSON path.
        sample_tokens: the samples of the split being evaluated; each must be present and no
            other (None: not checked).
        max_boxes_per_sample: most boxes a sample may have.
        max_problems: stop after this many box-level problems.

    Returns:
        Human-readable problems, empty when the file is valid.

    """
    if not isinstance(results, dict):
        p = Path(results)
        if not p.is_file():
            return [f"{p}: file not found"]
        try:
            results = orjson.loads(p.read_bytes())
        except orjson.JSONDecodeError as e:
            return [f"{p}: not valid JSON ({e})"]
    if not isinstance(results, dict):
        return ["the top level must be an object with 'meta' and 'results'"]
    problems: list[str] = []
    meta = results.get("meta")
    if not isinstance(meta, dict):
        problems.append("missing 'meta' object (use_camera, use_lidar, use_radar, ...)")
    else:
        for f in _META_FIELDS:
            if not isinstance(meta.get(f), bool):
                problems.append(f"meta: {f!r} must be true or false, got {meta.get(f)!r}")
    res = results.get("results")
    if not isinstance(res, dict):
        problems.append("missing 'results' object (sample token -> list of boxes)")
        return problems
    if sample_tokens is not None:
        expected = list(sample_tokens)
        expected_set = set(expected)
        missing = [t for t in expected if t not in res]
        extra = [t for t in res if t not in expected_set]
        if missing:
            problems.append(
                f"{len(missing)} sample(s) of the split missing from results, e.g. "
                f"{missing[:3]} (add them with an empty list)"
            )
        if extra:
            problems.append(f"{len(extra)} sample(s) not in the split, e.g. {extra[:3]}")
    box_count = 0
    for token, boxes in res.items():
        if not isinstance(boxes, list):
            problems.append(f"sample {token}: must map to a list of boxes")
            continue
        if len(boxes) > max_boxes_per_sample:
            problems.append(
                f"sample {token}: {len(boxes)} boxes, more than the {max_boxes_per_sample} allowed"
            )
        for i, box in enumerate(boxes):
            found = box_problems(box, token, i)
            if found:
                box_count += len(found)
                problems.extend(found)
                if box_count >= max_problems:
                    problems.append(f"(stopped after {max_problems} box problems)")
                    return problems
    return problems
