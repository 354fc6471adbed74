"""Replay on a tiny synthetic drive with cameras rendered at their native 12 Hz.

One 2 s scene (40 LiDAR ticks, 4 keyframes, 24 frames per camera) is generated once for the
module; the shipped checkpoints run on it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from calibration.sync import TimestampStream
from eval.replay import TICK_SCHEMA, ReplayConfig, replay
from eval.replay.source import resolve_checkpoint, resolve_scenes, scene_ticks
from sensors.datasets.nuscenes import CausalSync, NuScenesDataset
from sensors.types import CAMERA_CHANNELS, LIDAR_CHANNEL

sim = pytest.importorskip("sensors.sim")
REPO = Path(__file__).resolve().parents[2]
SCENE = "scene-0061"  # the first mini_train name: a 1-scene set is exactly mini_train
JSON_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list,
              "dict": dict}


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    cfg = sim.SimConfig(num_scenes=1, scene_duration_s=2.0, num_workers=1, seed=0,
                        camera_at_sweeps=True)
    return sim.generate_dataset(cfg, tmp_path_factory.mktemp("replay_drive"), progress=False)


@pytest.fixture(scope="module")
def ds(drive) -> NuScenesDataset:
    return NuScenesDataset(drive, "v1.0-mini")


@pytest.fixture(scope="module")
def pipelines(ds):
    from eval.runner import decode_like_training
    from perception.pipeline import Pipeline

    out = {v: Pipeline.from_checkpoint(resolve_checkpoint(v), device="cpu")
           for v in ("gated", "lidar_only")}
    # The first inference of a process differs from later ones in the last float bits (the
    # CPU kernels settle on the first call). tools/evaluate.py runs after the replay here, so
    # both must see a warm process for the scores to be bit-identical.
    for pipe in out.values():
        decode_like_training(ds, pipe.cfg)
        pipe.run(ds.load_sample(ds.scene_sample_tokens(ds.scene_tokens[0])[0]))
    return out


@pytest.fixture(scope="module")
def full(drive, ds, pipelines, tmp_path_factory):
    """The whole scene with the fused model, video and recording on."""
    out = tmp_path_factory.mktemp("replay_full")
    summary = replay(
        ReplayConfig(drive, scenes=(SCENE,), checkpoint="gated", out_dir=out, progress=False),
        pipeline=pipelines["gated"], dataset=ds,
    )
    lines = [json.loads(x) for x in (out / "ticks.jsonl").read_text().splitlines()]
    return summary, lines, out


def _lidar_rows(ds: NuScenesDataset) -> list[dict]:
    """LIDAR_TOP sample_data of the scene straight from the table, by time."""
    return sorted((sd for sd in ds.nusc.sample_data if sd["channel"] == LIDAR_CHANNEL),
                  key=lambda sd: sd["timestamp"])


def test_latest_at_or_before_never_returns_a_later_frame():
    s = TimestampStream("CAM", np.array([0, 83_333, 166_667, 250_000]))
    assert s.latest_at_or_before(100_000).index == 1
    assert s.latest_at_or_before(100_000).offset_us == 83_333 - 100_000
    assert s.latest_at_or_before(166_667).index == 2  # exactly at the tick counts
    assert s.latest_at_or_before(-1) is None  # nothing yet
    assert s.latest_at_or_before(240_000, max_age_us=70_000) is None  # 73 ms old: too old
    assert s.latest_at_or_before(240_000, max_age_us=80_000).index == 2
    # nearest would pick the later frame here; the causal rule must not
    assert s.nearest(160_000, 50_000).index == 2 and s.latest_at_or_before(160_000).index == 1


def test_causal_load_sweep_reads_no_future_and_equals_load_sample_on_keyframes(ds):
    causal = CausalSync()
    scene = ds.scene_tokens[0]
    seen_cams = 0
    for tok in ds.scene_lidar_tokens(scene):
        sample = ds.load_sweep(tok, causal=causal)
        for view in sample.cameras:
            if view is not None:
                seen_cams += 1
                assert view.image.timestamp_us <= sample.timestamp_us
                assert sample.timestamp_us - view.image.timestamp_us <= causal.camera_max_age_us
        assert sample.ultrasonic is None or sample.ultrasonic.timestamp_us <= sample.timestamp_us
    assert seen_cams > 0.9 * 6 * len(ds.scene_lidar_tokens(scene))  # 12 Hz: all fresh
    key = ds.scene_sample_tokens(scene)[1]
    a = ds.load_sample(key)
    b = ds.load_sweep(ds.nusc.get("sample", key)["data"][LIDAR_CHANNEL], causal=causal)
    assert b.token == key and b.is_keyframe and len(b.boxes) == len(a.boxes)
    for va, vb in zip(a.cameras, b.cameras):
        assert va.image.timestamp_us == vb.image.timestamp_us
        np.testing.assert_array_equal(va.image.image, vb.image.image)
    np.testing.assert_array_equal(a.lidar.points, b.lidar.points)


def test_slice_counts_the_sweeps_in_the_window(ds):
    rows = _lidar_rows(ds)
    t0 = rows[0]["timestamp"]
    want = [r["token"] for r in rows if 0.5 <= (r["timestamp"] - t0) * 1e-6 <= 1.25]
    ticks = scene_ticks(ds, resolve_scenes(ds, [SCENE]), 0.5, 1.25)
    assert [t.lidar_token for t in ticks] == want and len(want) == 16
    with pytest.raises(ValueError, match="no scene named"):
        resolve_scenes(ds, ["scene-9999"])
    with pytest.raises(FileNotFoundError, match="shipped"):
        resolve_checkpoint("no_such_variant")


def test_every_tick_once_with_every_field_and_no_negative_age(full, ds):
    summary, lines, _ = full
    rows = _lidar_rows(ds)
    assert [x["token"] for x in lines if not x["is_keyframe"]] == [
        r["token"] for r in rows if not r["is_key_frame"]]
    assert len(lines) == len(rows) == summary["ticks"] == summary["ok"] == 40
    assert [x["tick"] for x in lines] == list(range(40))
    assert sum(x["is_keyframe"] for x in lines) == summary["keyframes"] == 4
    assert summary["sensor_missing_ticks"] == {}
    for x in lines:
        assert list(x) == list(TICK_SCHEMA)
        for name, (kind, _) in TICK_SCHEMA.items():
            assert isinstance(x[name], JSON_TYPES[kind]), (name, x[name])
        assert x["status"] == "ok" and not x["errors"]
        ages = x["sensor_age_ms"]
        assert all(a is not None and a >= 0 for a in ages.values()), ages
        assert all(ages[ch] <= 100 for ch in CAMERA_CHANNELS)  # 12 Hz cameras, 100 ms limit
        assert all(x["present"].values())
        assert len(x["plan_xy_ego_m"]) == 6 and set(x["control"]) >= {"steer_rad", "aeb"}
        assert {"input_wait", "load", "total", "outputs", "tick"} <= set(x["latency_ms"])
        for d in x["detections"]:
            assert d["detection_score"] >= 0.3 and len(d["rotation"]) == 4
    key = next(x for x in lines if x["is_keyframe"] and x["tick"] > 0)
    # On a keyframe the cameras are the keyframe's own: CAM_FRONT exposes 35 ms before.
    assert key["sensor_age_ms"]["CAM_FRONT"] == 35.0
    # A stage table with the input wait as its own stage.
    assert {"input_wait", "total", "lidar_backbone"} <= set(summary["latency_ms"])


def test_keyframe_detections_score_what_evaluate_scores(full, drive, tmp_path):
    summary, _, _ = full
    from eval.commands import evaluate as tool  # `drivefuse evaluate`
    out = tmp_path / "eval"
    assert tool.main(["--checkpoint", str(resolve_checkpoint("gated")), "--dataroot", str(drive),
                      "--version", "v1.0-mini", "--split", "mini_train", "--out", str(out),
                      "--no-plots"]) == 0
    ref = json.loads((out / "metrics_summary.json").read_text())
    det = summary["detection"]
    assert det["mAP"] == ref["mean_ap"] and det["NDS"] == ref["nd_score"]
    assert det["mAP"] > 0.1  # a trained model on its own kind of data: not all empty
    for c, by_th in ref["label_aps"].items():
        for th, v in by_th.items():
            assert det["label_aps"][c][str(float(th))] == v, (c, th)
    for k, v in ref["tp_errors"].items():
        assert det[k] == v or (det[k] is None and v != v), k


def test_video_and_recording_read_back(full):
    import imageio.v3 as iio
    from mcap.reader import make_reader

    summary, lines, out = full
    frames = sum(1 for _ in iio.imiter(out / "replay.mp4"))
    assert frames == len(lines)
    with open(out / "replay.mcap", "rb") as f:
        reader = make_reader(f)
        s = reader.get_summary()
        by_id = {c.id: c for c in s.channels.values()}
        schemas = {c.topic: s.schemas[c.schema_id].name if c.schema_id else "" for c in
                   by_id.values()}
        counts = {by_id[i].topic: n for i, n in s.statistics.channel_message_counts.items()}
        first_cloud = next(m for _, c, m in reader.iter_messages(topics=["/LIDAR_TOP"]))
    assert schemas["/LIDAR_TOP"] == "foxglove.PointCloud"
    assert schemas["/CAM_FRONT/image"] == "foxglove.CompressedImage"
    assert schemas["/CAM_FRONT/calibration"] == "foxglove.CameraCalibration"
    assert schemas["/tf"] == "foxglove.FrameTransforms"
    assert schemas["/detections"] == schemas["/ground_truth"] == "foxglove.SceneUpdate"
    assert schemas["/plan"] == "foxglove.SceneUpdate"
    assert by_id[next(i for i, c in by_id.items() if c.topic == "/control")].message_encoding \
        == "json"
    n = len(lines)
    for topic in ("/LIDAR_TOP", "/tf", "/detections", "/ground_truth", "/plan", "/control",
                  "/latency"):
        assert counts[topic] == n, topic
    # Cameras at 12 Hz: each distinct frame once (2 s -> 24 frames per camera), not every tick.
    for ch in CAMERA_CHANNELS:
        assert counts[f"/{ch}/image"] == counts[f"/{ch}/calibration"] == 24, ch
    assert first_cloud.log_time == lines[0]["timestamp_us"] * 1000
    assert summary["outputs"]["video"].endswith("replay.mp4")


def test_missing_and_corrupt_files_are_recorded_on_their_ticks(drive, pipelines, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(drive, root)
    ds = NuScenesDataset(root, "v1.0-mini")
    rows = _lidar_rows(ds)
    victim_tick = 15
    readings = ds.causal_readings(rows[victim_tick]["token"])
    cam_sd = ds.nusc.get("sample_data", readings["CAM_FRONT"].sample_data_token)
    us_sd = ds.nusc.get("sample_data", readings["ULTRASONIC"].sample_data_token)
    (root / cam_sd["filename"]).unlink()
    (root / us_sd["filename"]).unlink()
    lidar_file = root / rows[25]["filename"]
    lidar_file.write_bytes(lidar_file.read_bytes()[:1001])  # not a whole number of points
    out = tmp_path / "out"
    summary = replay(
        ReplayConfig(root, scenes=(SCENE,), out_dir=out, video=False, mcap=False,
                     progress=False),
        pipeline=pipelines["lidar_only"], dataset=ds,
    )
    lines = [json.loads(x) for x in (out / "ticks.jsonl").read_text().splitlines()]
    assert len(lines) == summary["ticks"] == 40 and summary["not_reached"] == 0
    bad = [x["tick"] for x in lines if any(rows[25]["filename"] in e for e in x["errors"])]
    # The truncated sweep is named on its own tick and on the ticks that accumulate it (the
    # next 9 of the 10-sweep window), never before. Its own tick has no LiDAR (the dataset
    # either masks the corrupt sweep or fails the tick; later ticks leave it out or fail).
    assert bad == list(range(25, 35))
    assert not lines[25]["present"]["LIDAR_TOP"]
    failed = sum(1 for t in bad if lines[t]["status"] == "failed")
    ran = [x for x in lines if x["tick"] not in bad]
    assert all(x["status"] == "ok" for x in ran)
    cam_ticks = [x["tick"] for x in ran if not x["present"]["CAM_FRONT"]]
    assert victim_tick in cam_ticks and len(cam_ticks) <= 2  # that frame's ticks only
    for t in cam_ticks:
        assert any(cam_sd["filename"] in e for e in lines[t]["errors"])
        assert lines[t]["present"]["CAM_BACK"] and lines[t]["status"] == "ok"
    us_ticks = [x["tick"] for x in ran if not x["present"]["ULTRASONIC"]]
    assert us_ticks == [victim_tick]
    assert any(us_sd["filename"] in e for e in lines[victim_tick]["errors"])
    clean = [x for x in lines if not x["errors"]]
    assert clean and all(x["status"] == "ok" for x in clean)
    assert summary["ticks_with_errors"] == sum(1 for x in lines if x["errors"])
    # Failed ticks have no reading at all; the ultrasonic is missing on one more.
    assert summary["sensor_missing_ticks"]["ULTRASONIC"] == failed + 1
    assert summary["sensor_missing_ticks"]["CAM_FRONT"] == failed + len(cam_ticks)
    assert summary["sensor_missing_ticks"]["LIDAR_TOP"] >= 1


class _Slow:
    """A pipeline that takes ``delay_s`` longer per tick (and can Ctrl-C itself)."""

    def __init__(self, inner, delay_s: float = 0.0, sigint_at: int | None = None,
                 on_call=None) -> None:  # noqa: ANN001
        self.inner, self.cfg, self.delay_s = inner, inner.cfg, delay_s
        self.sigint_at, self.on_call, self.calls = sigint_at, on_call, 0

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the inner pipeline's
        return getattr(self.inner, name)

    def run(self, sample):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        if self.sigint_at == self.calls:
            signal.raise_signal(signal.SIGINT)
        time.sleep(self.delay_s)
        return self.inner.run(sample)


def test_realtime_drops_ticks_when_the_pipeline_is_slow_and_counts_them(
    drive, ds, pipelines, tmp_path
):
    slow = _Slow(pipelines["lidar_only"], delay_s=0.2)  # 20 Hz ticks, >= 200 ms each
    cfg = ReplayConfig(drive, scenes=(SCENE,), out_dir=tmp_path / "rt", end_s=1.5,
                       realtime=True, video=False, mcap=False, progress=False)
    summary = replay(cfg, pipeline=slow, dataset=ds)
    lines = [json.loads(x) for x in (tmp_path / "rt/ticks.jsonl").read_text().splitlines()]
    dropped = [x for x in lines if x["status"] == "dropped"]
    assert len(lines) == summary["ticks"] == 31  # every tick accounted for, in order
    assert [x["tick"] for x in lines] == list(range(31))
    assert summary["dropped"] == len(dropped) >= summary["processed"]  # >= 3 late per run
    assert summary["processed"] == slow.calls == summary["ok"]
    assert all(not x["detections"] and not x["latency_ms"] for x in dropped)
    # The same slow pipeline as fast as possible: nothing dropped.
    flat = replay(ReplayConfig(drive, scenes=(SCENE,), out_dir=tmp_path / "flat", end_s=0.5,
                               video=False, mcap=False, progress=False),
                  pipeline=_Slow(pipelines["lidar_only"], delay_s=0.05), dataset=ds)
    assert flat["dropped"] == 0 and flat["ok"] == 11


def test_sigint_midway_leaves_valid_outputs_and_a_summary(drive, ds, pipelines, tmp_path):
    import imageio.v3 as iio
    from mcap.reader import make_reader

    out = tmp_path / "int"
    cfg = ReplayConfig(drive, scenes=(SCENE,), out_dir=out, progress=False)
    before = signal.getsignal(signal.SIGINT)
    summary = replay(cfg, pipeline=_Slow(pipelines["lidar_only"], sigint_at=8), dataset=ds)
    assert summary["interrupted"] and summary["handled"] == 8 and summary["not_reached"] == 32
    lines = [json.loads(x) for x in (out / "ticks.jsonl").read_text().splitlines()]
    assert [x["tick"] for x in lines] == list(range(8))
    assert sum(1 for _ in iio.imiter(out / "replay.mp4")) == 8
    with open(out / "replay.mcap", "rb") as f:
        s = make_reader(f).get_summary()  # present only when the file was closed properly
        topics = {c.id: c.topic for c in s.channels.values()}
        counts = {topics[i]: n for i, n in s.statistics.channel_message_counts.items()}
    assert counts["/LIDAR_TOP"] == 8
    disk = json.loads((out / "summary.json").read_text())
    assert disk["interrupted"] and disk["handled"] == 8
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_flat_over_a_long_replay(drive, pipelines, tmp_path):
    ds1 = NuScenesDataset(drive, "v1.0-mini", num_sweeps=1)
    rss: dict[int, int] = {}
    probe = _Slow(pipelines["lidar_only"], on_call=lambda n: rss.__setitem__(n, _rss_bytes()))
    # Three passes over the scene: 120 ticks with the video and the recording written.
    cfg = ReplayConfig(drive, scenes=(SCENE,) * 3, out_dir=tmp_path / "mem", num_sweeps=1,
                       progress=False)
    summary = replay(cfg, pipeline=probe, dataset=ds1)
    assert summary["ok"] == 120
    warm = rss[40]
    growth = (max(rss[n] for n in range(40, 121)) - warm) / warm
    assert growth < 0.03, f"RSS grew {growth:.1%} after warm-up ({warm / 2**20:.0f} MiB)"


def test_command_line_replays_a_slice_and_names_a_bad_scene(drive, tmp_path, capsys):
    from eval.cli import run_main
    from eval.commands import replay as tool  # `drivefuse replay`
    out = tmp_path / "cli"
    base = ["--dataroot", str(drive), "--checkpoint", "lidar_only", "--out", str(out),
            "--no-video", "--no-mcap"]
    assert tool.main([*base, "--scene", SCENE, "--start", "1.0", "--end", "1.25"]) == 0
    assert len((out / "ticks.jsonl").read_text().splitlines()) == 6  # 1.00 .. 1.25 s at 20 Hz
    assert "6 processed" in capsys.readouterr().out
    assert run_main(tool.main, [*base, "--scene", "scene-9999"], prog="replay.py") == 2
    err = capsys.readouterr().err
    assert "replay.py: error:" in err and "scene-9999" in err
