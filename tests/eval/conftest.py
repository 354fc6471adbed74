"""Fixtures: a small nuScenes-format database that the devkit loads."""

from __future__ import annotations

import pytest

from eval.detection.synthetic import write_annotation_tables


@pytest.fixture(scope="session")
def nusc(tmp_path_factory):
    from nuscenes import NuScenes

    root = tmp_path_factory.mktemp("nuscenes_eval")
    # scene-0061 is in mini_train: its samples must be left out of a mini_val evaluation.
    write_annotation_tables(
        root,
        "v1.0-mini",
        scene_names=("scene-0103", "scene-0061", "scene-0916"),
        samples_per_scene=12,
        objects_per_scene=40,
        seed=3,
    )
    return NuScenes("v1.0-mini", str(root), verbose=False)
