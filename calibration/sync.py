"""Time synchronisation: match each sensor stream to a reference (LiDAR) timestamp."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from calibration.ego_pose import check_strictly_increasing


@dataclass(frozen=True)
class SyncMatch:
    """The frame of one stream chosen for a reference timestamp.

    Attributes:
        channel: the stream's channel.
        index: position of the chosen frame in the stream.
        timestamp_us: the chosen frame's timestamp.
        offset_us: ``timestamp_us - reference timestamp`` (negative = frame is earlier).

    """

    channel: str
    index: int
    timestamp_us: int
    offset_us: int


@dataclass(frozen=True, eq=False)
class TimestampStream:
    """The timestamps of one sensor stream, validated strictly increasing at construction.

    Attributes:
        channel: channel name (used in errors).
        timestamps_us: (T,) int64.

    """

    channel: str
    timestamps_us: np.ndarray

    def __post_init__(self) -> None:
        t = np.asarray(self.timestamps_us, dtype=np.int64).reshape(-1)
        check_strictly_increasing(t, f"{self.channel} timestamps")
        t.setflags(write=False)
        object.__setattr__(self, "timestamps_us", t)

    def __len__(self) -> int:
        return int(self.timestamps_us.shape[0])

    def nearest(self, reference_us: int, tolerance_us: int) -> SyncMatch | None:
        """The frame nearest to ``reference_us`` if within ``tolerance_us`` (inclusive), else None.

        On an exact tie the earlier frame wins (it was fully exposed before the reference).
        """
        t = self.timestamps_us
        if t.size == 0:
            return None
        ref = int(reference_us)
        i = int(np.searchsorted(t, ref))
        candidates = [j for j in (i - 1, i) if 0 <= j < t.size]
        best = min(candidates, key=lambda j: (abs(int(t[j]) - ref), j))
        offset = int(t[best]) - ref
        if abs(offset) > tolerance_us:
            return None
        return SyncMatch(self.channel, best, int(t[best]), offset)

    def latest_at_or_before(
        self, reference_us: int, max_age_us: int | None = None
    ) -> SyncMatch | None:
        """The newest frame at or before ``reference_us``: never one from its future.

        This is what a live system has at ``reference_us`` (replay's rule); ``offset_us`` is
        then ``<= 0`` and ``-offset_us`` is the frame's age.

        Args:
            reference_us: the tick, microseconds.
            max_age_us: oldest accepted age (inclusive); None accepts any age.

        Returns:
            The match, or None when the stream has nothing at or before the tick or its
            newest such frame is older than ``max_age_us``.

        """
        t = self.timestamps_us
        ref = int(reference_us)
        i = int(np.searchsorted(t, ref, side="right")) - 1
        if i < 0:
            return None
        offset = int(t[i]) - ref
        if max_age_us is not None and -offset > max_age_us:
            return None
        return SyncMatch(self.channel, i, int(t[i]), offset)


def sync_to_reference(
    reference_us: int,
    streams: Mapping[str, Sequence[int] | np.ndarray | TimestampStream],
    tolerance_us: int,
) -> dict[str, SyncMatch | None]:
    """For each stream, the frame nearest to ``reference_us`` within ``tolerance_us``.

    Args:
        reference_us: reference (LiDAR) timestamp, microseconds.
        streams: channel -> strictly increasing timestamps (or a prepared ``TimestampStream``).
        tolerance_us: largest accepted ``|offset|``; a stream with nothing that close maps
            to None (missing data is normal, the caller masks it).

    Returns:
        channel -> ``SyncMatch`` (with the offset) or None.

    Raises:
        ValueError: a stream is out of order or has a duplicate timestamp (names the channel).

    """
    out: dict[str, SyncMatch | None] = {}
    for channel, ts in streams.items():
        stream = ts if isinstance(ts, TimestampStream) else TimestampStream(channel, np.asarray(ts))
        out[channel] = stream.nearest(reference_us, tolerance_us)
    return out
