"""Results files: the streaming/Numba reader against the general JSON parser, the validator,
the writer (ego -> global) against the devkit's Box transform."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calibration.sample import Boxes3D
from calibration.se3 import SE3
from eval.detection import ResultsFormatError, ResultsMeta, loading, validate_results, write_results
from eval.detection.fastjson import parse_numbers
from eval.detection.loading import load_results

META = {
    "use_camera": True,
    "use_lidar": False,
    "use_radar": False,
    "use_map": False,
    "use_external": False,
}


def _box(token, rng, **over):
    b = {
        "sample_token": token,
        "translation": rng.normal(0, 300, 3).tolist(),
        "size": rng.uniform(0.2, 5, 3).tolist(),
        "rotation": [float(v) for v in rng.normal(0, 1, 4)],
        "velocity": rng.normal(0, 3, 2).tolist(),
        "detection_name": str(rng.choice(["car", "pedestrian", "barrier", "traffic_cone"])),
        "detection_score": float(rng.random()),
        "attribute_name": str(rng.choice(["", "vehicle.moving", "pedestrian.standing"])),
    }
    b.update(over)
    return b


def _results(n_samples=40, seed=0):
    rng = np.random.default_rng(seed)
    res = {}
    for i in range(n_samples):
        tok = f"{i:032x}"
        res[tok] = [_box(tok, rng) for _ in range(int(rng.integers(0, 12)))]
    return {"meta": dict(META), "results": res}


def assert_same_boxes(a, b):
    assert a.sample_tokens == b.sample_tokens
    for name in (
        "sample_index",
        "translation",
        "size",
        "rotation",
        "velocity",
        "label",
        "score",
        "attribute",
        "num_pts",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=True), name


def test_numbers_are_correctly_rounded():
    rng = np.random.default_rng(1)
    vals = np.r_[
        rng.normal(0, 1000, 20000),
        rng.uniform(0, 1, 20000),
        rng.normal(0, 1, 20000) * 10.0 ** rng.integers(-8, 6, 20000),
    ]
    strs = [repr(float(v)) for v in vals] + [
        "0",
        "-0.0",
        "1e-05",
        "2.5E+3",
        "0.30000000000000004",
        "9007199254740993",
        "123456789012345678",
        "1.7976931348623157e308",
        "0.1000000000000000055511151231257827",
    ]
    buf = np.frombuffer((",".join(strs) + " ").encode(), np.uint8)
    starts = np.r_[0, np.nonzero(buf == ord(","))[0] + 1]
    out, certain, ok = parse_numbers(buf, starts)
    expected = np.array([float(s) for s in strs])
    assert ok.all()
    assert certain[:40000].all()  # ordinary magnitudes never need the fallback
    assert np.array_equal(out[certain], expected[certain])
    assert np.signbit(out[strs.index("-0.0")])


def test_stream_reader_equals_general_parser_on_awkward_json(tmp_path, monkeypatch):
    res = _results()
    first = next(iter(res["results"]))
    rng = np.random.default_rng(5)
    # Unknown fields (nested), a num_pts field, tiny and huge exponents, scores of 0 and 1.
    res["results"][first] = [
        _box(first, rng, ego_translation=[1, 2, 3], extra={"a": [1, {"b": "}]"}]}, num_pts=0),
        _box(first, rng, detection_score=0, velocity=[1e-30, -2.5e-7]),
        _box(first, rng, detection_score=1, translation=[1e25, 0.1, -0.0]),
    ]
    doc = {
        "version": 'a "quoted" {brace}, [bracket]',
        "meta": dict(META, note='x}\\"],'),
        "results": res["results"],
        "trailing": [1, 2],
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc, indent=2))
    reference, _ = load_results(res)
    fast, meta = load_results(path)
    assert meta["note"] == 'x}\\"],'
    assert_same_boxes(reference, fast)
    # Tiny chunks and event buffers: every boundary condition of the streaming scanner.
    monkeypatch.setattr(loading, "_CHUNK_BYTES", 7)
    monkeypatch.setattr(loading, "_EVENT_CAPACITY", 3)
    chunked, _ = load_results(path)
    assert_same_boxes(reference, chunked)


@pytest.mark.parametrize("chunk", [5, 64, 1000, 1 << 20])
def test_fast_reader_takes_ordinary_files_at_any_chunk_size(tmp_path, monkeypatch, chunk):
    res = _results(30, seed=chunk)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(res, indent=1 if chunk == 64 else None))

    def general_path_must_not_run(*args, **kwargs):
        raise AssertionError("fell back to the general parser")

    monkeypatch.setattr(loading, "_CHUNK_BYTES", chunk)
    monkeypatch.setattr(loading, "_stream_results", general_path_must_not_run)
    fast, meta = load_results(path)
    assert meta == META
    assert_same_boxes(load_results(res)[0], fast)


def test_escaped_tokens_and_nan_literals_take_the_general_path(tmp_path):
    res = _results(5)
    tok = 'odd"token\\'
    rng = np.random.default_rng(2)
    res["results"][tok] = [_box(tok, rng, velocity=[-0.5, 1.0])]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(res))
    boxes, _ = load_results(path)
    assert tok in boxes.sample_tokens
    assert boxes.velocity[-1].tolist() == [-0.5, 1.0]
    # A NaN literal (Python's json writes them; strict JSON rejects them) parses on the general
    # path and is then refused by name: a NaN velocity would silently drop out of mAVE.
    res["results"][tok][0]["velocity"][0] = float("nan")
    path.write_text(json.dumps(res))
    with pytest.raises(ResultsFormatError, match=r"sample odd\"token\\ box 0: velocity"):
        load_results(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(detection_name="cat"), "unknown detection_name 'cat'"),
        (lambda b: b.update(attribute_name="vehicle.flying"), "unknown attribute_name"),
        (lambda b: b.update(rotation=[1, 0, 0]), "rotation must be a list of 4 numbers, got 3"),
        (lambda b: b.pop("size"), "missing field 'size'"),
        (lambda b: b.update(sample_token="other"), "sample_token.*'other'"),
    ],
)
def test_reader_errors_name_sample_and_field(tmp_path, mutate, message):
    res = _results(6)
    tok = next(t for t, boxes in res["results"].items() if boxes)
    mutate(res["results"][tok][0])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(res))
    with pytest.raises(ResultsFormatError, match=message) as err:
        load_results(path)
    assert tok in str(err.value)


def test_reader_limits_and_truncation(tmp_path):
    res = _results(3)
    tok = next(iter(res["results"]))
    rng = np.random.default_rng(0)
    res["results"][tok] = [_box(tok, rng) for _ in range(501)]
    with pytest.raises(ResultsFormatError, match="501 boxes; at most 500"):
        load_results(res, max_boxes_per_sample=500)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_results(3))[:-40])
    with pytest.raises(ResultsFormatError):
        load_results(path)
    path.write_text(json.dumps({"meta": META}))
    with pytest.raises(ResultsFormatError, match="no 'results'"):
        load_results(path)


# ---------------------------------------------------------------------------------- validator


def _valid():
    res = _results(4, seed=3)
    for boxes in res["results"].values():
        for b in boxes:
            q = np.asarray(b["rotation"])
            b["rotation"] = (q / np.linalg.norm(q)).tolist()
    return res


def test_validator_accepts_a_valid_file():
    res = _valid()
    assert validate_results(res, sample_tokens=list(res["results"])) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r, t: r["results"].pop(t), "1 sample(s) of the split missing"),
        (
            lambda r, t: r["results"][t].extend([r["results"][t][0]] * 501),
            "boxes, more than the 500 allowed",
        ),
        (
            lambda r, t: r["results"][t][0]["translation"].__setitem__(0, float("inf")),
            "translation has a non-finite value",
        ),
        (
            lambda r, t: r["results"][t][0].update(detection_score=float("nan")),
            "detection_score is non-finite",
        ),
        (lambda r, t: r["results"][t][0].update(detection_name="van"), "unknown detection_name"),
        (
            lambda r, t: r["results"][t][0].update(attribute_name="cycle.flying"),
            "unknown attribute_name",
        ),
        (
            lambda r, t: r["results"][t][0].update(rotation=[0.0, 0.0, 1.0]),
            "rotation must be a list of 4 numbers, got 3",
        ),
        (lambda r, t: r["results"][t][0].update(size=[1.0, 0.0, 1.0]), "size must be positive"),
        (lambda r, t: r["meta"].pop("use_lidar"), "meta: 'use_lidar' must be true or false"),
    ],
)
def test_validator_names_each_fault(mutate, message):
    res = _valid()
    tokens = list(res["results"])
    tok = next(t for t in tokens if res["results"][t])
    mutate(res, tok)
    problems = validate_results(res, sample_tokens=tokens)
    assert any(message in p for p in problems), problems


# ------------------------------------------------------------------------------------- writer


def test_writer_moves_boxes_to_global_like_the_devkit_box(tmp_path):
    from nuscenes.eval.common.utils import quaternion_yaw
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    rng = np.random.default_rng(4)
    n = 7
    boxes = Boxes3D(
        rng.normal(0, 20, (n, 3)),
        rng.uniform(0.5, 4, (n, 3)),
        rng.uniform(-3, 3, n),
        rng.normal(0, 5, (n, 2)),
        rng.integers(0, 10, n),
        rng.random(n),
        tuple(["vehicle.moving"] * n),
    )
    pose = SE3.from_yaw(1.2, [600.0, 1600.0, 0.3])
    out = write_results(
        {"tok": boxes}, {"tok": pose}, ResultsMeta(use_lidar=True), path=tmp_path / "r.json"
    )
    assert json.loads((tmp_path / "r.json").read_text()) == out
    assert out["meta"]["use_lidar"] is True and out["meta"]["use_camera"] is False
    q_pose = Quaternion(matrix=pose.rotation)
    for i, rec in enumerate(out["results"]["tok"]):
        ref = Box(
            boxes.center_m[i],
            boxes.wlh_m[i],
            Quaternion(axis=[0, 0, 1], angle=boxes.yaw_rad[i]),
            velocity=(*boxes.velocity_mps[i], 0.0),
        )
        ref.rotate(q_pose)
        ref.translate(pose.translation)
        np.testing.assert_allclose(rec["translation"], ref.center, atol=1e-9)
        np.testing.assert_allclose(rec["size"], boxes.wlh_m[i], atol=1e-12)
        np.testing.assert_allclose(rec["velocity"], ref.velocity[:2], atol=1e-9)
        yaw_diff = quaternion_yaw(Quaternion(rec["rotation"])) - quaternion_yaw(ref.orientation)
        assert abs(math.remainder(yaw_diff, 2 * math.pi)) < 1e-9
        assert rec["detection_score"] == boxes.scores[i]
    assert validate_results(out, sample_tokens=["tok"]) == []


def test_writer_keeps_the_best_500_and_zeroes_unknown_velocity():
    rng = np.random.default_rng(0)
    n = 520
    vel = rng.normal(0, 1, (n, 2))
    vel[0] = np.nan
    boxes = Boxes3D(
        rng.normal(0, 20, (n, 3)),
        np.ones((n, 3)),
        np.zeros(n),
        vel,
        np.zeros(n, np.int64),
        rng.random(n),
    )
    out = write_results({"t": boxes}, {"t": SE3.identity()}, META)
    recs = out["results"]["t"]
    assert len(recs) == 500
    kept = sorted(r["detection_score"] for r in recs)
    assert kept == sorted(boxes.scores)[-500:]
    assert validate_results(out) == []



def test_columns_equal_the_results_file_round_trip():
    """``results_boxes`` (what the benchmark scores) is exactly ``load_results`` of the file
    ``write_results`` writes: values, order, the 500-box cap, unknown velocity, attributes.
    """
    from eval.detection.results import results_boxes

    rng = np.random.default_rng(3)
    dets, poses = {}, {}
    for i, n in enumerate([5, 0, 520, 1, 9]):
        vel = rng.normal(0, 4, (n, 2))
        vel[::3] = np.nan
        scores = rng.random(n).astype(np.float32)
        if n > 2:
            scores[1] = scores[2]  # a tie at the cap keeps file order
        dets[f"t{i}"] = Boxes3D(
            rng.normal(0, 30, (n, 3)).astype(np.float32), rng.uniform(0.3, 5, (n, 3)),
            rng.uniform(-3.2, 3.2, n), vel, rng.integers(0, 10, n), scores,
            tuple(str(a) for a in rng.choice(["", "vehicle.moving", "cycle.without_rider"], n)),
        )
        poses[f"t{i}"] = SE3.from_yaw(float(rng.uniform(-3, 3)), rng.normal(0, 500, 3))
    expected, _ = load_results(write_results(dets, poses, META))
    got = results_boxes(dets, poses)
    assert len(got) == 5 + 500 + 1 + 9
    assert_same_boxes(got, expected)
    bad = dict(dets)
    b = dets["t0"]
    bad["t0"] = Boxes3D(b.center_m * np.array([np.nan, 1, 1]), b.wlh_m, b.yaw_rad,
                        b.velocity_mps, b.labels, b.scores, b.attributes)
    with pytest.raises(ResultsFormatError, match="translation has a null or non-finite"):
        results_boxes(bad, poses)

# ------------------------------------------------------------ refused at load, not in matching


@pytest.mark.parametrize("as_file", [False, True])
@pytest.mark.parametrize(
    ("field", "index", "value", "message"),
    [
        ("translation", 1, float("nan"), "translation has a null or non-finite value"),
        ("translation", 2, None, "translation has a null or non-finite value"),
        ("size", 0, float("inf"), "size has a null or non-finite value"),
        ("rotation", 3, float("nan"), "rotation has a null or non-finite value"),
        ("velocity", 0, float("-inf"), "velocity has a null or non-finite value"),
        ("velocity", 1, float("nan"), "velocity has a null or non-finite value"),
        ("detection_score", None, float("nan"), "detection_score has a null or non-finite value"),
        ("size", 2, 0.0, "size must be positive"),
        ("size", 1, -1.5, "size must be positive"),
    ],
)
def test_bad_box_values_refused_naming_file_sample_and_box(
    tmp_path, as_file, field, index, value, message
):
    res = _results(6, seed=11)
    tok = [t for t, b in res["results"].items() if len(b) >= 3][1]
    box = res["results"][tok][2]
    if index is None:
        box[field] = value
    else:
        box[field][index] = value
    source: object = res
    name = "results"
    if as_file:  # Python's json writes NaN / Infinity literals, as other toolboxes' files do
        source = tmp_path / "preds.json"
        source.write_text(json.dumps(res))
        name = str(source)
    with pytest.raises(ResultsFormatError) as e:
        load_results(source)
    msg = str(e.value)
    assert msg.startswith(f"{name}: sample {tok} box 2: ") and message in msg, msg


def test_scores_outside_unit_interval_are_accepted_with_one_counted_warning():
    res = _results(5, seed=12)
    boxes = [b for bs in res["results"].values() for b in bs]
    boxes[0]["detection_score"] = 1.7
    boxes[3]["detection_score"] = -0.2
    boxes[5]["detection_score"] = 12.0
    with pytest.warns(UserWarning, match=rf"results: 3 of {len(boxes)} detection scores") as w:
        loaded, _ = load_results(res)
    assert len(w) == 1
    assert sorted(loaded.score[[0, 3, 5]]) == [-0.2, 1.7, 12.0]
