"""The ultrasonic sensor geometry, kept importable here for readers of ``sensors``.

The geometry lives in ``calibration.ultrasonic_layout`` (geometry must not depend on
``sensors`` beyond the frame-type leaf ``sensors.types``); this module only re-exports it.
"""

from calibration.ultrasonic_layout import (
    FRONT_BUMPER_X_M,
    HALF_WIDTH_M,
    MAX_RANGE_M,
    MIN_RANGE_M,
    MOUNT_HEIGHT_M,
    REAR_BUMPER_X_M,
    UltrasonicLayout,
    default_layout,
)

__all__ = [
    "FRONT_BUMPER_X_M",
    "HALF_WIDTH_M",
    "MAX_RANGE_M",
    "MIN_RANGE_M",
    "MOUNT_HEIGHT_M",
    "REAR_BUMPER_X_M",
    "UltrasonicLayout",
    "default_layout",
]
