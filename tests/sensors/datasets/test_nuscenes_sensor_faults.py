"""Degrade, do not discard: a corrupt file of one sensor is masked like a missing one and
recorded with file and reason (``on_sensor_error="mask"``), or raised (``"raise"``); the
LiDAR layout of the dataset is used whatever the file extension."""

from __future__ import annotations

import shutil

import numpy as np
import nuscenes_fixture as fx
import pytest

from sensors.datasets.nuscenes import NuScenesDataset
from sensors.readers import SensorFileError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return fx.build(tmp_path_factory.mktemp("nus_faults"), with_ultrasonic=True)


@pytest.fixture
def copy(root, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return dst


def _sd(d: NuScenesDataset, token: str, channel: str) -> dict:
    return d.nusc.get("sample_data", d.nusc.get("sample", token)["data"][channel])


def test_corrupt_camera_is_masked_and_recorded(copy):
    d = NuScenesDataset(copy, version=fx.VERSION, num_sweeps=3)
    token = d.split_sample_tokens("mini_train")[2]
    good = d.load_sample(token)
    sd = _sd(d, token, "CAM_BACK_LEFT")
    (copy / sd["filename"]).write_bytes(b"\xff\xd8garbage")  # not a decodable JPEG
    s = d.load_sample(token)
    assert s.camera_mask.tolist() == [True, True, True, True, False, True]
    np.testing.assert_array_equal(s.lidar.points, good.lidar.points)  # the rest is unchanged
    (fault,) = d.sensor_faults
    assert fault.token == token and fault.channel == "CAM_BACK_LEFT"
    assert fault.path.endswith(sd["filename"]) and "truncated" in fault.reason
    assert not d.missing_files


def test_corrupt_earlier_sweep_is_left_out_of_the_accumulation(copy):
    d = NuScenesDataset(copy, version=fx.VERSION, num_sweeps=3)
    token = d.split_sample_tokens("mini_train")[2]
    ref = _sd(d, token, "LIDAR_TOP")
    prev = d.nusc.get("sample_data", ref["prev"])
    full = d.load_sample(token)
    (copy / prev["filename"]).write_bytes((copy / prev["filename"]).read_bytes()[:-3])
    s = d.load_sample(token)
    assert s.lidar is not None
    # Exactly the corrupt sweep's points are gone, the reference and the oldest are kept.
    assert full.lidar.num_points - s.lidar.num_points > 0
    lags = np.unique(np.round(s.lidar.column("time_lag_s"), 3))
    full_lags = np.unique(np.round(full.lidar.column("time_lag_s"), 3))
    assert len(full_lags) == 3 and len(lags) == 2
    assert lags.tolist() == [full_lags[0], full_lags[2]]
    (fault,) = d.sensor_faults
    assert fault.channel == "LIDAR_TOP" and fault.path.endswith(prev["filename"])
    assert "not a whole number of 5-column" in fault.reason


def test_corrupt_reference_sweep_means_no_lidar(copy):
    d = NuScenesDataset(copy, version=fx.VERSION, num_sweeps=2)
    token = d.split_sample_tokens("mini_train")[1]
    ref = _sd(d, token, "LIDAR_TOP")
    (copy / ref["filename"]).write_bytes(b"\x00" * 7)
    s = d.load_sample(token)
    assert s.lidar is None and s.camera_mask.all()
    assert [f.channel for f in d.sensor_faults] == ["LIDAR_TOP"]


def test_corrupt_ultrasonic_is_masked(copy):
    d = NuScenesDataset(copy, version=fx.VERSION, num_sweeps=1)
    token = d.split_sample_tokens("mini_train")[3]
    assert d.load_sample(token).ultrasonic is not None
    stream = d._scene(d.nusc.get("sample", token)["scene_token"]).tokens["ULTRASONIC"]
    for t in stream:  # whichever frame is nearest, it is corrupt
        sd = d.nusc.get("sample_data", t)
        (copy / sd["filename"]).write_bytes(b"\x00" * 10)
    s = d.load_sample(token)
    assert s.ultrasonic is None and s.lidar is not None and s.camera_mask.all()
    (fault,) = d.sensor_faults
    assert fault.channel == "ULTRASONIC" and "10 bytes, expected 48" in fault.reason


def test_raise_mode_lets_the_reader_error_through(copy):
    d = NuScenesDataset(copy, version=fx.VERSION, num_sweeps=1, on_sensor_error="raise")
    token = d.split_sample_tokens("mini_train")[0]
    sd = _sd(d, token, "CAM_FRONT")
    (copy / sd["filename"]).write_bytes(b"\xff\xd8garbage")
    with pytest.raises(SensorFileError, match=sd["filename"].split("/")[-1]):
        d.load_sample(token)
    assert not d.sensor_faults
    with pytest.raises(ValueError, match="on_sensor_error must be one of"):
        NuScenesDataset(copy, version=fx.VERSION, on_sensor_error="ignore")


def test_lidar_layout_of_the_dataset_whatever_the_extension(copy):
    # Lyft-style: 5-column LIDAR_TOP files named .bin; read as KITTI (4 columns) by their
    # extension they would shift every column.
    import json

    path = copy / fx.VERSION / "sample_data.json"
    rows = json.loads(path.read_text())
    for r in rows:
        if r["filename"].endswith(".pcd.bin"):
            new = r["filename"][: -len(".pcd.bin")] + ".bin"
            (copy / r["filename"]).rename(copy / new)
            r["filename"] = new
    path.write_text(json.dumps(rows))
    d = NuScenesDataset(copy, version=fx.VERSION, num_sweeps=1)
    token = d.split_sample_tokens("mini_train")[0]
    s = d.load_sample(token)
    raw = np.fromfile(copy / _sd(d, token, "LIDAR_TOP")["filename"], np.float32).reshape(-1, 5)
    assert s.lidar is not None and not d.sensor_faults
    np.testing.assert_allclose(np.sort(s.lidar.column("intensity")),
                               np.sort(raw[np.abs(raw[:, :2]).max(1) >= 1.0, 3]), rtol=0)


def test_bad_camera_intrinsic_table_names_channel_and_field(copy):
    # A calibration fault is not a sensor-file fault: never masked, never a LinAlgError later.
    import json

    from calibration.se3 import CalibrationError

    path = copy / fx.VERSION / "calibrated_sensor.json"
    rows = json.loads(path.read_text())
    for r in rows:
        if r["token"] == fx.tok("cs", "CAM_BACK"):
            r["camera_intrinsic"][0][0] = 0.0
    path.write_text(json.dumps(rows))
    d = NuScenesDataset(copy, version=fx.VERSION, num_sweeps=1)
    with pytest.raises(CalibrationError, match=r"CAM_BACK \(.*\.jpg\): intrinsics fx \(K\[0,0\]\)"):
        d.load_sample(d.split_sample_tokens("mini_train")[0])
    assert not d.sensor_faults
