"""Agent shapes: each detection class's size distribution and the box parts that make it up.

An agent is a few oriented boxes ("parts") strictly inside its annotation box (a car is a
chassis with wheels, a body and a cabin), so every LiDAR return on it falls inside its box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensors.sim.materials import REFLECTIVITY

# Class sizes
# ---------------------------------------------------------------------------------------------

# Mean and spread of (width, length, height), metres, close to nuScenes' per-class statistics.
CLASS_SIZE: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "car": ((1.95, 4.62, 1.73), (0.12, 0.35, 0.15)),
    "truck": ((2.52, 6.94, 2.84), (0.2, 1.0, 0.35)),
    "bus": ((2.94, 11.19, 3.47), (0.08, 0.8, 0.15)),
    "trailer": ((2.92, 12.28, 3.87), (0.1, 1.2, 0.2)),
    "construction_vehicle": ((2.82, 6.55, 3.20), (0.15, 0.6, 0.3)),
    "pedestrian": ((0.67, 0.73, 1.77), (0.06, 0.08, 0.1)),
    "motorcycle": ((0.77, 2.11, 1.47), (0.06, 0.12, 0.08)),
    "bicycle": ((0.61, 1.70, 1.30), (0.05, 0.1, 0.06)),
    "traffic_cone": ((0.41, 0.42, 1.07), (0.04, 0.04, 0.08)),
    "barrier": ((2.53, 0.50, 0.98), (0.25, 0.05, 0.05)),
}


@dataclass(frozen=True)
class PartSpec:
    """One box part of an object in the object's local frame.

    Attributes:
        center_m: (3,) centre, local frame (x along length, z up from the object's bottom).
        size_m: (3,) full extent along local x, y, z (length, width, height).
        rgb: colour 0-255.
        reflectivity: LiDAR reflectivity 0-1.

    """

    center_m: tuple[float, float, float]
    size_m: tuple[float, float, float]
    rgb: tuple[float, float, float]
    reflectivity: float


def _p(cx, cy, z0, lx, wy, hz, rgb, material) -> PartSpec:
    """Part from its centre x/y, bottom z and extents (local frame)."""
    return PartSpec(
        (float(cx), float(cy), float(z0 + hz / 2.0)),
        (float(lx), float(wy), float(hz)),
        tuple(float(c) for c in rgb),
        REFLECTIVITY[material],
    )


# Lamp colours above 255 make them glow: they stay bright after a dark exposure (night).
HEADLAMP_RGB = (600.0, 590.0, 520.0)
TAIL_LAMP_RGB = (560.0, 40.0, 30.0)


def _lamps(length: float, width: float, z0: float, height: float, front: bool) -> list[PartSpec]:
    """Tail lamps (and headlamps when ``front``) in the 4 cm left free at each end of the body
    (local frame: +x is the front).
    """
    parts = []
    for y in (-1.0, 1.0):
        yy = y * (width / 2 - 0.18)
        parts.append(_p(-(length / 2 - 0.02), yy, z0, 0.03, 0.25, height, TAIL_LAMP_RGB, "retro"))
        if front:
            parts.append(_p(length / 2 - 0.02, yy, z0, 0.03, 0.25, height, HEADLAMP_RGB, "retro"))
    return parts


def agent_parts(cls: str, wlh: np.ndarray, colour: np.ndarray, with_rider: bool) -> list[PartSpec]:
    """Box parts of an agent of class ``cls`` inside its ``wlh`` annotation box.

    Parts stay strictly inside the annotation box (1 cm margin) so that every LiDAR return on
    an agent falls inside its box.
    """
    w, length, h = (float(v) for v in wlh)
    m = 0.01
    L, W, H = length - 2 * m, w - 2 * m, h - 2 * m  # noqa: N806 - short extents
    dark = (30, 30, 32)
    glass = (60, 80, 100)
    col = tuple(colour)
    if cls == "car":
        return [
            _p(0, 0, m, L * 0.78, W * 0.96, 0.36 * H, dark, "tire"),
            _p(0, 0, m + 0.3 * H, L - 0.08, W, 0.32 * H, col, "paint"),
            _p(-0.06 * L, 0, m + 0.6 * H, 0.52 * L, W * 0.9, 0.4 * H, glass, "glass"),
            *_lamps(L, W, m + 0.44 * H, 0.1 * H, front=True),
        ]
    if cls == "truck":
        return [
            _p(0, 0, m, L * 0.9, W * 0.9, 0.3 * H, dark, "tire"),
            _p(0.38 * L - 0.04, 0, m + 0.25 * H, 0.22 * L - 0.08, W, 0.72 * H, col, "paint"),
            _p(-0.12 * L + 0.04, 0, m + 0.25 * H, 0.76 * L - 0.08, W, 0.75 * H,
               (210, 210, 205), "metal"),
            *_lamps(L, W, m + 0.3 * H, 0.06 * H, front=True),
        ]
    if cls == "bus":
        return [
            _p(0, 0, m, L * 0.94, W * 0.94, 0.12 * H, dark, "tire"),
            _p(0, 0, m + 0.1 * H, L - 0.08, W, 0.45 * H, col, "paint"),
            _p(0, 0, m + 0.55 * H, L - 0.08, W * 0.99, 0.45 * H, glass, "glass"),
            *_lamps(L, W, m + 0.18 * H, 0.05 * H, front=True),
        ]
    if cls == "trailer":
        return [
            _p(-0.3 * L, 0, m, L * 0.3, W * 0.85, 0.3 * H, dark, "tire"),
            _p(0.44 * L, 0, m + 0.22 * H, L * 0.06, W * 0.3, 0.1 * H, dark, "metal"),
            _p(0.04, 0, m + 0.3 * H, L - 0.08, W, 0.7 * H, (200, 200, 195), "metal"),
            *_lamps(L, W, m + 0.3 * H, 0.05 * H, front=False),
        ]
    if cls == "construction_vehicle":
        yellow = (225, 170, 20)
        return [
            _p(0, 0, m, L * 0.8, W, 0.3 * H, dark, "tire"),
            _p(-0.1 * L, 0, m + 0.28 * H, 0.75 * L, W * 0.95, 0.35 * H, yellow, "paint"),
            _p(-0.2 * L, 0.15 * W, m + 0.6 * H, 0.3 * L, W * 0.5, 0.4 * H, glass, "glass"),
            _p(0.3 * L, -0.1 * W, m + 0.45 * H, 0.4 * L, W * 0.2, 0.25 * H, yellow, "metal"),
        ]
    if cls == "pedestrian":
        return [
            _p(0, 0, m, L * 0.35, W * 0.45, 0.47 * H, (40, 45, 70), "cloth"),
            _p(0, 0, m + 0.47 * H, L * 0.45, W * 0.9, 0.38 * H, col, "cloth"),
            _p(0, 0, m + 0.86 * H, L * 0.3, W * 0.35, 0.14 * H, (200, 160, 130), "skin"),
        ]
    if cls in ("motorcycle", "bicycle"):
        parts = [
            _p(0, 0, m, L, W * 0.25, 0.5 * H if with_rider else 0.75 * H, dark, "tire"),
            _p(0, 0, m + 0.3 * H, L * 0.6, W * 0.4, 0.25 * H, col, "metal"),
        ]
        if with_rider:
            parts.append(_p(-0.05 * L, 0, m + 0.5 * H, 0.3 * L, W, 0.5 * H, (60, 60, 90), "cloth"))
        return parts
    if cls == "traffic_cone":
        return [
            _p(0, 0, m, L, W, 0.06 * H, dark, "plastic"),
            _p(0, 0, m + 0.06 * H, L * 0.6, W * 0.6, 0.45 * H, (245, 110, 20), "retro"),
            _p(0, 0, m + 0.51 * H, L * 0.35, W * 0.35, 0.49 * H, (250, 250, 250), "retro"),
        ]
    if cls == "barrier":
        return [
            _p(0, 0, m, L * 0.8, W, 0.55 * H, (235, 235, 235), "plastic"),
            _p(0, 0, m + 0.55 * H, L * 0.6, W, 0.45 * H, (220, 40, 30), "retro"),
        ]
    raise ValueError(f"unknown class {cls!r}")


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------
