"""Rigid transforms (SE3) and quaternion conversion.

Naming follows ``dst_SE3_src``: ``ego_SE3_lidar.transform_points(points_lidar)`` gives the
points in the ego frame. Rotations are validated on construction because a non-orthonormal
matrix silently shears a point cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pyquaternion import Quaternion

ORTHONORMAL_TOL = 1e-6


class CalibrationError(ValueError):
    """A calibration value (rotation, translation, intrinsics) that cannot be a real one.

    The message names the channel (or file) and the field, e.g.
    ``"CAM_FRONT calibrated_sensor 1a2b rotation: quaternion norm is 0.5, expected 1"``.
    """


def validate_translation(translation: object, name: str = "translation") -> np.ndarray:
    """(3,) float64 copy of ``translation``, or a ``CalibrationError`` naming ``name``."""
    try:
        t = np.array(translation, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        t = np.zeros(0)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise CalibrationError(f"{name}: translation must be 3 finite numbers, got {translation!r}")
    return t


def validate_rotation(
    rotation: np.ndarray, name: str = "rotation", tol: float = ORTHONORMAL_TOL
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``rotation`` is a proper rotation matrix.

    Args:
        rotation: (3, 3) matrix.
        name: what to call the matrix in the error (a channel name, a file).
        tol: max abs deviation of ``R @ R.T`` from identity and of ``det(R)`` from 1.

    """
    try:
        r = np.asarray(rotation, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name}: rotation must be a 3x3 matrix of numbers") from None
    if r.shape != (3, 3):
        raise CalibrationError(f"{name}: rotation must be 3x3, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise CalibrationError(f"{name}: rotation has non-finite entries")
    ortho_err = float(np.abs(r @ r.T - np.eye(3)).max())
    if ortho_err > tol:
        raise CalibrationError(
            f"{name}: rotation is not orthonormal (max |R R^T - I| = {ortho_err:.3g})"
        )
    # det of an orthonormal matrix is +-1, so this cannot meet a singular matrix.
    det = float(np.linalg.det(r))
    if abs(det - 1.0) > tol:
        raise CalibrationError(f"{name}: rotation has det {det:.9f}, expected +1 (a reflection?)")


def quaternion_to_rotation(
    q_wxyz: np.ndarray | list[float], name: str = "quaternion"
) -> np.ndarray:
    """Unit quaternion (w, x, y, z), nuScenes order, to a (3, 3) float64 rotation matrix.

    The norm must be 1 within 1e-6: a non-unit quaternion in a calibration file is a data bug,
    not something to normalize away silently.
    """
    try:
        q = np.asarray(q_wxyz, dtype=np.float64)
    except (TypeError, ValueError):
        q = np.zeros(0)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise CalibrationError(f"{name}: expected 4 finite values (w, x, y, z), got {q_wxyz!r}")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > ORTHONORMAL_TOL:
        raise CalibrationError(f"{name}: quaternion norm is {norm:.9f}, expected 1")
    return Quaternion(q).rotation_matrix


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix to a unit quaternion (w, x, y, z) with w >= 0."""
    q = Quaternion(matrix=np.asarray(rotation, dtype=np.float64), atol=1e-6, rtol=1e-6)
    wxyz = np.asarray(q.elements, dtype=np.float64)
    return -wxyz if wxyz[0] < 0 else wxyz


def yaw_to_rotation(yaw_rad: float) -> np.ndarray:
    """Rotation about +z by ``yaw_rad`` radians as a (3, 3) float64 matrix."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class SE3:
    """A rigid transform ``p_dst = rotation @ p_src + translation``.

    Attributes:
        rotation: (3, 3) float64, orthonormal with det +1 (validated).
        translation: (3,) float64, metres.

    """

    rotation: np.ndarray
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        # Copy: freezing the caller's own array would surprise them.
        r = np.array(self.rotation, dtype=np.float64)
        t = np.array(self.translation, dtype=np.float64).reshape(3)
        validate_rotation(r, "SE3")
        if not np.all(np.isfinite(t)):
            raise ValueError("SE3: translation has non-finite entries")
        r.setflags(write=False)
        t.setflags(write=False)
        object.__setattr__(self, "rotation", r)
        object.__setattr__(self, "translation", t)

    @staticmethod
    def _trusted(rotation: np.ndarray, translation: np.ndarray) -> SE3:
        """Build without validation from the product/inverse of validated transforms.

        Composition of proper rotations is a proper rotation (up to rounding far below the
        1e-6 tolerance), so re-validating every compose would only cost time on hot paths.
        """
        obj = object.__new__(SE3)
        r = np.ascontiguousarray(rotation, dtype=np.float64)
        t = np.ascontiguousarray(translation, dtype=np.float64)
        r.setflags(write=False)
        t.setflags(write=False)
        object.__setattr__(obj, "rotation", r)
        object.__setattr__(obj, "translation", t)
        return obj

    @staticmethod
    def identity() -> SE3:
        """The identity transform."""
        return SE3(np.eye(3), np.zeros(3))

    @staticmethod
    def from_matrix(matrix: np.ndarray, name: str = "SE3") -> SE3:
        """From a (4, 4) homogeneous matrix; ``name`` labels validation errors."""
        try:
            m = np.asarray(matrix, dtype=np.float64)
        except (TypeError, ValueError):
            raise CalibrationError(f"{name}: expected a 4x4 matrix of numbers") from None
        if m.shape != (4, 4):
            raise CalibrationError(f"{name}: expected a 4x4 matrix, got shape {m.shape}")
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-9):
            raise CalibrationError(f"{name}: last row must be [0, 0, 0, 1], got {m[3].tolist()}")
        validate_rotation(m[:3, :3], name)
        return SE3(m[:3, :3], validate_translation(m[:3, 3], name))

    @staticmethod
    def from_quaternion(
        q_wxyz: np.ndarray | list[float], translation: np.ndarray | list[float], name: str = "SE3"
    ) -> SE3:
        """From a nuScenes-style (rotation quaternion w,x,y,z; translation) pair."""
        return SE3(quaternion_to_rotation(q_wxyz, name), validate_translation(translation, name))

    @staticmethod
    def from_yaw(yaw_rad: float, translation: np.ndarray | list[float]) -> SE3:
        """A rotation about z by ``yaw_rad`` followed by ``translation`` (metres)."""
        return SE3(yaw_to_rotation(yaw_rad), np.asarray(translation, dtype=np.float64))

    def as_matrix(self) -> np.ndarray:
        """(4, 4) float64 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m

    def quaternion(self) -> np.ndarray:
        """Rotation as a unit quaternion (w, x, y, z)."""
        return rotation_to_quaternion(self.rotation)

    @property
    def yaw_rad(self) -> float:
        """Heading of the rotated x axis in the destination xy-plane (radians)."""
        return float(np.arctan2(self.rotation[1, 0], self.rotation[0, 0]))

    def compose(self, other: SE3) -> SE3:
        """``self @ other``: with ``a_SE3_b.compose(b_SE3_c)`` -> ``a_SE3_c``."""
        return SE3._trusted(
            self.rotation @ other.rotation, self.rotation @ other.translation + self.translation
        )

    def __matmul__(self, other: SE3) -> SE3:
        return self.compose(other)

    def inverse(self) -> SE3:
        """``b_SE3_a`` from ``a_SE3_b``."""
        r_t = self.rotation.T
        return SE3._trusted(r_t, -r_t @ self.translation)

    def transform_points(self, points_xyz: np.ndarray) -> np.ndarray:
        """Apply to (N, 3) points (any float dtype); returns (N, 3) in the input dtype.

        Computation runs in float64 so that global-frame coordinates (kilometres) keep
        millimetre precision, then casts back.
        """
        p = np.asarray(points_xyz)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"transform_points expects (N, 3) points, got shape {p.shape}")
        out = p.astype(np.float64) @ self.rotation.T + self.translation
        return out.astype(p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64)

    def transform_vectors(self, vectors_xyz: np.ndarray) -> np.ndarray:
        """Rotate (N, 3) direction vectors (velocities): no translation."""
        v = np.asarray(vectors_xyz)
        return (v.astype(np.float64) @ self.rotation.T).astype(
            v.dtype if np.issubdtype(v.dtype, np.floating) else np.float64
        )

    def __repr__(self) -> str:
        t = np.array2string(self.translation, precision=3)
        return f"SE3(yaw={np.degrees(self.yaw_rad):.2f} deg, translation={t})"
