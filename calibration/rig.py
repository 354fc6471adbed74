"""``SensorRig``: where each sensor sits on the vehicle (extrinsics) and, for cameras, its lens.

Every pose is validated on construction and a bad one is reported with the channel's name:
a calibration file with a sheared rotation is the kind of bug that otherwise surfaces as
"detections are slightly off" weeks later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from calibration.camera import PinholeCamera
from calibration.se3 import SE3, quaternion_to_rotation, validate_rotation


def sensor_pose(
    channel: str,
    rotation: np.ndarray | list | None = None,
    translation: np.ndarray | list = (0.0, 0.0, 0.0),
    quaternion_wxyz: np.ndarray | list | None = None,
) -> SE3:
    """``ego_SE3_sensor`` from a rotation matrix or a (w, x, y, z) quaternion plus translation.

    Raises:
        ValueError: naming ``channel`` when the rotation is not orthonormal with det +1
            (tolerance 1e-6), the quaternion is not unit norm, or a value is not finite.

    """
    if (rotation is None) == (quaternion_wxyz is None):
        raise ValueError(f"{channel}: give exactly one of rotation or quaternion_wxyz")
    if quaternion_wxyz is not None:
        r = quaternion_to_rotation(np.asarray(quaternion_wxyz, np.float64), f"{channel} rotation")
    else:
        # A copy: SE3 marks its arrays read-only and must not freeze the caller's array.
        r = np.array(rotation, dtype=np.float64)
        validate_rotation(r, f"{channel} rotation")
    t = np.array(translation, dtype=np.float64).reshape(-1)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise ValueError(f"{channel}: translation must be 3 finite values, got {translation!r}")
    return SE3(r, t)


@dataclass(frozen=True, eq=False)
class SensorRig:
    """Extrinsics (``ego_SE3_sensor`` per channel) and camera intrinsics of one vehicle.

    Attributes:
        ego_SE3_sensor: channel -> pose of the sensor frame in the ego frame.
        cameras: camera channel -> pinhole model at the stored image resolution.

    """

    ego_SE3_sensor: Mapping[str, SE3]  # noqa: N815 - frame naming convention
    cameras: Mapping[str, PinholeCamera] = field(default_factory=dict)

    def __post_init__(self) -> None:
        poses = dict(self.ego_SE3_sensor)
        for channel, pose in poses.items():
            if not isinstance(pose, SE3):
                raise TypeError(f"{channel}: pose must be an SE3, got {type(pose).__name__}")
            # SE3 validates on construction, but re-check with the channel's name so that an
            # SE3 built with object.__setattr__ tricks or from an old pickle is still caught.
            validate_rotation(pose.rotation, f"{channel} rotation")
        missing = sorted(set(self.cameras) - set(poses))
        if missing:
            raise ValueError(f"SensorRig: cameras {missing} have intrinsics but no extrinsics")
        object.__setattr__(self, "ego_SE3_sensor", MappingProxyType(poses))
        object.__setattr__(self, "cameras", MappingProxyType(dict(self.cameras)))

    @staticmethod
    def from_matrices(
        extrinsics: Mapping[str, np.ndarray],
        cameras: Mapping[str, PinholeCamera] | None = None,
    ) -> SensorRig:
        """From channel -> (4, 4) ``ego_from_sensor`` matrices; errors name the channel."""
        poses = {}
        for channel, m in extrinsics.items():
            poses[channel] = SE3.from_matrix(np.asarray(m, np.float64), name=f"{channel}")
        return SensorRig(poses, cameras or {})

    @property
    def channels(self) -> tuple[str, ...]:
        """All channels with a pose."""
        return tuple(self.ego_SE3_sensor)

    def pose(self, channel: str) -> SE3:
        """``ego_SE3_sensor`` of ``channel`` (KeyError naming the known channels otherwise)."""
        try:
            return self.ego_SE3_sensor[channel]
        except KeyError:
            raise KeyError(
                f"SensorRig has no channel {channel!r}; it has {self.channels}"
            ) from None

    def sensor_SE3_sensor(self, dst: str, src: str) -> SE3:  # noqa: N802
        """Static transform from sensor ``src`` to sensor ``dst`` (no ego motion)."""
        return self.pose(dst).inverse() @ self.pose(src)
