"""Ego pose lookup and interpolation over time (slerp for rotation, linear for translation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyquaternion import Quaternion

from calibration.se3 import SE3, rotation_to_quaternion


def check_strictly_increasing(timestamps_us: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the stream and the first bad index unless strictly increasing."""
    t = np.asarray(timestamps_us)
    if t.size > 1:
        bad = np.flatnonzero(np.diff(t) <= 0)
        if bad.size:
            i = int(bad[0])
            kind = "duplicate" if t[i + 1] == t[i] else "out-of-order"
            raise ValueError(
                f"{name}: {kind} timestamp at index {i + 1} ({int(t[i + 1])} us after "
                f"{int(t[i])} us); timestamps must be strictly increasing"
            )


@dataclass(frozen=True, eq=False)
class EgoPoseTrack:
    """A time series of ``global_SE3_ego`` poses, queried at any timestamp inside its span.

    Attributes:
        timestamps_us: (T,) int64, strictly increasing (validated).
        translations_m: (T, 3) float64 ego positions in the global frame.
        quaternions_wxyz: (T, 4) float64 unit quaternions, sign-aligned to their predecessor
            so that slerp takes the short way.
        name: label for error messages (e.g. the scene name).

    """

    timestamps_us: np.ndarray
    translations_m: np.ndarray
    quaternions_wxyz: np.ndarray
    name: str = "ego pose track"

    def __post_init__(self) -> None:
        t = np.asarray(self.timestamps_us, dtype=np.int64).reshape(-1)
        tr = np.asarray(self.translations_m, dtype=np.float64).reshape(-1, 3)
        q = np.array(self.quaternions_wxyz, dtype=np.float64).reshape(-1, 4)
        if not (t.shape[0] == tr.shape[0] == q.shape[0]) or t.shape[0] == 0:
            raise ValueError(
                f"{self.name}: need T >= 1 matching timestamps/translations/quaternions, got "
                f"{t.shape[0]}/{tr.shape[0]}/{q.shape[0]}"
            )
        check_strictly_increasing(t, self.name)
        norms = np.linalg.norm(q, axis=1)
        if np.any(np.abs(norms - 1.0) > 1e-6):
            i = int(np.argmax(np.abs(norms - 1.0)))
            raise ValueError(f"{self.name}: quaternion {i} has norm {norms[i]:.9f}, expected 1")
        for i in range(1, q.shape[0]):
            if np.dot(q[i], q[i - 1]) < 0:
                q[i] = -q[i]
        for a in (t, tr, q):
            a.setflags(write=False)
        object.__setattr__(self, "timestamps_us", t)
        object.__setattr__(self, "translations_m", tr)
        object.__setattr__(self, "quaternions_wxyz", q)

    @staticmethod
    def from_poses(
        timestamps_us: Sequence[int] | np.ndarray,
        poses: Sequence[SE3],
        name: str = "ego pose track",
    ) -> EgoPoseTrack:
        """From ``global_SE3_ego`` poses at the given timestamps."""
        return EgoPoseTrack(
            np.asarray(timestamps_us, dtype=np.int64),
            np.array([p.translation for p in poses]).reshape(-1, 3),
            np.array([rotation_to_quaternion(p.rotation) for p in poses]).reshape(-1, 4),
            name,
        )

    def __len__(self) -> int:
        return int(self.timestamps_us.shape[0])

    @property
    def start_us(self) -> int:
        """First timestamp."""
        return int(self.timestamps_us[0])

    @property
    def end_us(self) -> int:
        """Last timestamp."""
        return int(self.timestamps_us[-1])

    def contains(self, timestamp_us: int) -> bool:
        """True when ``timestamp_us`` lies inside [start, end] (interpolation, no extrapolation)."""
        return self.start_us <= int(timestamp_us) <= self.end_us

    def pose(self, index: int) -> SE3:
        """The stored pose number ``index``."""
        return SE3.from_quaternion(
            self.quaternions_wxyz[index], self.translations_m[index], self.name
        )

    def at(self, timestamp_us: int, max_extrapolation_us: int = 0) -> SE3:
        """``global_SE3_ego`` at ``timestamp_us``: slerp + linear between the bracketing poses.

        Args:
            timestamp_us: query time, microseconds.
            max_extrapolation_us: allowed distance outside [start, end]; the end pose is held
                (no velocity extrapolation) within it.

        Raises:
            ValueError: the query lies further outside the track (message names the track).

        """
        t = int(timestamp_us)
        ts = self.timestamps_us
        if t < ts[0] - max_extrapolation_us or t > ts[-1] + max_extrapolation_us:
            raise ValueError(
                f"{self.name}: timestamp {t} us is outside the pose track "
                f"[{int(ts[0])}, {int(ts[-1])}] us"
            )
        if t <= ts[0]:
            return self.pose(0)
        if t >= ts[-1]:
            return self.pose(len(ts) - 1)
        i = int(np.searchsorted(ts, t, side="right"))  # ts[i-1] <= t < ts[i]
        t0, t1 = int(ts[i - 1]), int(ts[i])
        if t == t0:
            return self.pose(i - 1)
        # Integer microsecond differences keep full precision before the single division.
        a = (t - t0) / (t1 - t0)
        trans = (1.0 - a) * self.translations_m[i - 1] + a * self.translations_m[i]
        q = Quaternion.slerp(
            Quaternion(self.quaternions_wxyz[i - 1]), Quaternion(self.quaternions_wxyz[i]), a
        ).normalised
        return SE3(q.rotation_matrix, trans)

    def relative(self, dst_timestamp_us: int, src_timestamp_us: int) -> SE3:
        """``ego(dst)_SE3_ego(src)``: ego-frame points at ``src`` time -> ego at ``dst`` time."""
        return self.at(dst_timestamp_us).inverse() @ self.at(src_timestamp_us)
