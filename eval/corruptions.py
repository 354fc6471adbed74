# ruff: noqa: E501 - the module docstring's table keeps one corruption per line
"""Sensor corruptions applied to a ``SyncedSample`` at evaluation time: typed, seeded, graded.

``corrupt(sample, name, severity, seed, context)`` returns a new sample; severity 0 returns the
sample itself (the identity), severities 1-5 follow the table below (single-level faults such as
a whole sensor missing accept any severity >= 1 and ignore it). The random draws come from a
numpy ``Generator`` seeded with ``(seed, sample token, corruption name)`` only, so a result never
depends on the order samples or corruptions are visited, and the selections of one sample nest
across severities (the rings dropped at severity 2 include those dropped at severity 1).

LiDAR geometry (rings, azimuth, range) is measured from the sensor origin of the sweep each
point came from: accumulated sweeps carry ``time_lag_s``, and ``SampleContext`` holds each
sweep's LiDAR origin in the reference ego frame (``sample_context(ds, token)`` reads it from the
dataset's sample_data chain). Rings are the HDL-32E's: 32 beams evenly spaced over
-30.67 .. +10.67 deg elevation (nuScenes and the synthetic rig alike); a point's ring is the
nearest beam to its elevation.

Camera corruptions work on the decoded images (whatever reduction the dataset decoded at);
ImageNet-C's spatial parameters are defined at 224 px and are scaled by ``image width / 224``.
"impl" says whether a well-kept library's transform matched the published definition
(albumentations) or the definition is implemented here with numpy / OpenCV, and why.

| name | modality | suite | parameter (severity 1, 2, 3, 4, 5) | impl |
|---|---|---|---|---|
| lidar_fog | lidar | Robo3D fog (physics) | extinction alpha 0.005, 0.01, 0.02, 0.03, 0.06 /m | numpy: Beer-Lambert two-way transmission exp(-2 alpha R) times each return's clear-air margin 1 + rho (120 m / R)^2 over the detection threshold (rho = intensity / 255, >= 0.02: every recorded return cleared it); below 1 the return is lost; fog backscatter (a soft target near the sensor, power 30 alpha x log-normal(0, 0.5)) replaces the ray's return by a false one at 1.5 m + Gamma(2, 1.2 m) when above threshold and stronger (strongest-return mode); intensities scaled by the transmission |
| lidar_beam_missing | lidar | Robo3D beam missing | rings dropped of 32: 4, 8, 12, 16, 20 | numpy |
| lidar_cross_sensor | lidar | Robo3D cross-sensor | rings kept (evenly spaced) 24, 20, 16, 12, 8, and every 2nd point of each kept ring and sweep (firing order) | numpy |
| lidar_density | lidar | Robo3D / nuScenes-C density decrease | share of points dropped at random 0.2, 0.35, 0.5, 0.65, 0.8 | numpy |
| lidar_cutout | lidar | nuScenes-C cutout | regions removed 2, 4, 6, 8, 10 (vertical cylinders of radius 2.5 m around random points) | numpy |
| lidar_crosstalk | lidar | Robo3D crosstalk | false returns added 0.6, 1.2, 1.8, 2.4, 3.0 % of N, each on a random point's ray at a uniform random range 0..70 m | numpy |
| lidar_gaussian | lidar | nuScenes-C Gaussian noise (L) | per-coordinate sigma 0.04, 0.08, 0.12, 0.16, 0.20 m | numpy |
| lidar_fov_lost | lidar | Robo3D FOV lost | kept azimuth about ego +x +-105, +-90, +-75, +-60, +-45 deg | numpy |
| lidar_motion_comp | lidar | nuScenes-C motion compensation | ego-motion error on earlier sweeps: v 0.5, 1, 1.5, 2, 3 m/s (random heading) and yaw rate 2, 4, 6, 8, 12 deg/s (random sign), times each sweep's time lag | numpy |
| lidar_object_failure | lidar | Yu et al. 2022 object failure | probability an object's points are removed 0.2, 0.35, 0.5, 0.65, 0.8 (ground-truth boxes, moved back by velocity x time lag for earlier sweeps) | numpy |
| lidar_missing | lidar | Yu et al. 2022 LiDAR failure | the whole LiDAR absent (one level) | - |
| camera_gaussian | camera | ImageNet-C Gaussian noise | sigma 0.08, 0.12, 0.18, 0.26, 0.38 (of full scale) | albumentations GaussNoise (per channel, zero mean: matches) |
| camera_impulse | camera | ImageNet-C impulse noise | salt-and-pepper amount 0.03, 0.06, 0.09, 0.17, 0.27 per channel value | numpy (albumentations SaltAndPepper hits whole pixels; ImageNet-C hits each channel) |
| camera_low_light | camera | nuScenes-C low light | irradiance x 0.5, 0.35, 0.25, 0.15, 0.08 in linear light (gamma 2.2), Poisson shot noise at 1000 e- full well, read noise 0.002 | numpy (no library transform) |
| camera_brightness | camera | ImageNet-C brightness | HSV value + 0.1, 0.2, 0.3, 0.4, 0.5 | OpenCV HSV (albumentations RandomBrightnessContrast adds in RGB) |
| camera_fog | camera | ImageNet-C fog | plasma fractal (strength, wibble decay) (1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4) | numpy diamond-square (albumentations RandomFog draws circles) |
| camera_motion_blur | camera | ImageNet-C motion blur | (radius, sigma) at 224 px (10, 3), (15, 5), (15, 8), (15, 12), (20, 15), angle U(-45, 45) deg | OpenCV one-sided Gaussian line kernel (ImageMagick's; albumentations MotionBlur is a uniform line) |
| camera_occlusion | camera | nuScenes-C / Yu et al. occlusion | image share covered by soft-edged mud blobs 0.05, 0.1, 0.2, 0.3, 0.4 (each camera) | OpenCV |
| camera_missing | camera | Yu et al. 2022 camera failure | cameras missing of 6: 1, 2, 3, 4, 5 | - |
| camera_all_missing | camera | Yu et al. 2022 camera failure | all 6 cameras absent (one level) | - |
| camera_extrinsic_one | camera | Yu et al. 2022 spatial misalignment | one random camera's believed rotation off by 0.5, 1, 1.5, 2, 2.5 deg about a random axis | numpy |
| camera_extrinsic_all | camera | Yu et al. 2022 spatial misalignment | every camera off by 0.5, 1, 1.5, 2, 2.5 deg, each about its own random axis | numpy |
| camera_stale | camera | Yu et al. 2022 temporal misalignment | every camera frame 50, 87.5, 125, 162.5, 200 ms stale | recorded earlier frame nearest the stale time (within 45 ms) where the dataset has one; else the current image with the pose the ego reaches that much later (ego motion of the same delay) |
| ultrasonic_missing | ultrasonic | drivefuse | all 12 sensors failed (one level) | - |
| ultrasonic_some_failed | ultrasonic | drivefuse | sensors with no echo of 12: 2, 4, 6, 8, 10 | - |
| ultrasonic_false_echo | ultrasonic | drivefuse | sensors with a false close echo (U(0.2, 0.8) m): 1, 2, 3, 4, 6 | - |
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from calibration.sample import CameraView, SyncedSample
from calibration.se3 import SE3
from sensors.lidar_rings import (
    DEFAULT_LIDAR_ORIGIN_M,
    NUM_RINGS,
    ring_of_elevation,
)
from sensors.types import CAMERA_CHANNELS, LidarSweep, Modality, UltrasonicScan

if TYPE_CHECKING:
    from sensors.datasets.nuscenes import NuScenesDataset

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
MID_SEVERITY = 3
MODALITIES: tuple[Modality, ...] = tuple(Modality)

IMAGENET_C_WIDTH_PX = 224


@dataclass(frozen=True)
class Corruption:
    """One corruption and its published severity ladder.

    Attributes:
        name: identifier used on the command line and in tables.
        modality: the sensor it changes (``camera``, ``lidar``, ``ultrasonic``).
        suite: the published suite it follows.
        levels: the parameter of severities 1..5 (one entry for single-level faults).
        unit: what ``levels`` measures.
        parts: a composed fault (``compose``): the ``(corruption, severity)`` applied in
            order; empty for a single corruption.

    """

    name: str
    modality: Modality
    suite: str
    levels: tuple
    unit: str
    parts: tuple[tuple[str, int], ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every sensor it changes (two or more for a composed fault)."""
        if not self.parts:
            return (self.modality,)
        return tuple(dict.fromkeys(_BY_NAME[n].modality for n, _ in self.parts))

    @property
    def severities(self) -> tuple[int, ...]:
        """Severities this corruption is scored at (just 1 for a single-level fault)."""
        return SEVERITIES if len(self.levels) > 1 else (1,)

    def level(self, severity: int) -> object:
        """The parameter at ``severity`` (1-based; single-level faults: the one level)."""
        if severity not in SEVERITIES:
            raise ValueError(f"{self.name}: severity must be 1..5 (0 = identity), got {severity}")
        return self.levels[min(severity, len(self.levels)) - 1]


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("lidar_fog", Modality.LIDAR, "Robo3D fog", (0.005, 0.01, 0.02, 0.03, 0.06), "alpha 1/m"),
    Corruption("lidar_beam_missing", Modality.LIDAR, "Robo3D beam missing", (4, 8, 12, 16, 20),
               "rings dropped"),
    Corruption("lidar_cross_sensor", Modality.LIDAR, "Robo3D cross-sensor", (24, 20, 16, 12, 8),
               "rings kept, every 2nd point"),
    Corruption("lidar_density", Modality.LIDAR, "Robo3D density decrease",
               (0.2, 0.35, 0.5, 0.65, 0.8), "share dropped"),
    Corruption("lidar_cutout", Modality.LIDAR, "nuScenes-C cutout", (2, 4, 6, 8, 10),
               "regions of 2.5 m"),
    Corruption("lidar_crosstalk", Modality.LIDAR, "Robo3D crosstalk",
               (0.006, 0.012, 0.018, 0.024, 0.03), "share of false points"),
    Corruption("lidar_gaussian", Modality.LIDAR, "nuScenes-C Gaussian (L)",
               (0.04, 0.08, 0.12, 0.16, 0.20), "sigma m"),
    Corruption("lidar_fov_lost", Modality.LIDAR, "Robo3D FOV lost", (105, 90, 75, 60, 45),
               "kept +-deg"),
    Corruption("lidar_motion_comp", Modality.LIDAR, "nuScenes-C motion compensation",
               ((0.5, 2.0), (1.0, 4.0), (1.5, 6.0), (2.0, 8.0), (3.0, 12.0)),
               "(m/s, deg/s)"),
    Corruption("lidar_object_failure", Modality.LIDAR, "Yu et al. object failure",
               (0.2, 0.35, 0.5, 0.65, 0.8), "probability per object"),
    Corruption("lidar_missing", Modality.LIDAR, "Yu et al. LiDAR failure", (None,), "absent"),
    Corruption("camera_gaussian", Modality.CAMERA, "ImageNet-C Gaussian noise",
               (0.08, 0.12, 0.18, 0.26, 0.38), "sigma"),
    Corruption("camera_impulse", Modality.CAMERA, "ImageNet-C impulse noise",
               (0.03, 0.06, 0.09, 0.17, 0.27), "amount"),
    Corruption("camera_low_light", Modality.CAMERA, "nuScenes-C low light",
               (0.5, 0.35, 0.25, 0.15, 0.08), "irradiance factor"),
    Corruption("camera_brightness", Modality.CAMERA, "ImageNet-C brightness",
               (0.1, 0.2, 0.3, 0.4, 0.5), "HSV value added"),
    Corruption("camera_fog", Modality.CAMERA, "ImageNet-C fog",
               ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
               "(strength, wibble decay)"),
    Corruption("camera_motion_blur", Modality.CAMERA, "ImageNet-C motion blur",
               ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), "(radius, sigma) px @224"),
    Corruption("camera_occlusion", Modality.CAMERA, "nuScenes-C occlusion",
               (0.05, 0.1, 0.2, 0.3, 0.4), "share covered"),
    Corruption("camera_missing", Modality.CAMERA, "Yu et al. camera failure", (1, 2, 3, 4, 5),
               "cameras missing"),
    Corruption("camera_all_missing", Modality.CAMERA, "Yu et al. camera failure", (None,), "absent"),
    Corruption("camera_extrinsic_one", Modality.CAMERA, "Yu et al. spatial misalignment",
               (0.5, 1.0, 1.5, 2.0, 2.5), "deg, one camera"),
    Corruption("camera_extrinsic_all", Modality.CAMERA, "Yu et al. spatial misalignment",
               (0.5, 1.0, 1.5, 2.0, 2.5), "deg, every camera"),
    Corruption("camera_stale", Modality.CAMERA, "Yu et al. temporal misalignment",
               (50_000, 87_500, 125_000, 162_500, 200_000), "us stale"),
    Corruption("ultrasonic_missing", Modality.ULTRASONIC, "drivefuse", (None,), "absent"),
    Corruption("ultrasonic_some_failed", Modality.ULTRASONIC, "drivefuse", (2, 4, 6, 8, 10),
               "sensors silent"),
    Corruption("ultrasonic_false_echo", Modality.ULTRASONIC, "drivefuse", (1, 2, 3, 4, 6),
               "sensors with false echo"),
)
CORRUPTION_NAMES: tuple[str, ...] = tuple(c.name for c in CORRUPTIONS)
_BY_NAME = {c.name: c for c in CORRUPTIONS}


def compose(parts: tuple[tuple[str, int], ...]) -> str:
    """Name of the composed fault applying each ``(corruption, severity)`` in order, e.g.
    ``camera_missing@1+lidar_beam_missing@4`` (one camera gone and 16 of 32 LiDAR rings).
    ``get_corruption`` and ``corrupt`` accept it like any name; it is single-level.
    """
    return COMPOSE_SEP.join(f"{n}{SEVERITY_SEP}{s}" for n, s in parts)


COMPOSE_SEP = "+"
SEVERITY_SEP = "@"


def _composed(name: str) -> Corruption:
    parts = []
    for part in name.split(COMPOSE_SEP):
        base, sep, sev = part.partition(SEVERITY_SEP)
        if not sep or not sev.isdigit():
            raise ValueError(f"composed corruption {name!r}: part {part!r} is not "
                             f"<corruption>{SEVERITY_SEP}<severity>")
        c = get_corruption(base)
        if int(sev) not in c.severities:
            raise ValueError(f"composed corruption {name!r}: {base} has severities "
                             f"{c.severities}, not {sev}")
        parts.append((base, int(sev)))
    if len(parts) < 2 or len({n for n, _ in parts}) != len(parts):
        raise ValueError(f"composed corruption {name!r}: needs two or more different parts")
    first = _BY_NAME[parts[0][0]]
    return Corruption(name, first.modality, "composed", (None,), "composed", tuple(parts))


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name`` (a ``ValueError`` lists the known ones); a composed
    name (``compose``) gives its composed fault.
    """
    if COMPOSE_SEP in name or SEVERITY_SEP in name:
        return _composed(name)
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTION_NAMES)}") \
            from None


@dataclass(frozen=True)
class CameraFrameRef:
    """A recorded camera frame that can be read later (temporal misalignment).

    Attributes:
        timestamp_us: exposure time.
        path: image file.
        intrinsics: (3, 3) K at the stored resolution.

    """

    timestamp_us: int
    path: str
    intrinsics: np.ndarray


@dataclass(frozen=True, eq=False)
class SampleContext:
    """What some corruptions need beyond the sample, read once from the dataset.

    Attributes:
        sweep_origins: per accumulated sweep ``(time_lag_s, (3,) LiDAR origin in the
            reference ego frame)``, newest first.
        camera_history: per ``CAMERA_CHANNELS`` position, earlier recorded frames of that
            camera (newest first); empty where there are none.
        ego_poses: ``(timestamp_us, global_SE3_ego)`` of the scene's LiDAR ticks within a
            second after the sample (the stale-camera fallback's pose shift).

    """

    sweep_origins: tuple[tuple[float, np.ndarray], ...] = ((0.0, np.array(DEFAULT_LIDAR_ORIGIN_M)),)
    camera_history: tuple[tuple[CameraFrameRef, ...], ...] = ((),) * len(CAMERA_CHANNELS)
    ego_poses: tuple[tuple[int, SE3], ...] = ()


def sample_context(ds: NuScenesDataset, token: str, history_s: float = 0.5) -> SampleContext:
    """The ``SampleContext`` of keyframe ``token``, through the dataset's public tables.

    Sweep origins follow the LIDAR_TOP ``prev`` chain as far as ``ds.num_sweeps`` (the sweeps
    ``load_sample`` accumulated); camera history follows each camera's ``prev`` chain back
    ``history_s`` seconds.
    """
    nusc = ds.nusc
    sample = nusc.get("sample", token)
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    ref_us = int(lidar_sd["timestamp"])

    def pose(rec: dict) -> SE3:
        return SE3.from_quaternion(rec["rotation"], rec["translation"])

    ego_SE3_global = pose(nusc.get("ego_pose", lidar_sd["ego_pose_token"])).inverse()  # noqa: N806
    origins = []
    sd: dict | None = lidar_sd
    for _ in range(ds.num_sweeps):
        if sd is None:
            break
        global_SE3_ego = pose(nusc.get("ego_pose", sd["ego_pose_token"]))  # noqa: N806
        ego_SE3_lidar = pose(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))  # noqa: N806
        ref_SE3_lidar = ego_SE3_global @ global_SE3_ego @ ego_SE3_lidar  # noqa: N806
        origins.append(((ref_us - int(sd["timestamp"])) * 1e-6, ref_SE3_lidar.translation.copy()))
        sd = nusc.get("sample_data", sd["prev"]) if sd["prev"] else None
    history = []
    for ch in CAMERA_CHANNELS:
        frames: list[CameraFrameRef] = []
        tok = sample["data"].get(ch)
        if tok:
            cur = nusc.get("sample_data", tok)
            t_cam = int(cur["timestamp"])
            prev = cur["prev"]
            while prev:
                rec = nusc.get("sample_data", prev)
                if t_cam - int(rec["timestamp"]) > history_s * 1e6:
                    break
                cs = nusc.get("calibrated_sensor", rec["calibrated_sensor_token"])
                frames.append(CameraFrameRef(
                    int(rec["timestamp"]), str(Path(ds.dataroot) / rec["filename"]),
                    np.asarray(cs["camera_intrinsic"], np.float64),
                ))
                prev = rec["prev"]
        history.append(tuple(frames))
    poses = []
    sd = lidar_sd
    for _ in range(4):  # a few ticks before too: a camera can expose before the LiDAR
        if not sd["prev"]:
            break
        sd = nusc.get("sample_data", sd["prev"])
    while sd is not None and int(sd["timestamp"]) - ref_us <= 1_000_000:
        poses.append((int(sd["timestamp"]), pose(nusc.get("ego_pose", sd["ego_pose_token"]))))
        sd = nusc.get("sample_data", sd["next"]) if sd["next"] else None
    return SampleContext(tuple(origins), tuple(history), tuple(poses))


def corruption_rng(seed: int, token: str, name: str) -> np.random.Generator:
    """The Generator of one (seed, sample, corruption): independent of visiting order."""
    words = [int(seed) & 0xFFFFFFFF, zlib.crc32(token.encode()), zlib.crc32(name.encode())]
    return np.random.default_rng(np.random.SeedSequence(words))


def corrupt(
    sample: SyncedSample,
    name: str,
    severity: int,
    seed: int = 0,
    context: SampleContext | None = None,
) -> SyncedSample:
    """``sample`` under corruption ``name`` at ``severity`` (0 = the sample itself).

    Args:
        sample: a synced sample (not modified).
        name: one of ``CORRUPTION_NAMES``.
        severity: 0 (identity) or 1..5.
        seed: run seed; with the token and the name it seeds every random draw.
        context: sweep origins, camera history and ego poses (``sample_context``); None uses
            one sweep at ``DEFAULT_LIDAR_ORIGIN_M`` and no camera history.

    Returns:
        The corrupted sample; the modality the corruption targets may become None.

    """
    spec = get_corruption(name)
    if severity == 0:
        return sample
    if spec.parts:  # each part draws from its own (seed, token, part name) stream
        spec.level(severity)  # a composed fault is single-level: severity 1..5 accepted
        for part, part_severity in spec.parts:
            sample = corrupt(sample, part, part_severity, seed, context)
        return sample
    p = spec.level(severity)
    ctx = context or SampleContext()
    rng = corruption_rng(seed, sample.token, name)
    match spec.modality:
        case Modality.LIDAR:
            if name == "lidar_missing":
                return replace(sample, lidar=None)
            if sample.lidar is None:
                return sample
            return replace(sample, lidar=_corrupt_lidar(sample, name, p, rng, ctx))
        case Modality.CAMERA:
            return _corrupt_cameras(sample, name, p, rng, ctx)
        case Modality.ULTRASONIC:
            if name == "ultrasonic_missing":
                return replace(sample, ultrasonic=None)
            if sample.ultrasonic is None:
                return sample
            return replace(sample, ultrasonic=_corrupt_ultrasonic(sample.ultrasonic, name, p,
                                                                  rng))
    raise AssertionError(spec.modality)


# ---------------------------------------------------------------------------------- LiDAR
@dataclass(frozen=True, eq=False)
class _Polar:
    """Each point relative to its own sweep's LiDAR origin (ego axes at the reference time)."""

    origin: np.ndarray  # (N, 3)
    range_m: np.ndarray  # (N,)
    azimuth_rad: np.ndarray  # (N,) about +z from ego +x
    elevation_rad: np.ndarray  # (N,)


def _sweep_index(points: np.ndarray, ctx: SampleContext) -> np.ndarray:
    lags = np.array([lag for lag, _ in ctx.sweep_origins])
    if points.shape[1] < 5 or len(lags) == 1:
        return np.zeros(len(points), np.int64)
    return np.abs(points[:, 4:5] - lags[None, :]).argmin(axis=1)


def _polar(points: np.ndarray, ctx: SampleContext) -> _Polar:
    origins = np.stack([o for _, o in ctx.sweep_origins]).astype(np.float64)
    origin = origins[_sweep_index(points, ctx)]
    d = points[:, :3].astype(np.float64) - origin
    horiz = np.hypot(d[:, 0], d[:, 1])
    return _Polar(origin, np.linalg.norm(d, axis=1), np.arctan2(d[:, 1], d[:, 0]),
                  np.arctan2(d[:, 2], horiz))


def lidar_rings(points: np.ndarray, context: SampleContext | None = None) -> np.ndarray:
    """(N,) int64 ring (0 = lowest beam) of each point: the beam nearest its elevation."""
    return ring_of_elevation(np.degrees(_polar(points, context or SampleContext()).elevation_rad))


def _with_points(lidar: LidarSweep, points: np.ndarray) -> LidarSweep:
    return replace(lidar, points=np.ascontiguousarray(points, np.float32))


def _corrupt_lidar(
    sample: SyncedSample, name: str, p: object, rng: np.random.Generator, ctx: SampleContext
) -> LidarSweep:
    lidar = sample.lidar
    pts = np.array(lidar.points, np.float32)
    n = len(pts)
    match name:
        case "lidar_fog":
            return _with_points(lidar, _lidar_fog(pts, float(p), rng, ctx))
        case "lidar_beam_missing":
            dropped = rng.permutation(NUM_RINGS)[: int(p)]
            return _with_points(lidar, pts[~np.isin(lidar_rings(pts, ctx), dropped)])
        case "lidar_cross_sensor":
            kept_rings = np.unique(np.round(np.linspace(0, NUM_RINGS - 1, int(p))).astype(int))
            rings = lidar_rings(pts, ctx)
            keep = np.isin(rings, kept_rings)
            # Every second point of each kept ring and sweep, in firing (stored) order.
            sweep = _sweep_index(pts, ctx)
            order = np.argsort(sweep * NUM_RINGS + rings, kind="stable")
            key = (sweep * NUM_RINGS + rings)[order]
            start = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
            rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
            second = np.zeros(n, bool)
            second[order] = rank % 2 == 0
            return _with_points(lidar, pts[keep & second])
        case "lidar_density":
            return _with_points(lidar, pts[rng.random(n) >= float(p)])
        case "lidar_cutout":
            keep = np.ones(n, bool)
            if n:
                centres = pts[rng.choice(n, size=int(p), replace=n < int(p)), :2]
                for c in centres:
                    keep &= np.hypot(pts[:, 0] - c[0], pts[:, 1] - c[1]) > 2.5
            return _with_points(lidar, pts[keep])
        case "lidar_crosstalk":
            m = int(round(float(p) * n))
            if m == 0:
                return lidar
            src = rng.choice(n, size=m)
            pol = _polar(pts[src], ctx)
            r = rng.uniform(0.0, 70.0, m)
            ce = np.cos(pol.elevation_rad)
            d = np.stack([ce * np.cos(pol.azimuth_rad), ce * np.sin(pol.azimuth_rad),
                          np.sin(pol.elevation_rad)], axis=1)
            fake = pts[src].copy()
            fake[:, :3] = pol.origin + r[:, None] * d
            fake[:, 3] = rng.uniform(0.0, 20.0, m)
            return _with_points(lidar, np.concatenate([pts, fake]))
        case "lidar_gaussian":
            out = pts.copy()
            out[:, :3] += rng.normal(0.0, float(p), (n, 3)).astype(np.float32)
            return _with_points(lidar, out)
        case "lidar_fov_lost":
            az = np.degrees(_polar(pts, ctx).azimuth_rad)
            return _with_points(lidar, pts[np.abs(az) <= float(p)])
        case "lidar_motion_comp":
            v_mps, w_degps = p
            heading = rng.uniform(-np.pi, np.pi)
            sign = rng.choice([-1.0, 1.0])
            lag = pts[:, 4].astype(np.float64) if pts.shape[1] > 4 else np.zeros(n)
            yaw = sign * np.radians(w_degps) * lag
            c, s = np.cos(yaw), np.sin(yaw)
            out = pts.copy()
            x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
            out[:, 0] = c * x - s * y + v_mps * np.cos(heading) * lag
            out[:, 1] = s * x + c * y + v_mps * np.sin(heading) * lag
            return _with_points(lidar, out)
        case "lidar_object_failure":
            boxes = sample.boxes
            if boxes is None or len(boxes) == 0:
                return lidar
            failed = boxes.subset(rng.random(len(boxes)) < float(p))
            if len(failed) == 0:
                return lidar
            vel = np.nan_to_num(failed.velocity_mps, nan=0.0)
            lag = pts[:, 4] if pts.shape[1] > 4 else np.zeros(n, np.float32)
            drop = np.zeros(n, bool)
            for lag_s in np.unique(lag):
                rows = np.flatnonzero(lag == lag_s)
                # Earlier sweeps saw each object where it was lag_s seconds before.
                back = np.c_[vel * float(lag_s), np.zeros(len(failed))]
                moved = replace(failed, center_m=failed.center_m - back)
                drop[rows] = moved.points_in_boxes(pts[rows, :3]).any(axis=0)
            return _with_points(lidar, pts[~drop])
    raise ValueError(f"{name}: not a LiDAR corruption")


def fog_margin(range_m: np.ndarray, intensity: np.ndarray, alpha_per_m: float) -> np.ndarray:
    """(N,) hard-return power over the detection threshold in fog (>= 1: still detected).

    The clear-air margin ``1 + rho (120 m / R)^2`` (rho = intensity / 255, floored at 0.02;
    at least 1 because every recorded return was detected) times the two-way Beer-Lambert
    transmission ``exp(-2 alpha R)``.
    """
    rho = np.clip(np.asarray(intensity, np.float64) / 255.0, 0.02, 1.0)
    r = np.maximum(np.asarray(range_m, np.float64), 0.1)
    return (1.0 + rho * (120.0 / r) ** 2) * np.exp(-2.0 * alpha_per_m * r)


def _lidar_fog(
    pts: np.ndarray, alpha: float, rng: np.random.Generator, ctx: SampleContext
) -> np.ndarray:
    n = len(pts)
    pol = _polar(pts, ctx)
    r = np.maximum(pol.range_m, 0.1)
    hard = fog_margin(r, pts[:, 3], alpha)
    # Backscatter of the fog volume near the sensor (a soft target): its power grows with
    # the extinction; its range is a few metres, where the beam and receiver overlap.
    soft = 30.0 * alpha * rng.lognormal(0.0, 0.5, n)
    r_soft = 1.5 + rng.gamma(2.0, 1.2, n)
    scatter = (soft >= 1.0) & (soft > hard) & (r_soft < r)
    keep_hard = (hard >= 1.0) & ~scatter
    out = pts.copy()
    out[:, 3] = (pts[:, 3] * np.exp(-2.0 * alpha * r)).astype(np.float32)
    d = (pts[:, :3] - pol.origin) / r[:, None]
    fake = pts[scatter].copy()
    fake[:, :3] = pol.origin[scatter] + r_soft[scatter, None] * d[scatter]
    fake[:, 3] = np.minimum(255.0, 2.0 * soft[scatter]).astype(np.float32)
    return np.concatenate([out[keep_hard], fake])


# --------------------------------------------------------------------------------- camera
def _image_rngs(rng: np.random.Generator) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in rng.integers(0, 2**63 - 1, len(CAMERA_CHANNELS))]


def _corrupt_cameras(
    sample: SyncedSample, name: str, p: object, rng: np.random.Generator, ctx: SampleContext
) -> SyncedSample:
    cams = list(sample.cameras)
    k = len(cams)
    match name:
        case "camera_all_missing":
            return replace(sample, cameras=(None,) * k)
        case "camera_missing":
            gone = rng.permutation(k)[: int(p)]
            return replace(sample, cameras=tuple(None if i in gone else c
                                                 for i, c in enumerate(cams)))
        case "camera_extrinsic_one" | "camera_extrinsic_all":
            which = rng.permutation(k)[:1] if name == "camera_extrinsic_one" else np.arange(k)
            axes = rng.normal(size=(k, 3))
            for i in which:
                if cams[i] is not None:
                    err = SE3(rotation_about(axes[i], np.radians(float(p))))
                    cams[i] = replace(cams[i], ref_SE3_cam=cams[i].ref_SE3_cam @ err)
            return replace(sample, cameras=tuple(cams))
        case "camera_stale":
            return replace(sample, cameras=tuple(
                _stale_view(c, i, int(p), sample, ctx) if c is not None else None
                for i, c in enumerate(cams)
            ))
    rngs = _image_rngs(rng)
    out = []
    for cam, r in zip(cams, rngs):
        if cam is None:
            out.append(None)
            continue
        img = corrupt_image(cam.image.image, name, p, r)
        # The pixels are no longer the file's: drop the source so that nothing downstream
        # (Pipeline's decode-like-training step) reads the clean image back from disk.
        out.append(replace(cam, image=replace(cam.image, image=img, source="")))
    return replace(sample, cameras=tuple(out))


def rotation_about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """(3, 3) rotation by ``angle_rad`` about ``axis`` (Rodrigues)."""
    rvec = np.asarray(axis, np.float64) / np.linalg.norm(axis) * angle_rad
    return cv2.Rodrigues(rvec)[0]


def corrupt_image(image: np.ndarray, name: str, p: object, rng: np.random.Generator) -> np.ndarray:
    """One (H, W, 3) uint8 RGB image under an image corruption (see the module table)."""
    h, w = image.shape[:2]
    scale = w / IMAGENET_C_WIDTH_PX
    x = image.astype(np.float32) / 255.0
    match name:
        case "camera_gaussian":
            import albumentations as A  # noqa: N812 - the library's convention

            t = A.Compose([A.GaussNoise(std_range=(float(p), float(p)), mean_range=(0.0, 0.0),
                                        per_channel=True, noise_scale_factor=1.0, p=1.0)],
                          seed=int(rng.integers(0, 2**31 - 1)))
            return t(image=image)["image"]
        case "camera_impulse":
            u = rng.random(image.shape)
            out = image.copy()
            out[u < float(p) / 2] = 0
            out[(u >= float(p) / 2) & (u < float(p))] = 255
            return out
        case "camera_low_light":
            linear = x ** 2.2 * float(p)
            full_well = 1000.0
            shot = rng.poisson(linear * full_well) / full_well
            noisy = shot + rng.normal(0.0, 0.002, image.shape)
            return _to_u8(np.clip(noisy, 0.0, 1.0) ** (1 / 2.2))
        case "camera_brightness":
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
            hsv[..., 2] = np.clip(hsv[..., 2] + float(p), 0.0, 1.0)
            return _to_u8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
        case "camera_fog":
            strength, decay = p
            size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
            fractal = plasma_fractal(size, decay, rng)[:h, :w, None]
            peak = x.max()
            return _to_u8((x + strength * fractal) * peak / (peak + strength))
        case "camera_motion_blur":
            radius, sigma = p
            return motion_blur(image, radius * scale, sigma * scale, rng.uniform(-45.0, 45.0))
        case "camera_occlusion":
            return occlude(image, float(p), rng)
    raise ValueError(f"{name}: not an image corruption")


def _to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size) diamond-square fractal in [0, 1] (ImageNet-C fog's height map).

    ``size`` is a power of two; the random offset starts at +-100 x 100 (ImageNet-C's
    "wibble") and is divided by ``decay`` at every halving of the step.
    """
    a = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        # Square step: centre of each square = mean of its 4 corners + noise (wrapping).
        c = a[0:size:step, 0:size:step]
        corners = c + np.roll(c, -1, axis=0)
        corners = corners + np.roll(corners, -1, axis=1)
        a[half:size:step, half:size:step] = corners / 4 + wibble * rng.uniform(
            -wibble, wibble, corners.shape)
        # Diamond step: edge midpoints = mean of the two corners and two centres around them.
        c = a[0:size:step, 0:size:step]
        m = a[half:size:step, half:size:step]
        lr = (c + np.roll(c, -1, axis=1) + m + np.roll(m, 1, axis=0)) / 4
        a[0:size:step, half:size:step] = lr + wibble * rng.uniform(-wibble, wibble, lr.shape)
        tb = (c + np.roll(c, -1, axis=0) + m + np.roll(m, 1, axis=1)) / 4
        a[half:size:step, 0:size:step] = tb + wibble * rng.uniform(-wibble, wibble, tb.shape)
        step //= 2
        wibble /= decay
    a -= a.min()
    return a / max(a.max(), 1e-12)


def motion_blur(
    image: np.ndarray, radius_px: float, sigma_px: float, angle_deg: float
) -> np.ndarray:
    """ImageMagick-style motion blur: a one-sided Gaussian-weighted line kernel at an angle.

    Weight ``exp(-d^2 / (2 sigma^2))`` at distance d = 0 .. radius along the motion direction
    (the image is smeared behind the motion), normalised; borders replicate.
    """
    r = max(1, int(np.ceil(radius_px)))
    d = np.arange(r + 1, dtype=np.float64)
    wts = np.exp(-(d**2) / (2 * max(sigma_px, 1e-3) ** 2))
    wts /= wts.sum()
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    t = np.radians(angle_deg)
    for di, wt in zip(d, wts):
        # Bilinear splat of each tap so a fractional angle keeps the kernel's weight.
        fx, fy = r + di * np.cos(t), r + di * np.sin(t)
        x0, y0 = int(np.floor(fx)), int(np.floor(fy))
        ax, ay = fx - x0, fy - y0
        for yy, xx, ww in ((y0, x0, (1 - ax) * (1 - ay)), (y0, x0 + 1, ax * (1 - ay)),
                           (y0 + 1, x0, (1 - ax) * ay), (y0 + 1, x0 + 1, ax * ay)):
            if 0 <= yy < k.shape[0] and 0 <= xx < k.shape[1]:
                k[yy, xx] += wt * ww
    k /= k.sum()
    return cv2.filter2D(image, -1, k, borderType=cv2.BORDER_REPLICATE)


def occlude(image: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Soft-edged mud blobs (random ellipses, Gaussian-blurred alpha) covering ~``share``."""
    h, w = image.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    covered = 0.0
    for _ in range(200):
        if covered >= share:
            break
        axes = (max(1, int(rng.uniform(0.08, 0.25) * w)), max(1, int(rng.uniform(0.08, 0.25) * h)))
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.ellipse(alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        covered = float((alpha > 0.5).mean())
    ksize = max(3, (min(h, w) // 20) | 1)
    alpha = cv2.GaussianBlur(alpha, (ksize, ksize), 0)[..., None]
    mud = np.array([60, 45, 30], np.float32)
    return (image * (1 - alpha) + mud * alpha).astype(np.uint8)


def _stale_view(
    cam: CameraView, index: int, stale_us: int, sample: SyncedSample, ctx: SampleContext
) -> CameraView:
    """The view as if its frame arrived ``stale_us`` late: an earlier recorded image under
    the current pose, or (no recording near that time) the current image under the pose the
    ego reaches ``stale_us`` later (the same geometric error, by ego motion only).
    """
    from sensors.readers import read_camera_image

    t_cam = cam.image.timestamp_us
    history = ctx.camera_history[index] if index < len(ctx.camera_history) else ()
    if history:
        best = min(history, key=lambda f: abs((t_cam - f.timestamp_us) - stale_us))
        if abs((t_cam - best.timestamp_us) - stale_us) <= 45_000:
            reduction = int(round(1.0 / cam.image.scale)) if cam.image.scale else 1
            img = read_camera_image(best.path, best.intrinsics, cam.image.channel,
                                    best.timestamp_us, reduction)
            # The frame is delivered as if current: the new pixels, the old stamp and pose.
            return replace(cam, image=replace(img, timestamp_us=t_cam))
    if not ctx.ego_poses:
        return cam
    target = t_cam + stale_us
    times = np.array([t for t, _ in ctx.ego_poses])
    pose_later = ctx.ego_poses[int(np.abs(times - target).argmin())][1]
    pose_now = ctx.ego_poses[int(np.abs(times - t_cam).argmin())][1]
    ego_SE3_global = sample.global_SE3_ego.inverse()  # noqa: N806
    # ref_SE3_cam = ref_SE3_global @ global_SE3_ego(t) @ ego_SE3_cam: swap the ego pose.
    ego_SE3_cam = pose_now.inverse() @ sample.global_SE3_ego @ cam.ref_SE3_cam  # noqa: N806
    return replace(cam, ref_SE3_cam=ego_SE3_global @ pose_later @ ego_SE3_cam)


def stale_source(cam: CameraView, index: int, stale_us: int, ctx: SampleContext) -> str:
    """``"recorded"`` when ``camera_stale`` reads an earlier frame for this camera, else
    ``"pose_shift"`` (the fallback).
    """
    history = ctx.camera_history[index] if index < len(ctx.camera_history) else ()
    t = cam.image.timestamp_us
    ok = any(abs((t - f.timestamp_us) - stale_us) <= 45_000 for f in history)
    return "recorded" if ok else "pose_shift"


# ----------------------------------------------------------------------------- ultrasonic
def _corrupt_ultrasonic(
    scan: UltrasonicScan, name: str, p: object, rng: np.random.Generator
) -> UltrasonicScan:
    r = np.array(scan.ranges_m, np.float32)
    order = rng.permutation(len(r))
    match name:
        case "ultrasonic_some_failed":
            r[order[: int(p)]] = np.nan
        case "ultrasonic_false_echo":
            idx = order[: int(p)]
            fake = rng.uniform(0.2, 0.8, len(r)).astype(np.float32)[idx]
            r[idx] = np.where(np.isfinite(r[idx]), np.minimum(r[idx], fake), fake)
        case _:
            raise ValueError(f"{name}: not an ultrasonic corruption")
    return replace(scan, ranges_m=r)


def touched_modality(name: str) -> str:
    """The modality ``name`` changes."""
    return get_corruption(name).modality
