"""Configuration of the synthetic drive generator (config is code: frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sensors.scene_description import Condition


class ScenarioKind(str, Enum):
    """Scenario kinds a scene can be drawn from (one layout module each in
    ``sensors.sim.scenarios``).
    """

    URBAN_STRAIGHT = "urban_straight"
    URBAN_CURVE = "urban_curve"
    INTERSECTION = "intersection"
    HIGHWAY = "highway"
    PARKING = "parking"

    @property
    def summary(self) -> str:
        """What a scene of this kind holds (goes into the scene description)."""
        match self:
            case ScenarioKind.URBAN_STRAIGHT:
                return "Urban road, parked cars, peds, cyclists, work zone"
            case ScenarioKind.URBAN_CURVE:
                return "Curved urban road, parked cars, peds, cyclists, work zone"
            case ScenarioKind.INTERSECTION:
                return "Intersection, cross traffic, peds crossing, work zone"
            case ScenarioKind.HIGHWAY:
                return "Highway, trucks, tractor-trailer, work zone on shoulder"
            case ScenarioKind.PARKING:
                return "Parking lot, low speed, bollards near ego, peds"


# Names accepted by SimConfig / the command line. "auto" cycles through all kinds by scene
# index so that even a small set covers every kind.
SCENARIO_KINDS: tuple[str, ...] = tuple(k.value for k in ScenarioKind)
CONDITIONS: tuple[str, ...] = tuple(c.value for c in Condition)

SUPPORTED_VERSIONS: tuple[str, ...] = ("v1.0-mini", "v1.0-trainval")
SUPPORTED_IMAGE_SIZES: tuple[tuple[int, int], ...] = ((800, 450), (1600, 900))


@dataclass(frozen=True)
class LidarConfig:
    """Spinning LiDAR model (nuScenes' Velodyne HDL-32E on the roof).

    Attributes:
        num_beams: number of lasers (rings), spread evenly over the elevation range.
        elevation_min_deg / elevation_max_deg: lowest / highest beam elevation, degrees.
        azimuth_steps: firings per revolution (nuScenes HDL-32E: ~1084).
        max_range_m: furthest return, metres (shortened in fog).
        range_noise_m: 1-sigma Gaussian range noise, metres.
        dropout: probability that a return is lost (raised in rain).

    """

    num_beams: int = 32
    elevation_min_deg: float = -30.67
    elevation_max_deg: float = 10.67
    azimuth_steps: int = 1084
    max_range_m: float = 70.0
    range_noise_m: float = 0.015
    dropout: float = 0.02


@dataclass(frozen=True)
class SimConfig:
    """What to generate.

    Attributes:
        num_scenes: number of scenes (drives).
        version: nuScenes version folder name: ``"v1.0-mini"`` (scene names from the devkit's
            mini_train/mini_val split lists, at most 10 scenes) or ``"v1.0-trainval"``
            (names from train/val).
        scene_duration_s: length of each scene, seconds (nuScenes: ~20 s).
        seed: master random seed; the same seed gives byte-identical output.
        image_width / image_height: camera resolution, 800x450 (default) or 1600x900.
        lidar_hz: LiDAR (and ultrasonic) rate, Hz; keyframes are every ``lidar_hz / 2`` sweeps.
        keyframe_hz: sample (annotation) rate, Hz (nuScenes: 2).
        camera_hz: camera frame rate, Hz (nuScenes: 12); only used when ``camera_at_sweeps``.
        camera_at_sweeps: also render the non-keyframe camera frames into ``sweeps/``
            (slow: 6 JPEGs per frame); by default only keyframe images are written.
        scenarios: scenario kinds to draw from, or ``("auto",)`` to cycle through all kinds.
        conditions: weather/lighting per scene, or ``("auto",)`` to cycle through all.
        lidar: LiDAR model.
        jpeg_quality: JPEG quality of camera images (0-100).
        num_workers: scenes generated in parallel processes; 0 = one per CPU core (at most 2
            by default to stay friendly on shared machines), 1 = in-process.
        agents_scale: multiplies the number of dynamic agents and scenery per scene.
        write_ultrasonic: write the ULTRASONIC channel. The devkit loads, indexes and
            evaluates datasets with it; only ``NuScenes.render_sample`` (which draws every
            channel and knows no "ultrasonic" modality) needs it off.

    """

    num_scenes: int = 10
    version: str = "v1.0-mini"
    scene_duration_s: float = 20.0
    seed: int = 0
    image_width: int = 800
    image_height: int = 450
    lidar_hz: float = 20.0
    keyframe_hz: float = 2.0
    camera_hz: float = 12.0
    camera_at_sweeps: bool = False
    scenarios: tuple[str, ...] = ("auto",)
    conditions: tuple[str, ...] = ("auto",)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    jpeg_quality: int = 90
    num_workers: int = 0
    agents_scale: float = 1.0
    write_ultrasonic: bool = True

    def __post_init__(self) -> None:
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"SimConfig.version must be one of {SUPPORTED_VERSIONS}")
        if (self.image_width, self.image_height) not in SUPPORTED_IMAGE_SIZES:
            raise ValueError(
                f"SimConfig image size {self.image_width}x{self.image_height} not supported; "
                f"use one of {SUPPORTED_IMAGE_SIZES}"
            )
        if self.num_scenes < 1:
            raise ValueError("SimConfig.num_scenes must be >= 1")
        if self.version == "v1.0-mini" and self.num_scenes > 10:
            raise ValueError("v1.0-mini has 10 scene names; use version='v1.0-trainval'")
        ratio = self.lidar_hz / self.keyframe_hz
        if abs(ratio - round(ratio)) > 1e-9 or ratio < 1:
            raise ValueError("SimConfig.lidar_hz must be an integer multiple of keyframe_hz")
        cam_ratio = self.camera_hz / self.keyframe_hz
        if abs(cam_ratio - round(cam_ratio)) > 1e-9 or cam_ratio < 1:
            raise ValueError("SimConfig.camera_hz must be an integer multiple of keyframe_hz")
        if self.scene_duration_s < 1.0 / self.keyframe_hz:
            raise ValueError("SimConfig.scene_duration_s is shorter than one keyframe interval")
        for s in self.scenarios:
            if s != "auto" and s not in SCENARIO_KINDS:
                raise ValueError(f"unknown scenario {s!r}; choose from {SCENARIO_KINDS}")
        for c in self.conditions:
            if c != "auto" and c not in CONDITIONS:
                raise ValueError(f"unknown condition {c!r}; choose from {CONDITIONS}")
        if not self.scenarios or not self.conditions:
            raise ValueError("SimConfig.scenarios / conditions must not be empty")

    def scenario_for(self, scene_index: int) -> ScenarioKind:
        """Scenario kind of scene ``scene_index``."""
        kinds = SCENARIO_KINDS if self.scenarios == ("auto",) else self.scenarios
        return ScenarioKind(kinds[scene_index % len(kinds)])

    def condition_for(self, scene_index: int) -> Condition:
        """Condition of scene ``scene_index``.

        'auto' repeats clear, clear, fog, rain, clear, night: a period co-prime with the five
        scenario kinds, so kinds and conditions mix across scenes.
        """
        if self.conditions == ("auto",):
            name = ("clear", "clear", "fog", "rain", "clear", "night")[scene_index % 6]
        else:
            name = self.conditions[scene_index % len(self.conditions)]
        return Condition(name)
