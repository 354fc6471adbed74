"""Loading results files and ground truth into columns, and the official box filters.

Results files of a validation run are large (6,000 samples x 500 boxes is about 1.3 GB of
JSON). Parsing one into Python objects costs several GB, so a file is streamed: a Numba scanner
finds the sample boundaries inside ``"results"`` chunk by chunk, orjson parses a few megabytes
of samples at a time, and those are turned into numpy columns before the next chunk is read.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path

import numpy as np
import orjson
from pyquaternion import Quaternion

from eval.detection.config import (
    ATTRIBUTE_NAMES,
    BIKE_RACK_CATEGORY,
    BIKE_RACK_FILTERED_CLASSES,
    DetectionConfig,
)
from eval.detection.data import EvalBoxSet
from eval.detection.fastjson import (
    _CLOSE,
    _COMMA,
    _OPEN,
    _STR_END,
    _STR_START,
    END,
    FAILED,
    KEY_NAMES,
    _scan_json_structure,
    pack_names,
    parse_entries,
)
from sensors.types import CATEGORY_TO_DETECTION_CLASS, DETECTION_CLASSES

CLASS_TO_ID: dict[str, int] = {c: i for i, c in enumerate(DETECTION_CLASSES)}
ATTRIBUTE_TO_ID: dict[str, int] = {a: i for i, a in enumerate(ATTRIBUTE_NAMES)}
ATTRIBUTE_TO_ID[""] = -1

# The devkit allows at most this much time (s) between the two annotations a velocity is
# differenced from (twice this for a centred difference).
VELOCITY_MAX_TIME_DIFF_S = 1.5

_CHUNK_BYTES = 8 << 20
_EVENT_CAPACITY = 1 << 16


def _stack(seqs: list, width: int) -> np.ndarray:
    """(len(seqs), width) float64 from equal-length number lists (faster than np.array)."""
    if set(map(len, seqs)) - {width}:
        raise ValueError(f"expected lists of {width} numbers")
    flat = np.fromiter(chain.from_iterable(seqs), np.float64, count=len(seqs) * width)
    return flat.reshape(len(seqs), width)


class ResultsFormatError(ValueError):
    """A results file (or dict) that does not follow the nuScenes detection format."""


# ----------------------------------------------------------------------------------------------
# Results files
# ----------------------------------------------------------------------------------------------


def _stream_results(path: Path, progress: bool = False) -> Iterator[tuple[str, object]]:
    """Yield ``("meta", dict)`` and ``("samples", dict)`` batches of a results file."""
    pending = bytearray()
    base = 0  # file offset of pending[0]
    state = np.zeros(4, np.int64)
    events = np.zeros((_EVENT_CAPACITY, 2), np.int64)
    str_start = -1
    last_key: str | None = None
    open_key: str | None = None
    open_pos = -1
    seg_start = -1  # first byte of the not yet parsed results entries
    seen_results = False
    results_done = False
    first_byte_checked = False
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, desc="results", leave=False
        )
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK_BYTES)
            if bar is not None:
                bar.update(len(chunk))
            if not chunk:
                if bar is not None:
                    bar.close()
                break
            if not first_byte_checked:
                stripped = chunk.lstrip()
                if stripped and stripped[:1] != b"{":
                    raise ResultsFormatError(f"{path}: the top level must be a JSON object")
                first_byte_checked = bool(stripped)
            chunk_base = base + len(pending)
            pending += chunk
            buf = np.frombuffer(chunk, dtype=np.uint8)
            state[3] = 0
            last_comma = -1
            while state[3] < buf.shape[0]:
                n = _scan_json_structure(buf, chunk_base, state, events)
                for kind, pos in events[:n].tolist():
                    if kind == _STR_START:
                        str_start = pos
                    elif kind == _STR_END:
                        raw = bytes(pending[str_start - base : pos + 1 - base])
                        last_key = orjson.loads(raw)
                        str_start = -1
                    elif kind == _OPEN:
                        open_key, open_pos = last_key, pos
                        if open_key == "results":
                            if pending[pos - base] != ord("{"):
                                raise ResultsFormatError(
                                    f"{path}: 'results' must map sample tokens to box lists"
                                )
                            seen_results = True
                            seg_start = pos + 1
                    elif kind == _COMMA:
                        if open_key == "results":
                            last_comma = pos
                    elif kind == _CLOSE:
                        if open_key == "results":
                            if pos > seg_start:
                                last_comma = -1
                                yield "entries", bytes(pending[seg_start - base : pos - base])
                            seg_start = -1
                            results_done = True
                        elif open_key == "meta":
                            yield (
                                "meta",
                                _parse_json(pending[open_pos - base : pos + 1 - base], path),
                            )
                        open_key = None
            if open_key == "results" and last_comma > seg_start:
                yield "entries", bytes(pending[seg_start - base : last_comma - base])
                seg_start = last_comma + 1
            # Keep only the bytes a later event can still need.
            keep_from = base + len(pending)
            for p in (str_start, seg_start if open_key == "results" else -1):
                if p >= 0:
                    keep_from = min(keep_from, p)
            if open_key is not None and open_key != "results":
                keep_from = min(keep_from, open_pos)
            del pending[: keep_from - base]
            base = keep_from
    if state[0] != 0 or state[1] != 0:
        raise ResultsFormatError(f"{path}: truncated JSON (unbalanced brackets or quotes)")
    if not seen_results or not results_done:
        raise ResultsFormatError(f"{path}: no 'results' object in the results file")


def _parse_json(raw: bytes | bytearray, path: Path) -> object:
    try:
        return orjson.loads(bytes(raw))
    except orjson.JSONDecodeError as e:
        # Python's json module writes NaN/Infinity, which strict JSON (orjson) rejects; files
        # from other toolboxes can contain them, so fall back to the lenient parser.
        try:
            return json.loads(bytes(raw))
        except ValueError:
            raise ResultsFormatError(f"{path}: invalid JSON ({e})") from None


def _entries_as_dict(body: bytes, path: Path) -> dict:
    """General-parser fallback: the results entries ``"token": [...], ...`` as a dict."""
    if not body.strip():
        return {}
    out = _parse_json(b"{" + body + b"}", path)
    assert isinstance(out, dict)
    return out


_CLASS_TABLE = pack_names(DETECTION_CLASSES)
_ATTRIBUTE_TABLE = pack_names(ATTRIBUTE_NAMES)
_KEY_TABLE = pack_names(KEY_NAMES)


class _FastPathUnsupported(Exception):
    """The Numba reader met input it does not take; the general parser decides."""


def _columns_from_parse(out: tuple, raw: bytes | bytearray, offset: int, token_offset: int):  # noqa: ANN202
    """(tokens, columns) from a ``parse_entries`` result over ``raw[offset:]``."""
    _, _, spans, counts, nums, num_pts, labels, attrs, fix_box, fix_col, fix_span = out
    nums = np.array(nums)
    for b, c, (s, e) in zip(fix_box.tolist(), fix_col.tolist(), fix_span.tolist()):
        nums[b, c] = float(bytes(raw[offset + s : offset + e]))
    tokens = [bytes(raw[offset + s : offset + e]).decode() for s, e in spans.tolist()]
    cols = {
        "translation": nums[:, 0:3],
        "size": nums[:, 3:6],
        "rotation": nums[:, 6:10],
        "velocity": nums[:, 10:12],
        "score": nums[:, 12].copy(),
        "num_pts": np.array(num_pts),
        "label": np.array(labels),
        "attribute": np.array(attrs),
        "sample_index": np.repeat(np.arange(len(tokens), dtype=np.int64), counts) + token_offset,
    }
    return tokens, cols


def _stream_results_fast(path: Path, progress: bool = False) -> Iterator[tuple[str, object]]:
    """Yield ``("meta", dict)`` and ``("columns", (tokens, columns))`` of a results file.

    The structure scanner walks the top level; the ``results`` object is handed to the Numba
    parser chunk by chunk (no second pass over it). Raises ``_FastPathUnsupported`` on
    anything unusual, including malformed input, for the general path to judge.
    """
    pending = bytearray()
    base = 0  # file offset of pending[0]
    state = np.zeros(4, np.int64)
    events = np.zeros((_EVENT_CAPACITY, 2), np.int64)
    scan_pos = 0  # next byte the scanner has not seen
    str_start = -1
    last_key: str | None = None
    meta_open = -1
    seg_start = -1  # in the results object: first byte not parsed yet
    results_done = False
    num_tokens = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, desc="results", leave=False
        )
    with open(path, "rb") as f:
        eof = False
        while True:
            if seg_start >= 0:  # inside "results": parse entries straight from the buffer
                view = np.frombuffer(pending, np.uint8, offset=seg_start - base)
                out = parse_entries(
                    view, *_CLASS_TABLE, *_ATTRIBUTE_TABLE, *_KEY_TABLE, view.size // 64 + 16
                )
                del view  # release the buffer export before pending is resized
                status, stop = int(out[0]), int(out[1])
                if status == FAILED:
                    raise _FastPathUnsupported
                if len(out[2]):
                    tokens, cols = _columns_from_parse(out, pending, seg_start - base, num_tokens)
                    num_tokens += len(tokens)
                    yield "columns", (tokens, cols)
                seg_start += stop
                if status == END:
                    results_done = True
                    state[:] = (1, 0, 0, 0)
                    scan_pos = seg_start + 1
                    seg_start = -1
                    continue
            elif scan_pos < base + len(pending):
                buf = np.frombuffer(bytes(pending[scan_pos - base :]), np.uint8)
                state[3] = 0
                while state[3] < buf.shape[0] and seg_start < 0:
                    n = _scan_json_structure(buf, scan_pos, state, events)
                    for kind, pos in events[:n].tolist():
                        if kind == _STR_START:
                            str_start = pos
                        elif kind == _STR_END:
                            last_key = orjson.loads(
                                bytes(pending[str_start - base : pos + 1 - base])
                            )
                            str_start = -1
                        elif kind == _OPEN:
                            if last_key == "results":
                                if pending[pos - base] != ord("{") or results_done:
                                    raise _FastPathUnsupported
                                seg_start = pos + 1
                            elif last_key == "meta":
                                meta_open = pos
                        elif kind == _CLOSE and meta_open >= 0:
                            raw = bytes(pending[meta_open - base : pos + 1 - base])
                            yield "meta", _parse_json(raw, path)
                            meta_open = -1
                scan_pos += int(state[3]) if seg_start < 0 else seg_start - scan_pos
                continue
            # Need more input. Keep only what is still needed.
            if eof:
                break
            keep_from = base + len(pending)
            for p in (str_start, meta_open, seg_start, scan_pos if seg_start < 0 else -1):
                if p >= 0:
                    keep_from = min(keep_from, p)
            del pending[: keep_from - base]
            base = keep_from
            chunk = f.read(_CHUNK_BYTES)
            if bar is not None:
                bar.update(len(chunk))
            if not chunk:
                eof = True
                if bar is not None:
                    bar.close()
                continue
            if base == 0 and not pending and chunk.lstrip()[:1] not in (b"{", b""):
                raise _FastPathUnsupported
            pending += chunk
    if seg_start >= 0 or not results_done or state[0] != 0 or state[1] != 0:
        raise _FastPathUnsupported


def _box_columns(batch: dict, source: str, token_offset: int) -> dict[str, np.ndarray]:
    """Columns of the boxes of ``batch`` (sample token -> list of box dicts), in order."""
    counts = []
    for token, boxes in batch.items():
        if not isinstance(boxes, list):
            raise ResultsFormatError(f"{source}: sample {token}: results must be a list of boxes")
        counts.append(len(boxes))
    rows = list(chain.from_iterable(batch.values()))
    n = len(rows)
    try:
        if n and not all(isinstance(r, dict) for r in rows):
            raise TypeError("a box is not a JSON object")
        sample_field = list(map(itemgetter("sample_token"), rows))
        cols = {
            "translation": _stack(list(map(itemgetter("translation"), rows)), 3),
            "size": _stack(list(map(itemgetter("size"), rows)), 3),
            "rotation": _stack(list(map(itemgetter("rotation"), rows)), 4),
            "velocity": _stack(list(map(itemgetter("velocity"), rows)), 2),
            "score": np.array([r.get("detection_score", -1.0) for r in rows], np.float64),
            "num_pts": np.array([r.get("num_pts", -1) for r in rows], np.int64),
            "label": np.array(
                list(map(CLASS_TO_ID.__getitem__, map(itemgetter("detection_name"), rows))),
                np.int64,
            ),
            "attribute": np.array(
                [ATTRIBUTE_TO_ID[r.get("attribute_name", "")] for r in rows], np.int64
            ),
        }
        for name, width in (("translation", 3), ("size", 3), ("rotation", 4), ("velocity", 2)):
            if cols[name].shape != (n, width):
                raise ValueError(f"{name} is not a list of {width} numbers")
    except (KeyError, TypeError, ValueError) as e:
        # Slow path only for the error message: name the first offending box and field.
        from eval.detection.results import box_problems

        for token, boxes in batch.items():
            for i, box in enumerate(boxes):
                problems = box_problems(box, token, i)
                if problems:
                    raise ResultsFormatError(f"{source}: {problems[0]}") from None
        raise ResultsFormatError(f"{source}: malformed box ({e})") from None
    # The official evaluation matches a box against the sample named in the box itself.
    expected = np.repeat(np.arange(len(counts)), counts)
    tokens = list(batch.keys())
    if n and sample_field != [tokens[i] for i in expected]:
        bad = next(i for i in range(n) if sample_field[i] != tokens[expected[i]])
        raise ResultsFormatError(
            f"{source}: a box listed under sample {tokens[expected[bad]]} has sample_token "
            f"{sample_field[bad]!r}"
        )
    cols["sample_index"] = expected.astype(np.int64) + token_offset
    return cols


def _refuse_bad_values(boxes: EvalBoxSet, name: str) -> None:
    """Refuse non-finite fields and non-positive sizes; warn (once, counted) on odd scores.

    Checked on the columns in a few vectorised passes, so a large file costs little. Without
    this a NaN box would drop out of matching silently (every comparison with NaN is false)
    and a zero size would divide by zero deep inside the IoU.
    """
    n = len(boxes)
    if n == 0:
        return
    fields = {
        "translation": boxes.translation,
        "size": boxes.size,
        "rotation": boxes.rotation,
        "velocity": boxes.velocity,
        "detection_score": boxes.score[:, None],
    }
    bad_rows = np.zeros(n, bool)
    reason = np.full(n, "", dtype=object)
    for field_name, values in fields.items():
        row_bad = ~np.isfinite(values).all(axis=1)
        new = row_bad & ~bad_rows
        reason[new] = f"{field_name} has a null or non-finite value"
        bad_rows |= row_bad
    small = (boxes.size <= 0).any(axis=1) & ~bad_rows
    reason[small] = "size must be positive"
    bad_rows |= small
    if bad_rows.any():
        row = int(np.flatnonzero(bad_rows)[0])
        sample = int(boxes.sample_index[row])
        first_of_sample = int(np.searchsorted(boxes.sample_index, sample, side="left"))
        field_name = str(reason[row]).split(" ")[0]
        values = fields[field_name][row].tolist()
        raise ResultsFormatError(
            f"{name}: sample {boxes.sample_tokens[sample]} box {row - first_of_sample}: "
            f"{reason[row]} {values} ({int(bad_rows.sum())} such box(es) in the file)"
        )
    # The devkit accepts any finite score (it only ranks by it); a score outside [0, 1] is
    # legal but usually a logit or a bug upstream, so say how many there are, once.
    odd = int(np.count_nonzero((boxes.score < 0) | (boxes.score > 1)))
    if odd:
        warnings.warn(
            f"{name}: {odd} of {n} detection scores are outside [0, 1] (accepted; the "
            "evaluation only ranks by score)",
            stacklevel=3,
        )


def boxes_from_columns(
    tokens: list[str], parts: list[dict[str, np.ndarray]], name: str
) -> EvalBoxSet:
    """The boxes of ``parts`` (``_box_columns``' dicts, in order) as one ``EvalBoxSet`` over
    ``tokens``, refusing non-finite values and non-positive sizes (``_refuse_bad_values``,
    naming ``name``).
    """

    def cat(key: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        arrays = [p[key] for p in parts if len(p["sample_index"])]
        return np.concatenate(arrays) if arrays else np.zeros(shape, dtype)

    boxes = EvalBoxSet(
        tokens,
        cat("sample_index", (0,), np.int64),
        cat("translation", (0, 3), np.float64),
        cat("size", (0, 3), np.float64),
        cat("rotation", (0, 4), np.float64),
        cat("velocity", (0, 2), np.float64),
        cat("label", (0,), np.int64),
        cat("score", (0,), np.float64),
        cat("attribute", (0,), np.int64),
        cat("num_pts", (0,), np.int64),
    )
    _refuse_bad_values(boxes, name)
    return boxes


def load_results(
    source: str | Path | dict, max_boxes_per_sample: int | None = None, progress: bool = False
) -> tuple[EvalBoxSet, dict]:
    """Read a nuScenes detection results file (or its already-parsed dict) into columns.

    Args:
        source: path of the JSON file, or the dict ``{"meta": ..., "results": ...}``.
        max_boxes_per_sample: raise if any sample has more boxes (None: no check).
        progress: show a progress bar (bytes read) on stderr.

    Returns:
        The boxes (samples in file order, boxes in file order) and the ``meta`` dict.

    Raises:
        ResultsFormatError: naming the file, the sample and the field at fault; also for a
            NaN / null / infinite translation, size, rotation, velocity or score and for a
            size <= 0 (naming the sample token and the box index). Scores outside [0, 1] are
            accepted with one warning that counts them.

    """
    name = str(source) if not isinstance(source, dict) else "results"
    tokens: list[str] = []
    parts: list[dict[str, np.ndarray]] = []
    meta: dict | None = None

    def add(batch: dict) -> None:
        parts.append(_box_columns(batch, name, len(tokens)))
        tokens.extend(batch.keys())

    if isinstance(source, dict):
        if "results" not in source:
            raise ResultsFormatError("results: no 'results' field")
        results = source["results"]
        if not isinstance(results, dict):
            raise ResultsFormatError("results: 'results' must map sample tokens to box lists")
        keys = list(results.keys())
        for i in range(0, len(keys), 2000):
            add({k: results[k] for k in keys[i : i + 2000]})
        meta = source.get("meta")
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"results file not found: {path}")
        try:
            for kind, payload in _stream_results_fast(path, progress):
                if kind == "meta":
                    meta = payload  # type: ignore[assignment]
                else:
                    new_tokens, cols = payload  # type: ignore[misc]
                    parts.append(cols)
                    tokens.extend(new_tokens)
        except _FastPathUnsupported:
            # Unusual but maybe valid JSON (escapes, NaN literals, odd layout) or an error:
            # the general parser decides and names the fault.
            tokens.clear()
            parts.clear()
            meta = None
            for kind, payload in _stream_results(path, progress):
                if kind == "meta":
                    meta = payload  # type: ignore[assignment]
                else:
                    assert isinstance(payload, bytes)
                    add(_entries_as_dict(payload, path))
    if meta is None:
        raise ResultsFormatError(f"{name}: no 'meta' field")
    if len(set(tokens)) != len(tokens):
        raise ResultsFormatError(f"{name}: a sample token appears twice in 'results'")

    boxes = boxes_from_columns(tokens, parts, name)
    if max_boxes_per_sample is not None and len(boxes):
        per_sample = boxes.boxes_per_sample()
        worst = int(per_sample.argmax())
        if per_sample[worst] > max_boxes_per_sample:
            raise ResultsFormatError(
                f"{name}: sample {tokens[worst]} has {per_sample[worst]} boxes; at most "
                f"{max_boxes_per_sample} are allowed per sample"
            )
    return boxes, dict(meta)


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------


def split_sample_tokens(nusc, eval_set: str) -> list[str]:  # noqa: ANN001 - devkit NuScenes
    """Sample tokens of a split, in the sample table's order (the devkit's order).

    A predefined split must belong to ``nusc.version`` (as the devkit asserts); any other
    name is looked up in ``<dataroot>/<version>/splits.json``, as nuscenes-devkit 1.2.0 does.

    Raises:
        ValueError: unknown split, a split that does not belong to ``nusc.version``, or a
            malformed custom splits file (naming it).

    """
    from nuscenes.utils.splits import create_splits_scenes

    from sensors.datasets.splits import split_scene_names

    version = nusc.version
    if eval_set in create_splits_scenes():
        wanted_suffix = {
            "train": "trainval",
            "val": "trainval",
            "train_detect": "trainval",
            "train_track": "trainval",
            "mini_train": "mini",
            "mini_val": "mini",
            "test": "test",
        }[eval_set]
        if not version.endswith(wanted_suffix):
            raise ValueError(f"split {eval_set!r} does not belong to nuScenes version {version!r}")
    scene_names = set(
        split_scene_names(eval_set, nusc.dataroot, version, {s["name"] for s in nusc.scene})
    )
    in_split = {s["token"] for s in nusc.scene if s["name"] in scene_names}
    tokens = [s["token"] for s in nusc.sample if s["scene_token"] in in_split]
    if not nusc.sample:
        raise ValueError(f"nuScenes {version} at {nusc.dataroot} has no samples")
    if eval_set == "test" and not nusc.sample_annotation:
        raise ValueError("the test split has no annotations to evaluate against")
    return tokens


def _annotation_index(nusc) -> dict[str, int]:  # noqa: ANN001
    """sample_annotation token -> table row (the devkit's own index when it has one)."""
    index = getattr(nusc, "_token2ind", {}).get("sample_annotation")
    if index is None:
        index = {a["token"]: i for i, a in enumerate(nusc.sample_annotation)}
    return index


def _split_annotations(
    nusc,  # noqa: ANN001 - devkit NuScenes
    sample_tokens: list[str],
) -> tuple[list[int], np.ndarray]:
    """Table rows of the samples' annotations in order, and the sample index of each."""
    index = _annotation_index(nusc)
    per_sample = [nusc.get("sample", t)["anns"] for t in sample_tokens]
    counts = np.array([len(a) for a in per_sample], np.int64)
    rows = [index[tok] for tok in chain.from_iterable(per_sample)]
    return rows, np.repeat(np.arange(len(sample_tokens), dtype=np.int64), counts)


def _velocities(
    nusc,  # noqa: ANN001 - devkit NuScenes
    rows: list[int],
    xyz: np.ndarray,
    time_s: np.ndarray,
    prev_tokens: tuple[str, ...],
    next_tokens: tuple[str, ...],
) -> np.ndarray:
    """(n, 2) xy velocity of annotations, as ``NuScenes.box_velocity`` estimates it.

    Centred difference over the previous and next annotation of the instance when both
    exist, else a one-sided difference; NaN for a lone annotation or too long a gap.

    Args:
        nusc: the database.
        rows: sample_annotation table rows of the annotations.
        xyz: (n, 3) their translations.
        time_s: (n,) their sample times (1e-6 * timestamp, the devkit's arithmetic).
        prev_tokens: their ``prev`` annotation tokens ("" for none).
        next_tokens: their ``next`` annotation tokens.

    """
    n = len(rows)
    if n == 0:
        return np.zeros((0, 2))
    index = _annotation_index(nusc)
    anns = nusc.sample_annotation
    prev_row = np.array([index[t] if t else -1 for t in prev_tokens], np.int64)
    next_row = np.array([index[t] if t else -1 for t in next_tokens], np.int64)
    # Neighbours are almost always annotations of the same scene, hence in this selection;
    # look them up by position, and read the rare others from the table.
    pos = np.full(len(anns), -1, np.int64)
    pos[np.asarray(rows, np.int64)] = np.arange(n)
    own = np.arange(n)
    ends = []
    for nb in (prev_row, next_row):
        p = np.where(nb >= 0, pos[np.maximum(nb, 0)], own)
        nb_xyz, nb_t = xyz[np.maximum(p, 0)].copy(), time_s[np.maximum(p, 0)].copy()
        outside = np.nonzero((nb >= 0) & (p < 0))[0]
        if outside.size:
            sample_time = {s["token"]: 1e-6 * s["timestamp"] for s in nusc.sample}
            for i in outside.tolist():
                rec = anns[int(nb[i])]
                nb_xyz[i] = rec["translation"]
                nb_t[i] = sample_time[rec["sample_token"]]
        ends.append((nb_xyz, nb_t))
    (xyz_first, t_first), (xyz_last, t_last) = ends
    has_prev, has_next = prev_row >= 0, next_row >= 0
    time_diff = t_last - t_first
    max_diff = np.where(has_prev & has_next, 2 * VELOCITY_MAX_TIME_DIFF_S, VELOCITY_MAX_TIME_DIFF_S)
    with np.errstate(divide="ignore", invalid="ignore"):
        vel = (xyz_last - xyz_first) / time_diff[:, None]
    vel[~(has_prev | has_next) | (time_diff > max_diff)] = np.nan
    return vel[:, :2]


_CATEGORY_TO_CLASS_ID = {k: CLASS_TO_ID[v] for k, v in CATEGORY_TO_DETECTION_CLASS.items()}


def load_gt_and_bike_racks(
    nusc,  # noqa: ANN001 - devkit NuScenes
    sample_tokens: list[str],
) -> tuple[EvalBoxSet, dict[int, list]]:
    """Ground truth (see :func:`load_gt`) and sample index -> bike-rack geometries."""
    attribute_id = {a["token"]: ATTRIBUTE_TO_ID.get(a["name"], -2) for a in nusc.attribute}
    rows, sample_index = _split_annotations(nusc, sample_tokens)
    anns = nusc.sample_annotation
    records = [anns[r] for r in rows]
    categories = [a["category_name"] for a in records]
    racks: dict[int, list] = {}
    for i in [i for i, c in enumerate(categories) if c == BIKE_RACK_CATEGORY]:
        racks.setdefault(int(sample_index[i]), []).append(_rack_geometry(records[i]))
    labels = np.array(list(map(_CATEGORY_TO_CLASS_ID.get, categories, repeat(-1))), np.int64)
    keep = np.nonzero(labels >= 0)[0]
    sel = [records[i] for i in keep]
    n = len(sel)
    # One pass over the records, then columns (zip is C-speed).
    columns = [
        (
            a["translation"],
            a["size"],
            a["rotation"],
            a["attribute_tokens"],
            a["num_lidar_pts"],
            a["num_radar_pts"],
            a["prev"],
            a["next"],
        )
        for a in sel
    ]
    translation, size, rotation, attr_tokens, n_lidar, n_radar, prev, nxt = (
        zip(*columns) if columns else ((),) * 8
    )
    too_many = [i for i, k in enumerate(map(len, attr_tokens)) if k > 1]
    for i in too_many[:1]:
        a, at = sel[i], attr_tokens[i]
        if len(at) > 1:
            raise ValueError(
                f"annotation {a['token']}: has {len(at)} attributes; a detection "
                "ground-truth box may have at most one"
            )
    attributes = np.array([attribute_id[at[0]] if at else -1 for at in attr_tokens], np.int64)
    if np.any(attributes == -2):
        raise ValueError("a ground-truth annotation has an attribute outside the detection task")
    split_time_s = np.array(
        [1e-6 * nusc.get("sample", t)["timestamp"] for t in sample_tokens], np.float64
    )
    xyz = _stack(list(translation), 3)
    gt = EvalBoxSet(
        sample_tokens,
        sample_index[keep],
        xyz,
        _stack(list(size), 3),
        _stack(list(rotation), 4),
        _velocities(
            nusc, [rows[i] for i in keep], xyz, split_time_s[sample_index[keep]], prev, nxt
        ),
        labels[keep],
        np.full(n, -1.0),
        attributes,
        np.array(n_lidar, np.int64) + np.array(n_radar, np.int64),
    )
    return gt, racks


def load_gt(nusc, sample_tokens: list[str]) -> EvalBoxSet:  # noqa: ANN001 - devkit NuScenes
    """Ground-truth detection boxes of the given samples (global frame, annotation order).

    Annotations of categories outside the 10 detection classes are skipped; ``num_pts`` is
    LiDAR plus radar points; velocity is the devkit's finite difference.
    """
    return load_gt_and_bike_racks(nusc, sample_tokens)[0]


# ----------------------------------------------------------------------------------------------
# Filters
# ----------------------------------------------------------------------------------------------


def ego_translations(nusc, sample_tokens: list[str]) -> np.ndarray:  # noqa: ANN001
    """(S, 3) global position of the ego vehicle at each sample's keyframe LiDAR timestamp."""
    out = np.zeros((len(sample_tokens), 3))
    for i, token in enumerate(sample_tokens):
        sample = nusc.get("sample", token)
        lidar_token = sample["data"].get("LIDAR_TOP")
        if lidar_token is None:
            raise ValueError(f"sample {token} has no LIDAR_TOP keyframe to take the ego pose from")
        pose = nusc.get("ego_pose", nusc.get("sample_data", lidar_token)["ego_pose_token"])
        out[i] = pose["translation"]
    return out


def ego_distances(boxes: EvalBoxSet, ego_xyz: np.ndarray) -> np.ndarray:
    """(N,) xy distance of each box centre to its sample's ego position, metres."""
    d = boxes.translation - ego_xyz[boxes.sample_index]
    # Square, then add x and y in that order: the devkit's exact arithmetic.
    return np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])


def _bike_rack_boxes(nusc, sample_tokens: list[str]) -> dict[int, list]:  # noqa: ANN001
    """Sample index -> geometry (see ``_rack_geometry``) of its bike-rack annotations."""
    rows, sample_index = _split_annotations(nusc, sample_tokens)
    anns = nusc.sample_annotation
    out: dict[int, list] = {}
    for r, si in zip(rows, sample_index.tolist()):
        if anns[r]["category_name"] == BIKE_RACK_CATEGORY:
            out.setdefault(si, []).append(_rack_geometry(anns[r]))
    return out


def _rack_geometry(record: dict) -> tuple[np.ndarray, ...]:
    """Corner p1 and the three edge vectors from it of an annotation's box.

    The same corner and arithmetic as the devkit's ``points_in_box``, so that a point exactly
    on a face is decided the same way.
    """
    w, length, h = np.asarray(record["size"], np.float64)
    x = length / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1])
    y = w / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1])
    z = h / 2 * np.array([1, 1, -1, -1, 1, 1, -1, -1])
    rot = Quaternion(record["rotation"]).rotation_matrix
    corners = np.dot(rot, np.vstack((x, y, z)))
    corners = corners + np.asarray(record["translation"], np.float64)[:, None]
    p1 = corners[:, 0]
    return p1, corners[:, 4] - p1, corners[:, 1] - p1, corners[:, 3] - p1


def _inside_box(geometry: tuple[np.ndarray, ...], points: np.ndarray) -> np.ndarray:
    """(n,) bool: (n, 3) points inside a box given by ``_rack_geometry``, faces inclusive."""
    p1, i, j, k = geometry
    v = points.T - p1.reshape((-1, 1))
    iv, jv, kv = np.dot(i, v), np.dot(j, v), np.dot(k, v)
    return (
        (iv >= 0)
        & (iv <= np.dot(i, i))
        & (jv >= 0)
        & (jv <= np.dot(j, j))
        & (kv >= 0)
        & (kv <= np.dot(k, k))
    )


def filter_boxes(
    nusc,  # noqa: ANN001 - devkit NuScenes
    boxes: EvalBoxSet,
    config: DetectionConfig,
    ego_xyz: np.ndarray,
    bike_racks: dict[int, list] | None = None,
) -> EvalBoxSet:
    """The official filters, for ground truth and predictions alike.

    Drops boxes at or beyond their class range from the ego vehicle, boxes with exactly zero
    LiDAR+radar points (unknown = -1 is kept), and bicycles/motorcycles whose centre lies in a
    bike-rack annotation of the same sample.
    """
    ranges = np.array([config.class_range[c] for c in DETECTION_CLASSES], np.float64)
    keep = ego_distances(boxes, ego_xyz) < ranges[boxes.label]
    keep &= boxes.num_pts != 0
    if bike_racks is None:
        bike_racks = _bike_rack_boxes(nusc, list(boxes.sample_tokens))
    if bike_racks:
        cycle_ids = [CLASS_TO_ID[c] for c in BIKE_RACK_FILTERED_CLASSES]
        candidate = keep & np.isin(boxes.label, cycle_ids)
        # Rows are grouped by sample: each sample is one contiguous range.
        bounds = np.searchsorted(boxes.sample_index, np.arange(len(boxes.sample_tokens) + 1))
        for si, racks in bike_racks.items():
            rows = np.arange(bounds[si], bounds[si + 1])
            rows = rows[candidate[rows]]
            if rows.size == 0:
                continue
            in_rack = np.zeros(rows.size, bool)
            for rack in racks:
                in_rack |= _inside_box(rack, boxes.translation[rows])
            keep[rows[in_rack]] = False
    return boxes.subset(keep)
