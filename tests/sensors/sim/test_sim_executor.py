"""Dataset generation through the executor: Ray tasks write the same bytes as one process."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from eval.executor import INLINE, ExecutorConfig, ensure_ray
from sensors.sim import SimConfig, generate_dataset


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_ray_scenes_write_the_same_dataset_as_one_process(tmp_path):
    pytest.importorskip("ray")
    ray_cfg = ExecutorConfig("ray", workers=2)
    ensure_ray(ray_cfg)  # a Ray already started by another test module is reused
    cfg = SimConfig(num_scenes=2, scene_duration_s=1.0, seed=5)
    inline = _hash_tree(generate_dataset(cfg, tmp_path / "inline", progress=False,
                                         executor=INLINE))
    on_ray = _hash_tree(generate_dataset(cfg, tmp_path / "ray", progress=False,
                                         executor=ray_cfg))
    assert len(inline) > 100
    assert on_ray == inline
