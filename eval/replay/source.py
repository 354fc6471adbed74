"""What replay reads: the ticks of a scene and a background reader that prefetches them.

Every LIDAR_TOP sample_data of a scene is one tick (20 Hz). Each tick's ``SyncedSample`` is
built causally (``NuScenesDataset.load_sweep(causal=...)``): every other sensor's newest
reading at or before the tick, never a later one. A ``Prefetcher`` thread loads ticks ahead
into a bounded queue so that file reads and JPEG decoding (which release the GIL) overlap the
network; what it could not read is carried to the tick as an error, never raised.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from calibration.sample import SyncedSample
from perception.checkpoint import SHIPPED_CHECKPOINTS_DIR
from perception.checkpoint import resolve_checkpoint as resolve_checkpoint  # re-export
from sensors.datasets.nuscenes import (
    CAN_BUS_CHANNEL,
    CausalSync,
    NuScenesDataset,
    SensorReading,
)
from sensors.types import CAMERA_CHANNELS, LIDAR_CHANNEL, ULTRASONIC_CHANNEL

# One resolver for every command taking a checkpoint: a path, or a shipped variant name
# (package data, so it works in an installed wheel too). Re-exported for the replay API.
CHECKPOINTS_DIR = SHIPPED_CHECKPOINTS_DIR


def resolve_scenes(
    ds: NuScenesDataset, scenes: Sequence[str] = (), split: str | None = None
) -> list[str]:
    """Scene tokens from names or tokens (in the order given), or all scenes of a split.

    Raises:
        ValueError: an unknown scene (the message lists a few known names), or a split with
            no scene in this dataroot, or neither given.

    """
    by_name = {s["name"]: s["token"] for s in ds.nusc.scene}
    tokens = set(by_name.values())
    out: list[str] = []
    for s in scenes:
        if s in by_name:
            out.append(by_name[s])
        elif s in tokens:
            out.append(s)
        else:
            known = ", ".join(sorted(by_name)[:8])
            raise ValueError(f"{ds.dataroot}/{ds.version}: no scene named or with token {s!r} "
                             f"(scenes: {known}{', ...' if len(by_name) > 8 else ''})")
    if split is not None:
        found = ds.split_scene_tokens(split)
        if not found:
            raise ValueError(f"{ds.dataroot}/{ds.version}: split {split!r} has no scene here")
        out += [t for t in found if t not in out]
    if not out:
        raise ValueError("replay: give at least one --scene or a --split")
    return out


@dataclass(frozen=True)
class TickRef:
    """One LiDAR tick of a scene (before anything is read).

    Attributes:
        index: position among all ticks of the replay (0-based, across scenes).
        scene_token / scene_name: the scene.
        lidar_token: the LIDAR_TOP sample_data token.
        sample_token: the keyframe's sample token, or the LiDAR token for a non-key sweep
            (what ``SyncedSample.token`` will be).
        timestamp_us: the LiDAR timestamp.
        scene_time_s: seconds since the scene's first LiDAR sweep.
        is_keyframe: an annotated 2 Hz keyframe.

    """

    index: int
    scene_token: str
    scene_name: str
    lidar_token: str
    sample_token: str
    timestamp_us: int
    scene_time_s: float
    is_keyframe: bool


def scene_ticks(
    ds: NuScenesDataset,
    scene_tokens: Sequence[str],
    start_s: float = 0.0,
    end_s: float | None = None,
) -> list[TickRef]:
    """Every LIDAR_TOP sweep of the scenes in timestamp order, sliced to ``[start_s, end_s]``
    seconds after each scene's first sweep (both inclusive; ``end_s`` None = to the end).
    """
    out: list[TickRef] = []
    for scene in scene_tokens:
        name = ds.nusc.get("scene", scene)["name"]
        lidar = ds.scene_lidar_tokens(scene)
        if not lidar:
            continue
        t0 = None
        for tok in lidar:
            sd = ds.nusc.get("sample_data", tok)
            ts = int(sd["timestamp"])
            t0 = ts if t0 is None else t0
            t_s = (ts - t0) * 1e-6
            if t_s < start_s - 1e-9 or (end_s is not None and t_s > end_s + 1e-9):
                continue
            key = bool(sd["is_key_frame"])
            out.append(
                TickRef(len(out), scene, name, tok, sd["sample_token"] if key else tok, ts, t_s,
                        key)
            )
    return out


@dataclass(frozen=True, eq=False)
class TickInput:
    """What the reader produced for one tick.

    Attributes:
        ref: the tick.
        sample: the causal ``SyncedSample``, or None when it could not be built.
        readings: every sensor's newest reading at or before the tick, with its age.
        errors: what went wrong reading this tick (missing files, a corrupt file, ...).
        load_ms: time the reader spent on this tick (in its own thread).
        camera_jpegs: channel -> the camera's JPEG bytes, only for cameras whose frame is new
            at this tick (for the recording, which stores the original bytes).

    """

    ref: TickRef
    sample: SyncedSample | None
    readings: dict[str, SensorReading]
    errors: tuple[str, ...] = ()
    load_ms: float = 0.0
    camera_jpegs: dict[str, bytes] = field(default_factory=dict)


def read_tick(
    ds: NuScenesDataset,
    ref: TickRef,
    causal: CausalSync,
    with_gt: bool = False,
    previous_camera_tokens: dict[str, str | None] | None = None,
) -> TickInput:
    """Load one tick; failures become ``errors`` (the tick then has no sample), never raise.

    ``previous_camera_tokens`` (updated in place) remembers the last camera frame handed
    out, so that the JPEG bytes of a camera are read only when it has a new frame.
    """
    t0 = time.perf_counter()
    errors: list[str] = []
    try:
        readings = ds.causal_readings(ref.lidar_token, causal)
    except Exception as exc:  # a broken table entry: recorded, the replay goes on
        return TickInput(ref, None, {}, (f"{type(exc).__name__}: {exc}",),
                         (time.perf_counter() - t0) * 1e3)
    # What the dataset records while loading (missing files; corrupt files it masked, where
    # it masks them) is this tick's, since only this thread loads.
    faults = getattr(ds, "sensor_faults", None)
    n_missing, n_faults = len(ds.missing_files), len(faults) if faults is not None else 0
    sample = None
    try:
        sample = ds.load_sweep(ref.lidar_token, interpolate_boxes=with_gt, causal=causal)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    for m in ds.missing_files[n_missing:]:
        errors.append(f"{m.channel} file missing: {m.path}")
    for f in (faults or [])[n_faults:]:
        errors.append(f"{f.channel} file unreadable, left out: {f.path}: {f.reason}")
    jpegs: dict[str, bytes] = {}
    if previous_camera_tokens is not None and sample is not None:
        for ch, view in zip(CAMERA_CHANNELS, sample.cameras):
            tok = readings[ch].sample_data_token if view is not None else None
            if tok is not None and previous_camera_tokens.get(ch) != tok:
                path = ds.dataroot / ds.nusc.get("sample_data", tok)["filename"]
                try:
                    jpegs[ch] = path.read_bytes()
                except OSError as exc:
                    errors.append(f"{ch} recording: {exc}")
            previous_camera_tokens[ch] = tok
    return TickInput(ref, sample, readings, tuple(errors), (time.perf_counter() - t0) * 1e3,
                     jpegs)


_DONE = object()


class Prefetcher:
    """Reads ticks in a background thread into a bounded queue, in order.

    Iterate it to get ``TickInput`` in tick order; ``skip_to(i)`` tells the reader that
    ticks before ``i`` will be dropped (real-time mode), so it does not read them; ``close()``
    stops the thread. ``depth`` bounds the memory held ahead (one ``SyncedSample`` each).
    """

    def __init__(
        self,
        ds: NuScenesDataset,
        ticks: Sequence[TickRef],
        causal: CausalSync,
        depth: int = 4,
        with_gt: bool = False,
        camera_bytes: bool = False,
    ) -> None:
        self._ds = ds
        self._ticks = list(ticks)
        self._causal = causal
        self._with_gt = with_gt
        self._camera_bytes = camera_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._skip_to = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="replay-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        prev: dict[str, str | None] | None = {} if self._camera_bytes else None
        try:
            for ref in self._ticks:
                if self._stop.is_set():
                    return
                with self._lock:
                    skip = ref.index < self._skip_to
                if skip:
                    continue
                item = read_tick(self._ds, ref, self._causal, self._with_gt, prev)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:
            self._put_done()

    def _put_done(self) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(_DONE, timeout=0.1)
                return
            except queue.Full:
                continue

    def skip_to(self, index: int) -> None:
        """Ticks with a smaller index will not be consumed: do not read them."""
        with self._lock:
            self._skip_to = max(self._skip_to, int(index))

    def __iter__(self) -> Iterator[TickInput]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if item.ref.index < self._skip_to:
                continue
            yield item

    def get(self, timeout_s: float | None = None) -> TickInput | None:
        """The next tick not skipped, or None at the end."""
        while True:
            item = self._queue.get(timeout=timeout_s)
            if item is _DONE:
                return None
            if item.ref.index >= self._skip_to:
                return item

    def close(self) -> None:
        """Stop the reader and wait for it."""
        self._stop.set()
        self._thread.join(timeout=10.0)


SENSOR_CHANNELS: tuple[str, ...] = (
    LIDAR_CHANNEL, *CAMERA_CHANNELS, ULTRASONIC_CHANNEL, CAN_BUS_CHANNEL
)
