"""The cascade with a camera_only fallback expert: LiDAR missing -> exactly the camera model
(at the camera model's own decode, whatever the caller decoded at); LiDAR present -> exactly
the cascade it was composed from (refined when a camera is there, first stage when not)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from perception.config import FallbackExpertConfig
from perception.experts import compose_fallback
from perception.pipeline import Pipeline
from perception.prepare import prepare_sample
from sensors.datasets.nuscenes import NuScenesDataset

sim = pytest.importorskip("sensors.sim")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    # 800x450 JPEGs: the cascade's crops read the full-size decode, camera_only the 1/4 one.
    root = sim.generate_dataset(
        sim.SimConfig(num_scenes=1, scene_duration_s=1.0, num_workers=1, seed=3),
        tmp_path_factory.mktemp("sim"), progress=False,
    )
    ds = NuScenesDataset(root, num_sweeps=1)  # full-size decode, the dataset default
    return ds.load_sample(ds.scene_sample_tokens(ds.scene_tokens[0])[0])


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    out = tmp_path_factory.mktemp("refine")
    # The shipped cascade without its expert, and composed again from that (the shipped one
    # is composed so: the test holds for what ships and for what compose writes).
    bare = compose_fallback("lidar_camera_refine", [], out / "bare")
    composed = compose_fallback(bare, ["camera_only"], out / "composed")
    return {"composed": Pipeline.from_checkpoint(composed, device="cpu"),
            "shipped": Pipeline.from_checkpoint("lidar_camera_refine", device="cpu"),
            "refine": Pipeline.from_checkpoint(bare, device="cpu"),
            "camera_only": Pipeline.from_checkpoint("camera_only", device="cpu")}


def _same(a, b) -> None:
    assert len(a.detections) == len(b.detections)
    np.testing.assert_array_equal(a.detections.center_m, b.detections.center_m)
    np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
    np.testing.assert_array_equal(a.detections.labels, b.detections.labels)
    np.testing.assert_array_equal(a.plan.waypoints_xy_ego_m, b.plan.waypoints_xy_ego_m)


def test_lidar_missing_gives_exactly_the_camera_model(pipes, sample):
    no_lidar = replace(sample, lidar=None)
    for name in ("composed", "shipped"):
        assert pipes[name].cfg.fusion.fallback == (FallbackExpertConfig("camera_only"),)
    assert pipes["refine"].cfg.fusion.fallback == ()
    for p in pipes.values():
        p.run(sample)  # the first BEV-pool call of a process differs in the last bits
    want = pipes["camera_only"].run(no_lidar)
    assert len(want.detections) > 0  # equal empty outputs would prove nothing
    _same(pipes["composed"].run(no_lidar), want)
    _same(pipes["shipped"].run(no_lidar), want)
    # Arrays prepared from the caller's (full-size) decode, as the benchmark hands them: the
    # expert's decode is made again, the result is the same.
    composed = pipes["composed"]
    wrong_decode = prepare_sample(no_lidar, composed.cfg, targets=False)
    got, maps = composed.run_with_maps(no_lidar, wrong_decode, batch_cache={}, shared_maps={})
    _same(got, want)
    assert set(maps) == {"camera_only.camera"}  # only the serving path's branch ran
    # Without the expert the cascade has nothing to detect with.
    assert len(pipes["refine"].run(no_lidar).detections) == 0


@pytest.mark.parametrize("absent", [(), ("cameras",), ("ultrasonic",)])
def test_lidar_present_gives_exactly_the_cascade(pipes, sample, absent):
    s = sample
    if "cameras" in absent:
        s = replace(s, cameras=tuple(None for _ in s.cameras))
    if "ultrasonic" in absent:
        s = replace(s, ultrasonic=None)
    got, want = pipes["composed"].run_with_maps(s)[0], pipes["refine"].run(s)
    _same(got, want)
    _same(pipes["shipped"].run(s), want)
    assert len(want.detections) > 0
    if not absent:  # the refiner ran: its stage is timed, and it is not the camera model
        assert "refine" in got.timings_ms
        assert len(got.detections) != len(pipes["camera_only"].run(s).detections) or not (
            np.array_equal(got.detections.scores, pipes["camera_only"].run(s).detections.scores))


def test_the_cascade_takes_only_an_unshared_camera_only_expert(pipes):
    cfg = pipes["composed"].cfg
    for bad in (FallbackExpertConfig("lidar_only"),
                FallbackExpertConfig("camera_only", ("camera",))):
        with pytest.raises(ValueError, match="at most a camera_only fallback expert"):
            replace(cfg, fusion=replace(cfg.fusion, fallback=(bad,)))


def test_camera_pixels_are_prepared_only_for_the_expert(pipes, sample, monkeypatch):
    """With the LiDAR present no branch the cascade runs reads the network-size images: they
    are neither resized nor collated (the expert costs nothing then)."""
    import perception.pipeline as pipeline_mod

    prepared = []

    def recording(*args, **kwargs):
        prepared.append(prepare_sample(*args, **kwargs))
        return prepared[-1]

    monkeypatch.setattr(pipeline_mod, "prepare_sample", recording)
    composed = pipes["composed"]
    composed.run(sample)
    assert prepared[-1].images.size == 0 and prepared[-1].camera_mask.all()
    assert prepared[-1].presence.all()
    np.testing.assert_array_equal(
        prepared[-1].ego_SE3_cam, prepare_sample(sample, composed.cfg, targets=False).ego_SE3_cam)
    composed.run(replace(sample, lidar=None))
    assert prepared[-1].images.shape[1:3] == composed.cfg.camera.image_hw
