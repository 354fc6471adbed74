"""Fixtures: a small nuScenes-format database that the devkit loads."""

from __future__ import annotations

import pytest
from eval_predictions import annotation_nusc


@pytest.fixture(scope="session")
def nusc(tmp_path_factory):
    # scene-0061 is in mini_train: its samples must be left out of a mini_val evaluation.
    return annotation_nusc(
        tmp_path_factory,
        "nuscenes_eval",
        scene_names=("scene-0103", "scene-0061", "scene-0916"),
        samples_per_scene=12,
        objects_per_scene=40,
        seed=3,
    )
