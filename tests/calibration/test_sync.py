import numpy as np
import pytest

from calibration.sync import SyncMatch, TimestampStream, sync_to_reference


def test_nearest_within_tolerance_with_offsets():
    streams = {
        "CAM_FRONT": [0, 83_333, 166_667],
        "CAM_BACK": [40_000, 123_333],
        "CAM_FAR": [500_000],
    }
    got = sync_to_reference(100_000, streams, tolerance_us=50_000)
    assert got["CAM_FRONT"] == SyncMatch("CAM_FRONT", 1, 83_333, -16_667)
    assert got["CAM_BACK"] == SyncMatch("CAM_BACK", 1, 123_333, 23_333)
    assert got["CAM_FAR"] is None


def test_tolerance_inclusive_and_tie_prefers_earlier():
    s = TimestampStream("CAM_FRONT", np.array([0, 100]))
    assert s.nearest(50, 50).index == 0
    assert s.nearest(150, 50).index == 1
    assert s.nearest(151, 50) is None
    assert s.nearest(-50, 50).offset_us == 50
    assert TimestampStream("X", np.zeros(0)).nearest(0, 10) is None


@pytest.mark.parametrize("ts, word", [([0, 5, 5], "duplicate"), ([0, 9, 3], "out-of-order")])
def test_bad_stream_names_channel(ts, word):
    with pytest.raises(ValueError, match=f"CAM_BACK_RIGHT.*{word}"):
        sync_to_reference(0, {"CAM_FRONT": [0, 1], "CAM_BACK_RIGHT": ts}, 10)
