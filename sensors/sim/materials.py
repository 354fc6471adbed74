"""Materials of the synthetic world: LiDAR reflectivity of named surfaces, the ground raster's
material codes with their reflectivity and colour, and vehicle paint colours.
"""

from __future__ import annotations

import numpy as np

# LiDAR reflectivity (0-1, scaled to nuScenes-like 0-255 intensity) of named materials.
REFLECTIVITY: dict[str, float] = {
    "paint": 0.35,
    "glass": 0.08,
    "tire": 0.05,
    "skin": 0.25,
    "cloth": 0.2,
    "metal": 0.45,
    "retro": 0.95,  # retro-reflective cone stripes, plates, barrier sheeting
    "plastic": 0.3,
    "concrete": 0.22,
    "brick": 0.18,
    "wood": 0.15,
    "foliage": 0.12,
}

# Ground materials in the ground raster (uint8 codes) with LiDAR reflectivity and RGB colour.
GROUND_ASPHALT, GROUND_MARKING, GROUND_SIDEWALK, GROUND_GRASS, GROUND_LOT = 0, 1, 2, 3, 4
GROUND_REFLECTIVITY = np.array([0.06, 0.55, 0.14, 0.08, 0.07], dtype=np.float32)
GROUND_RGB = np.array(
    [[82, 84, 88], [225, 225, 215], [160, 156, 148], [78, 112, 58], [92, 92, 96]], dtype=np.uint8
)
GROUND_RES_M = 0.2  # ground raster resolution, metres per cell

VEHICLE_COLOURS = np.array(
    [
        [200, 30, 30],
        [30, 60, 170],
        [230, 230, 230],
        [25, 25, 28],
        [130, 130, 135],
        [190, 160, 40],
        [40, 120, 70],
        [150, 80, 30],
        [90, 20, 60],
        [170, 190, 210],
    ],
    dtype=np.float64,
)
