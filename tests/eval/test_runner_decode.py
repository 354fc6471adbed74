"""eval.runner decodes camera images the way the model's training cache did."""

from pathlib import Path

import pytest

from perception.backbones.camera_inputs import image_reduction_for
from sensors.datasets.nuscenes import NuScenesDataset

sim = pytest.importorskip("sensors.sim")
CAMERA_ONLY = Path(__file__).resolve().parents[2] / "perception/checkpoints/camera_only"


def test_run_model_sets_the_training_reduction(tmp_path):
    from eval.runner import run_model
    from perception.checkpoint import load_config

    root = sim.generate_dataset(
        sim.SimConfig(num_scenes=1, scene_duration_s=1.0, num_workers=1, seed=5), tmp_path,
        progress=False,
    )
    ds = NuScenesDataset(root, num_sweeps=1)
    h, w = ds.camera_image_hw()
    first = ds.load_sample(ds.scene_sample_tokens(ds.scene_tokens[0])[0])
    assert first.cameras[0].image.image.shape[:2] == (h, w)
    with pytest.raises(ValueError, match="image_reduction"):
        ds.set_image_reduction(3)
    cfg = load_config(CAMERA_ONLY)
    want = image_reduction_for((h, w), cfg.camera.image_hw)
    assert want > 1  # the synthetic images are larger than the tiny preset needs
    tokens = ds.scene_sample_tokens(ds.scene_tokens[0])
    run = run_model(CAMERA_ONLY, ds, tokens, progress=False)
    assert ds.image_reduction == want
    assert len(run.samples) == len(tokens)
