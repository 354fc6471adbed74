"""Typed sensor frames that pass between stages.

Every frame is a frozen dataclass; arrays are made read-only on construction so that no stage
mutates another's input. Points are row-major ``(N, C)``; timestamps are integer microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum

import numpy as np

# nuScenes channel names in the fixed order every stage uses (camera index = position here).
CAMERA_CHANNELS: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
LIDAR_CHANNEL = "LIDAR_TOP"
ULTRASONIC_CHANNEL = "ULTRASONIC"
NUM_ULTRASONIC_SENSORS = 12

# The 10 nuScenes detection classes, in the devkit's order (label index = position here).
DETECTION_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)
# nuScenes category -> detection class (the devkit's mapping; categories not listed are not
# evaluated). Readers, the evaluation and the simulator all take the taxonomy from here.
CATEGORY_TO_DETECTION_CLASS: dict[str, str] = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}
# Detection class -> the one category a writer of annotations uses for it (the simulator).
DETECTION_CLASS_CATEGORY: dict[str, str] = {
    "car": "vehicle.car",
    "truck": "vehicle.truck",
    "bus": "vehicle.bus.rigid",
    "trailer": "vehicle.trailer",
    "construction_vehicle": "vehicle.construction",
    "pedestrian": "human.pedestrian.adult",
    "motorcycle": "vehicle.motorcycle",
    "bicycle": "vehicle.bicycle",
    "traffic_cone": "movable_object.trafficcone",
    "barrier": "movable_object.barrier",
}


class DrivingCommand(IntEnum):
    """High-level route command of a sample (the planning head's one-hot input).

    An ``IntEnum``: the integer values are what checkpoints were trained with and what the
    ``.npz`` caches hold.
    """

    RIGHT = 0
    LEFT = 1
    STRAIGHT = 2


class NameEnum(str, Enum):
    """A string enum that compares, hashes, prints, formats and reprs as its plain name.

    So messages, file names and reports read the same whichever of a member or its string
    (from a config.json) they got, and a member can be used wherever the string was.
    """

    def __str__(self) -> str:
        """The member's name as written in files, e.g. ``"camera"``."""
        return str(self.value)

    def __format__(self, spec: str) -> str:
        """Formatted as the name (f-strings, ``str.format``)."""
        return format(str(self.value), spec)

    def __repr__(self) -> str:
        """``'camera'``, as the string it stands for."""
        return repr(self.value)


class Modality(NameEnum):
    """The three sensing modalities; their order is the order of presence masks."""

    CAMERA = "camera"
    LIDAR = "lidar"
    ULTRASONIC = "ultrasonic"


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


# Named LiDAR column layouts. nuScenes files carry the ring index as the 5th column; after
# multi-sweep accumulation the 5th column is the time lag to the reference sweep instead.
NUSCENES_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity", "ring")
KITTI_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity")
ACCUMULATED_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity", "time_lag_s")


@dataclass(frozen=True, eq=False)
class LidarSweep:
    """One LiDAR sweep (or several accumulated into one).

    Attributes:
        points: (N, C) float32, columns named by ``columns``; x, y, z in metres in ``frame``.
        columns: names of the C columns; the first three are always x, y, z.
        timestamp_us: sweep (reference) timestamp, microseconds.
        channel: sensor channel, e.g. ``"LIDAR_TOP"``.
        frame: coordinate frame of x, y, z: ``"lidar"`` (sensor) or ``"ego"``.
        num_dropped_nonfinite: rows with NaN/inf dropped by the reader.
        source: file the points came from (for error messages), or ``""``.

    """

    points: np.ndarray
    columns: tuple[str, ...]
    timestamp_us: int
    channel: str = LIDAR_CHANNEL
    frame: str = "lidar"
    num_dropped_nonfinite: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        p = np.asarray(self.points, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] != len(self.columns):
            raise ValueError(
                f"LidarSweep {self.source or self.channel}: points shape {p.shape} does not match "
                f"columns {self.columns}"
            )
        if tuple(self.columns[:3]) != ("x", "y", "z"):
            raise ValueError(f"LidarSweep: first columns must be x, y, z, got {self.columns}")
        object.__setattr__(self, "points", _readonly(p))
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "timestamp_us", int(self.timestamp_us))

    @property
    def num_points(self) -> int:
        """Number of rows N."""
        return int(self.points.shape[0])

    @property
    def xyz(self) -> np.ndarray:
        """(N, 3) float32 view of x, y, z (metres)."""
        return self.points[:, :3]

    def column(self, name: str) -> np.ndarray:
        """(N,) float32 view of the named column."""
        try:
            return self.points[:, self.columns.index(name)]
        except ValueError:
            raise KeyError(
                f"LidarSweep has no column {name!r}; columns are {self.columns}"
            ) from None


@dataclass(frozen=True, eq=False)
class CameraImage:
    """One decoded camera image with the intrinsics that match its resolution.

    Attributes:
        image: (H, W, 3) uint8, RGB.
        intrinsics: (3, 3) float64 pinhole matrix K for *this* resolution (scaled on reduced
            decode).
        timestamp_us: exposure timestamp, microseconds.
        channel: e.g. ``"CAM_FRONT"``.
        distortion: OpenCV distortion coefficients (k1, k2, p1, p2[, k3...]) or empty.
        scale: decoded size / stored size (1, 1/2, 1/4, 1/8).
        source: file the image came from, or ``""``.

    """

    image: np.ndarray
    intrinsics: np.ndarray
    timestamp_us: int
    channel: str
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: float = 1.0
    source: str = ""

    def __post_init__(self) -> None:
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(
                f"CameraImage {self.source or self.channel}: expected (H, W, 3) uint8, got "
                f"{img.shape} {img.dtype}"
            )
        k = np.asarray(self.intrinsics, dtype=np.float64)
        if k.shape != (3, 3):
            raise ValueError(f"CameraImage {self.channel}: intrinsics must be 3x3, got {k.shape}")
        object.__setattr__(self, "image", _readonly(img))
        object.__setattr__(self, "intrinsics", _readonly(k))
        object.__setattr__(self, "distortion", _readonly(np.asarray(self.distortion, np.float64)))
        object.__setattr__(self, "timestamp_us", int(self.timestamp_us))

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.image.shape[1])


@dataclass(frozen=True, eq=False)
class UltrasonicScan:
    """Ranges of the 12 bumper ultrasonic sensors at one instant.

    Attributes:
        ranges_m: (12,) float32, metres from each sensor to its first echo; NaN = no echo.
        timestamp_us: microseconds.
        derived: True when computed from LiDAR ("virtual ultrasonic"), False when measured.
        channel: ``"ULTRASONIC"``.
        source: file the ranges came from, or ``""``.

    """

    ranges_m: np.ndarray
    timestamp_us: int
    derived: bool = False
    channel: str = ULTRASONIC_CHANNEL
    source: str = ""

    def __post_init__(self) -> None:
        r = np.asarray(self.ranges_m, dtype=np.float32).reshape(-1)
        if r.shape != (NUM_ULTRASONIC_SENSORS,):
            raise ValueError(
                f"UltrasonicScan {self.source or self.channel}: expected {NUM_ULTRASONIC_SENSORS} "
                f"ranges, got {r.shape[0]}"
            )
        if np.any(r[np.isfinite(r)] < 0):
            raise ValueError(f"UltrasonicScan {self.source or self.channel}: negative range")
        object.__setattr__(self, "ranges_m", _readonly(r))
        object.__setattr__(self, "timestamp_us", int(self.timestamp_us))

    @property
    def min_range_m(self) -> float:
        """Smallest echo range over all sensors (inf when no sensor has an echo)."""
        finite = self.ranges_m[np.isfinite(self.ranges_m)]
        return float(finite.min()) if finite.size else float("inf")
