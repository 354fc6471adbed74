"""Replay a recorded drive tick by tick: ``replay(ReplayConfig(...)) -> ReplaySummary``.

Every LIDAR_TOP sweep is one tick; each other sensor's newest reading at or before it is used
(never a later one). Outputs: ``ticks.jsonl`` (one line per tick), ``summary.json`` and
``summary.md`` (latency percentiles per stage, rate, drops, keyframe metrics), ``replay.mp4``
and the Foxglove recording ``replay.mcap``. ``tools/replay.py`` is the command.
"""

from eval.replay.loop import ReplayConfig, ReplaySummary, replay
from eval.replay.records import TICK_SCHEMA
from eval.replay.source import resolve_checkpoint

__all__ = ["TICK_SCHEMA", "ReplayConfig", "ReplaySummary", "replay", "resolve_checkpoint"]
