"""Pinhole camera model with optional OpenCV lens distortion.

Camera frame: x right, y down, z forward (optical axis), metres — OpenCV's and nuScenes'
convention. Pixel coordinates ``(u, v)`` have pixel centres at integers (OpenCV's convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.se3 import SE3, CalibrationError

# Decode reductions libjpeg performs inside the decoder (DCT scaling).
REDUCTIONS = (1, 2, 4, 8)


def validate_intrinsics(
    intrinsics: object, name: str = "intrinsics", image_wh: tuple[int, int] | None = None
) -> np.ndarray:
    """(3, 3) float64 copy of a pinhole K, or a ``CalibrationError`` naming ``name`` and field.

    Checked: a finite 3x3 matrix, ``fx, fy > 0``, zeros below the diagonal and a last row
    ``0 0 1`` (anything else is not a pinhole matrix and would make ``K^-1`` meaningless or
    singular), and with ``image_wh`` a principal point inside the image (an off-image ``cx``
    is a K for another resolution or swapped fields).

    Args:
        intrinsics: the matrix.
        name: the channel (and file or table) it belongs to, for the message.
        image_wh: (width, height) in pixels that K is for, when known.

    """
    try:
        k = np.array(intrinsics, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name}: intrinsics must be a 3x3 matrix of numbers") from None
    if k.shape != (3, 3):
        raise CalibrationError(f"{name}: intrinsics must be 3x3, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        bad = [f"K[{i},{j}]" for i, j in zip(*np.nonzero(~np.isfinite(k)))]
        raise CalibrationError(f"{name}: intrinsics have non-finite entries {bad}")
    for field_name, v in (("fx (K[0,0])", k[0, 0]), ("fy (K[1,1])", k[1, 1])):
        if not v > 0:
            raise CalibrationError(f"{name}: intrinsics {field_name} must be > 0, got {v:g}")
    if k[1, 0] != 0 or k[2, 0] != 0 or k[2, 1] != 0 or k[2, 2] != 1:
        raise CalibrationError(
            f"{name}: not a pinhole matrix (zeros below the diagonal, K[2,2] = 1): {k.tolist()}"
        )
    if image_wh is not None:
        w, h = image_wh
        for field_name, c, size in (("cx (K[0,2])", k[0, 2], w), ("cy (K[1,2])", k[1, 2], h)):
            # Pixel centres at integers: the image spans [-0.5, size - 0.5]; half a pixel of
            # slack either side for rounding in reduced decodes.
            if not -1.0 <= c <= size:
                raise CalibrationError(
                    f"{name}: intrinsics {field_name} = {c:g} lies outside the {w}x{h} image "
                    "(a K for another resolution?)"
                )
    return k


def decoded_intrinsics(intrinsics: np.ndarray, scale_xy: tuple[float, float]) -> np.ndarray:
    """Intrinsics for an image whose pixel grid is the stored one scaled by ``scale_xy``.

    With pixel centres at integer coordinates (OpenCV's convention), a grid scaled by ``s``
    maps ``u`` to ``(u + 0.5) * s - 0.5``: focal lengths (and skew) scale by ``s`` and the
    principal point becomes ``(c + 0.5) * s - 0.5``, per axis.

    Args:
        intrinsics: (3, 3) pinhole matrix at the stored resolution.
        scale_xy: (decoded grid / stored grid) along x and y, e.g. ``(1/4, 1/4)`` for
            libjpeg's 1/4 decode, ``(310/1242, 93/375)`` for a KITTI PNG resized to 1/4.

    Returns:
        (3, 3) float64 matrix at the decoded resolution.

    """
    sx, sy = (float(v) for v in scale_xy)
    if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(f"decoded_intrinsics: scale must be finite and > 0, got {scale_xy}")
    k = np.array(intrinsics, dtype=np.float64)
    if sx == 1.0 and sy == 1.0:
        return k
    k[0, 0] *= sx
    k[0, 1] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def reduced_intrinsics(intrinsics: np.ndarray, reduction: int) -> np.ndarray:
    """Intrinsics for a JPEG decoded by libjpeg at 1/``reduction`` of its stored size.

    libjpeg's scaled decode averages ``reduction x reduction`` pixel blocks, so reduced pixel
    ``i`` covers full pixels ``r*i .. r*i + r - 1`` and its centre sits at full coordinate
    ``r*i + (r - 1)/2``: ``u_r = (u + 0.5)/r - 0.5``. The scale is exactly ``1/r`` even when
    the decoded size is ``ceil(W/r)`` (the last block is partial, its pixel grid does not
    stretch). Images resized to another size need ``decoded_intrinsics`` with their own scale.

    Args:
        intrinsics: (3, 3) pinhole matrix at the stored resolution.
        reduction: 1, 2, 4 or 8.

    Returns:
        (3, 3) float64 matrix at the reduced resolution.

    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"image reduction must be one of 1, 2, 4, 8, got {reduction}")
    return decoded_intrinsics(intrinsics, (1.0 / reduction, 1.0 / reduction))


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """Intrinsics of one camera at one image resolution.

    Attributes:
        intrinsics: (3, 3) float64 K.
        width / height: image size in pixels that K belongs to.
        distortion: OpenCV coefficients (k1, k2, p1, p2[, k3[, k4, k5, k6]]); empty = none.

    """

    intrinsics: np.ndarray
    width: int
    height: int
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CalibrationError(
                f"PinholeCamera: image size must be positive, got {self.width}x{self.height}"
            )
        k = validate_intrinsics(self.intrinsics, "PinholeCamera", (self.width, self.height))
        d = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        if d.size not in (0, 4, 5, 8) or not np.all(np.isfinite(d)):
            raise ValueError(f"PinholeCamera: distortion must have 0, 4, 5 or 8 finite values: {d}")
        object.__setattr__(self, "intrinsics", _ro(k))
        object.__setattr__(self, "distortion", _ro(d))

    @property
    def has_distortion(self) -> bool:
        """True when any distortion coefficient is non-zero."""
        return bool(self.distortion.size and np.any(self.distortion != 0))

    def project(
        self, points_cam: np.ndarray, min_depth_m: float = 1e-6
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project (N, 3) camera-frame points to pixels.

        Args:
            points_cam: (N, 3) points in the camera frame, metres.
            min_depth_m: points with depth (z) at or below this are not "valid".

        Returns:
            ``(uv (N, 2) float64, depth_m (N,) float64, valid (N,) bool)``; ``valid`` = in front
            of the camera (depth > min_depth_m) and inside the image
            (``0 <= u < width``, ``0 <= v < height``, the same rule the nuScenes devkit's
            ``map_pointcloud_to_image`` uses with its 1-pixel margin dropped). ``uv`` of points
            behind the camera is NaN.

        """
        p = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        depth = p[:, 2]
        front = depth > min_depth_m
        uv = np.full((p.shape[0], 2), np.nan)
        if self.has_distortion:
            if front.any():
                img, _ = cv2.projectPoints(
                    p[front].reshape(-1, 1, 3),
                    np.zeros(3),
                    np.zeros(3),
                    self.intrinsics,
                    self.distortion,
                )
                uv[front] = img.reshape(-1, 2)
        else:
            k = self.intrinsics
            z = depth[front]
            uv[front, 0] = (k[0, 0] * p[front, 0] + k[0, 1] * p[front, 1]) / z + k[0, 2]
            uv[front, 1] = k[1, 1] * p[front, 1] / z + k[1, 2]
        with np.errstate(invalid="ignore"):
            inside = (
                (uv[:, 0] >= 0)
                & (uv[:, 0] < self.width)
                & (uv[:, 1] >= 0)
                & (uv[:, 1] < self.height)
            )
        return uv, depth, front & inside

    def unproject(self, uv: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """Back-project pixels at given depths (z, metres) to (N, 3) camera-frame points.

        With distortion, pixels are first undistorted (``cv2.undistortPoints``, iterative),
        so ``unproject(project(p)) == p`` up to the solver tolerance.
        """
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        z = np.asarray(depth_m, dtype=np.float64).reshape(-1)
        if z.shape[0] not in (1, uv.shape[0]):
            raise ValueError(f"unproject: {uv.shape[0]} pixels but {z.shape[0]} depths")
        if self.has_distortion:
            # The iterative solver with a tight criterion: the default 5 iterations leave
            # ~1e-3 px errors at strong distortion.
            xy = cv2.undistortPointsIter(
                uv.reshape(-1, 1, 2),
                self.intrinsics,
                self.distortion,
                None,
                None,
                (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14),
            ).reshape(-1, 2)
        else:
            k = self.intrinsics
            y = (uv[:, 1] - k[1, 2]) / k[1, 1]
            x = (uv[:, 0] - k[0, 2] - k[0, 1] * y) / k[0, 0]
            xy = np.stack([x, y], axis=1)
        return np.concatenate([xy * z[:, None], np.broadcast_to(z, (uv.shape[0],))[:, None]], 1)

    def scaled(self, reduction: int) -> PinholeCamera:
        """The same camera for an image decoded at 1/``reduction`` (libjpeg block averaging).

        See ``reduced_intrinsics`` for the pixel-centre convention.
        """
        return PinholeCamera(
            reduced_intrinsics(self.intrinsics, reduction),
            -(-self.width // reduction),
            -(-self.height // reduction),
            self.distortion,
        )


def img_from_ego(intrinsics: np.ndarray, cam_SE3_ego: SE3) -> np.ndarray:  # noqa: N803
    """(3, 4) float64 projection ``K [R | t]`` from ego-frame points to homogeneous pixels.

    This is the undistorted pinhole projection that kernels (painting, BEV pooling) use:
    ``uvw = P @ [x, y, z, 1]``, ``u = uvw[0] / uvw[2]``, depth = ``uvw[2]``.
    """
    return np.asarray(intrinsics, np.float64) @ cam_SE3_ego.as_matrix()[:3]


def project_points(
    points_src: np.ndarray,
    camera: PinholeCamera,
    cam_SE3_src: SE3,  # noqa: N803
    min_depth_m: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project (N, 3) points given in any frame ``src`` into ``camera``.

    Returns:
        ``(uv (N, 2), depth_m (N,), valid (N,) bool)`` as ``PinholeCamera.project``.

    """
    return camera.project(
        cam_SE3_src.transform_points(np.asarray(points_src, np.float64)), min_depth_m
    )
