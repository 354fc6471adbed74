"""Voxel-grid geometry shared by the voxelization kernels, computed exactly as spconv does.

spconv's ``PointToVoxel`` (and mmcv's hard voxelization, which it matches on CPU) keeps the
voxel size and the range as float32, takes ``grid = round((max - min) / size)`` in float32 with
C's round-half-away-from-zero, and bins a point with ``floor((p - min) / size)`` evaluated in
float32. Matching those roundings bit for bit is what lets the benchmark assert identical
output, so every kernel in this package takes its grid from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class VoxelGrid:
    """A voxel grid in float32, axes in x, y, z order.

    Attributes:
        voxel_size: (3,) float32 voxel edge lengths [dx, dy, dz] in metres.
        range_min: (3,) float32 lower corner [xmin, ymin, zmin] in metres.
        shape_xyz: (3,) int64 number of voxels along x, y, z.

    """

    voxel_size: np.ndarray
    range_min: np.ndarray
    shape_xyz: np.ndarray

    @property
    def num_cells(self) -> int:
        """Total number of voxels in the grid."""
        return int(np.prod(self.shape_xyz))


def _round_half_away(x: float) -> int:
    # std::round semantics (half away from zero), not Python's/numpy's half-to-even.
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def make_grid(voxel_size_m, point_range_m) -> VoxelGrid:
    """Build the float32 grid spconv would build for the same arguments.

    Args:
        voxel_size_m: (3,) voxel size [dx, dy, dz] in metres, all > 0.
        point_range_m: (6,) [xmin, ymin, zmin, xmax, ymax, zmax] in metres.

    Returns:
        The grid; raises ValueError on a malformed size or range.

    """
    size = np.asarray(voxel_size_m, dtype=np.float64).reshape(-1)
    rng = np.asarray(point_range_m, dtype=np.float64).reshape(-1)
    # The same few configs come back every frame: cache on the values (the grid is immutable).
    return _make_grid_cached(tuple(size.tolist()), tuple(rng.tolist()))


@lru_cache(maxsize=64)
def _make_grid_cached(size_t: tuple, rng_t: tuple) -> VoxelGrid:
    size = np.asarray(size_t, dtype=np.float64)
    rng = np.asarray(rng_t, dtype=np.float64)
    if size.shape != (3,) or rng.shape != (6,):
        raise ValueError(
            f"voxel_size_m must have 3 values and point_range_m 6, got {size.shape} and "
            f"{rng.shape}"
        )
    if not (np.all(np.isfinite(size)) and np.all(size > 0)):
        raise ValueError(f"voxel_size_m must be finite and > 0, got {size.tolist()}")
    if not (np.all(np.isfinite(rng)) and np.all(rng[3:] > rng[:3])):
        raise ValueError(f"point_range_m must be finite with max > min, got {rng.tolist()}")
    size32 = size.astype(np.float32)
    lo32 = rng[:3].astype(np.float32)
    hi32 = rng[3:].astype(np.float32)
    # float32 subtraction and division, as in spconv's calc_meta_data.
    extent32 = ((hi32 - lo32) / size32).astype(np.float32)
    shape = np.array([_round_half_away(float(e)) for e in extent32], dtype=np.int64)
    if np.any(shape < 1):
        raise ValueError(f"grid has an empty axis: shape_xyz={shape.tolist()}")
    if int(np.prod(shape)) >= 2**62:
        raise ValueError(f"grid too large: shape_xyz={shape.tolist()}")
    for a in (size32, lo32, shape):
        a.setflags(write=False)
    return VoxelGrid(voxel_size=size32, range_min=lo32, shape_xyz=shape)


def as_points(points, name: str = "points", min_cols: int = 3) -> np.ndarray:
    """Validate a point array and return it as C-contiguous float32 (N, C).

    Args:
        points: (N, C) array-like, C >= min_cols.
        name: name used in error messages.
        min_cols: least number of columns (x, y, z first).

    Returns:
        The points as a C-contiguous float32 array (no copy when already so).

    """
    a = np.asarray(points)
    if a.ndim != 2 or a.shape[1] < min_cols:
        raise ValueError(f"{name} must be (N, C>={min_cols}), got shape {a.shape}")
    if a.dtype != np.float32:
        if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)
