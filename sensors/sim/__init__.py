"""Synthetic drives written in the nuScenes format, with an ultrasonic channel and CAN bus.

``generate_dataset(SimConfig(...), out_dir)`` writes a dataroot that
``nuscenes.NuScenes(version=cfg.version, dataroot=out_dir)`` loads unchanged.
"""

from sensors.sim.config import CONDITIONS, SCENARIO_KINDS, LidarConfig, SimConfig
from sensors.sim.writer import generate_dataset, scene_names

__all__ = [
    "CONDITIONS",
    "SCENARIO_KINDS",
    "LidarConfig",
    "SimConfig",
    "generate_dataset",
    "scene_names",
]
