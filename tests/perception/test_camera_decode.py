"""Pipeline.run sees the training pixels whatever reduction the dataset decoded at."""

from __future__ import annotations

import numpy as np
import pytest

from perception.backbones.camera_decode import decoded_like_training, training_decode_reduction
from perception.checkpoint import load_config
from perception.pipeline import Pipeline
from perception.prepare import prepare_sample
from sensors.datasets.nuscenes import NuScenesDataset
from sensors.synthetic_sample import make_sample

sim = pytest.importorskip("sensors.sim")


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    # 800x450 JPEGs: the shipped 96x176 camera models train on the 1/4 decode.
    return sim.generate_dataset(
        sim.SimConfig(num_scenes=1, scene_duration_s=1.0, num_workers=1, seed=3),
        tmp_path_factory.mktemp("sim"), progress=False,
    )


def _tokens(ds: NuScenesDataset) -> list[str]:
    return ds.scene_sample_tokens(ds.scene_tokens[0])[:1]


def test_detections_equal_those_of_a_dataset_decoded_like_training(dataroot):
    pipe = Pipeline.from_checkpoint("camera_only", device="cpu")
    like_training = NuScenesDataset(dataroot, num_sweeps=1, image_reduction=4)
    first = like_training.load_sample(_tokens(like_training)[0])
    assert training_decode_reduction(first.cameras[0].image, pipe.cfg) == 4
    pipe.run(first)  # the first BEV-pool call of a process differs in the last bits
    found = 0
    for reduction in (1, 2, 8):  # full size (the dataset default), and below and above
        ds = NuScenesDataset(dataroot, num_sweeps=1, image_reduction=reduction)
        for tok in _tokens(ds):
            sample, want = ds.load_sample(tok), like_training.load_sample(tok)
            # The decoded pixels differ (so the test would see a wrong decode) ...
            raw = prepare_sample(sample, pipe.cfg, targets=False).images
            ref = prepare_sample(want, pipe.cfg, targets=False).images
            assert not np.array_equal(raw, ref)
            # ... and after the re-decode they are the training ones, intrinsics included.
            fixed = decoded_like_training(sample, pipe.cfg)
            for a, b in zip(fixed.cameras, want.cameras):
                assert np.array_equal(a.image.image, b.image.image)
                assert np.array_equal(a.image.intrinsics, b.image.intrinsics)
                assert a.image.scale == b.image.scale == 0.25
            got, exp = pipe.run(sample).detections, pipe.run(want).detections
            assert len(got) == len(exp)
            found += len(exp)
            np.testing.assert_array_equal(got.center_m, exp.center_m)
            np.testing.assert_array_equal(got.wlh_m, exp.wlh_m)
            np.testing.assert_array_equal(got.scores, exp.scores)
            np.testing.assert_array_equal(got.labels, exp.labels)
    assert found > 0  # equal empty outputs would prove nothing


def test_nothing_to_decode_returns_the_sample_itself(dataroot):
    cfg = load_config("camera_only")
    ds = NuScenesDataset(dataroot, num_sweeps=1, image_reduction=4)
    sample = ds.load_sample(_tokens(ds)[0])
    assert decoded_like_training(sample, cfg) is sample  # already at the training reduction
    full = NuScenesDataset(dataroot, num_sweeps=1).load_sample(_tokens(ds)[0])
    assert decoded_like_training(full, load_config("lidar_only")) is full  # no camera branch
    in_code = make_sample(0, image_hw=(225, 400))  # no source file to decode again
    assert decoded_like_training(in_code, cfg) is in_code


def test_stored_size_is_read_from_the_file_when_the_reduced_size_is_ambiguous(dataroot):
    from dataclasses import replace

    cfg = load_config("camera_only")
    # 450 stored rows at 1/8 are 57; 57 rows at 1/8 could be 449..456 stored, and a 114-row
    # network input needs the 1/4 decode only from 453 rows up: the header (450) decides 1/2.
    cfg = replace(cfg, camera=replace(cfg.camera, image_hw=(114, 176)))
    ds = NuScenesDataset(dataroot, num_sweeps=1, image_reduction=8)
    sample = ds.load_sample(_tokens(ds)[0])
    assert sample.cameras[0].image.height == 57
    assert training_decode_reduction(sample.cameras[0].image, cfg) == 2
    fixed = decoded_like_training(sample, cfg)
    want = NuScenesDataset(dataroot, num_sweeps=1, image_reduction=2).load_sample(_tokens(ds)[0])
    for a, b in zip(fixed.cameras, want.cameras):
        assert np.array_equal(a.image.image, b.image.image)
        assert np.array_equal(a.image.intrinsics, b.image.intrinsics)
