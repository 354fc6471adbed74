"""The nuScenes adapter against the devkit (oracle) on a tiny hand-made dataroot."""

import shutil

import numpy as np
import nuscenes_fixture as fx
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from sensors.datasets.nuscenes import NuScenesDataset, driving_command
from sensors.readers import SensorFileError
from sensors.types import ACCUMULATED_COLUMNS, CAMERA_CHANNELS, DETECTION_CLASSES


@pytest.fixture(scope="session")
def root_us(tmp_path_factory):
    return fx.build(tmp_path_factory.mktemp("nus_us"), with_ultrasonic=True)


@pytest.fixture(scope="session")
def root_plain(tmp_path_factory):
    return fx.build(tmp_path_factory.mktemp("nus_plain"), with_ultrasonic=False, with_can_bus=False)


@pytest.fixture(scope="session")
def ds(root_us):
    return NuScenesDataset(root_us, version=fx.VERSION, num_sweeps=10)


@pytest.fixture(scope="session")
def ds_plain(root_plain):
    return NuScenesDataset(root_plain, version=fx.VERSION, num_sweeps=3)


def test_iteration_and_splits(ds):
    toks = ds.split_sample_tokens("mini_train")
    assert len(toks) == 7
    ts = [ds.nusc.get("sample", t)["timestamp"] for t in toks]
    assert ts == sorted(ts)
    assert ds.split_sample_tokens("mini_val") == []
    assert ds.split_sample_tokens("train") == toks  # scene-0061 is also in the full train split
    with pytest.raises(ValueError, match="unknown split"):
        ds.split_sample_tokens("mini_test")
    scene = ds.scene_tokens[0]
    assert ds.scene_sample_tokens(scene) == toks
    lidar = ds.scene_lidar_tokens(scene)
    assert len(lidar) == 61
    lt = [ds.nusc.get("sample_data", t)["timestamp"] for t in lidar]
    assert np.all(np.diff(lt) == 50_000)


def _devkit_sweeps_in_ego(ds, sample_token, nsweeps):
    nusc = ds.nusc
    sample = nusc.get("sample", sample_token)
    pc, times = LidarPointCloud.from_file_multisweep(
        nusc, sample, "LIDAR_TOP", "LIDAR_TOP", nsweeps=nsweeps, min_distance=1.0
    )
    cs = nusc.get(
        "calibrated_sensor",
        nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["calibrated_sensor_token"],
    )
    pc.transform(transform_matrix(cs["translation"], Quaternion(cs["rotation"])))
    return pc.points.T, times[0]


@pytest.mark.parametrize("index", [0, 3, 6])
def test_accumulation_matches_devkit_multisweep(ds, index):
    token = ds.split_sample_tokens("mini_train")[index]
    s = ds.load_sample(token)
    ref_pts, ref_times = _devkit_sweeps_in_ego(ds, token, 10)
    assert s.lidar.columns == ACCUMULATED_COLUMNS and s.lidar.frame == "ego"
    assert s.lidar.num_points == ref_pts.shape[0]
    np.testing.assert_allclose(s.lidar.points[:, :3], ref_pts[:, :3], atol=1e-4)
    np.testing.assert_array_equal(s.lidar.points[:, 3], ref_pts[:, 3])
    np.testing.assert_allclose(s.lidar.points[:, 4], ref_times, atol=1e-6)
    assert s.lidar.timestamp_us == s.timestamp_us


def test_boxes_match_devkit_in_ego_frame(ds):
    token = ds.split_sample_tokens("mini_train")[2]
    s = ds.load_sample(token)
    nusc = ds.nusc
    sd_token = nusc.get("sample", token)["data"]["LIDAR_TOP"]
    _, boxes, _ = nusc.get_sample_data(sd_token)  # in the LiDAR frame
    cs = nusc.get("calibrated_sensor", nusc.get("sample_data", sd_token)["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", nusc.get("sample_data", sd_token)["ego_pose_token"])
    kept = [b for b in boxes if b.name != "animal"]  # the unmapped category is dropped
    assert len(s.boxes) == len(kept) == 2
    for i, b in enumerate(kept):
        b.rotate(Quaternion(cs["rotation"]))
        b.translate(np.array(cs["translation"]))
        np.testing.assert_allclose(s.boxes.center_m[i], b.center, atol=1e-9)
        np.testing.assert_allclose(s.boxes.wlh_m[i], b.wlh)
        assert s.boxes.yaw_rad[i] == pytest.approx(b.orientation.yaw_pitch_roll[0], abs=1e-9)
        ann = nusc.get("sample_annotation", b.token)
        vel = Quaternion(pose["rotation"]).inverse.rotate(nusc.box_velocity(b.token))
        np.testing.assert_allclose(s.boxes.velocity_mps[i], vel[:2], atol=1e-9)
        assert s.boxes.num_lidar_pts[i] == ann["num_lidar_pts"]
        assert s.boxes.instance_tokens[i] == ann["instance_token"]
    assert [DETECTION_CLASSES[k] for k in s.boxes.labels] == ["car", "pedestrian"]
    assert s.boxes.attributes == ("vehicle.moving", "pedestrian.standing")
    # The car moves at 3 m/s along the initial heading; the pedestrian stands.
    assert np.linalg.norm(s.boxes.velocity_mps[0]) == pytest.approx(3.0, abs=1e-6)
    np.testing.assert_allclose(s.boxes.velocity_mps[1], 0.0, atol=1e-9)
    # Points in the ego-frame boxes (reference sweep only) reproduce num_lidar_pts.
    ref = s.lidar.points[s.lidar.points[:, 4] == 0, :3]
    np.testing.assert_array_equal(s.boxes.points_in_boxes(ref).sum(1), s.boxes.num_lidar_pts)


def test_cameras_motion_compensated(ds):
    token = ds.split_sample_tokens("mini_train")[4]
    s = ds.load_sample(token)
    nusc = ds.nusc
    sample = nusc.get("sample", token)
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    ref_pose = nusc.get("ego_pose", lidar_sd["ego_pose_token"])
    assert s.camera_mask.all()
    for ch, view in zip(CAMERA_CHANNELS, s.cameras):
        sd = nusc.get("sample_data", sample["data"][ch])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        ref = (
            transform_matrix(
                ref_pose["translation"], Quaternion(ref_pose["rotation"]), inverse=True
            )
            @ transform_matrix(pose["translation"], Quaternion(pose["rotation"]))
            @ transform_matrix(cs["translation"], Quaternion(cs["rotation"]))
        )
        np.testing.assert_allclose(view.ref_SE3_cam.as_matrix(), ref, atol=1e-9)
        assert view.time_offset_us == sd["timestamp"] - lidar_sd["timestamp"]
        assert view.image.channel == ch and view.image.image.shape == (fx.CAM_H, fx.CAM_W, 3)
        # RGB order: the fixture paints the left half red.
        assert view.image.image[5, 2, 0] > 200 and view.image.image[5, 2, 2] < 50
        np.testing.assert_array_equal(view.image.intrinsics, fx.CAM_K)


def test_future_trajectory_and_command(ds):
    toks = ds.split_sample_tokens("mini_train")
    s = ds.load_sample(toks[0])
    # Analytic left arc: ego positions at +0.5 .. +3.0 s in the ego frame at t.
    r = fx.SPEED_MPS / fx.YAW_RATE
    tt = 0.5 * np.arange(1, 7)
    expected = np.c_[r * np.sin(fx.YAW_RATE * tt), r * (1 - np.cos(fx.YAW_RATE * tt))]
    np.testing.assert_allclose(s.future_xy_ego_m, expected, atol=2e-3)
    assert s.command == 1  # left
    last = ds.load_sample(toks[-1])
    assert np.isnan(last.future_xy_ego_m).all() and last.command == 2
    mid = ds.load_sample(toks[3])  # 1.5 s left in the scene
    assert np.isfinite(mid.future_xy_ego_m[:3]).all() and np.isnan(mid.future_xy_ego_m[3:]).all()


def test_driving_command_rule():
    assert driving_command(np.array([[1, 0], [5, -2.5]])) == 0
    assert driving_command(np.array([[1, 0], [5, 2.0]])) == 1
    assert driving_command(np.array([[1, 0], [5, 1.9]])) == 2
    assert driving_command(np.array([[1, 3.0], [np.nan, np.nan]])) == 1
    assert driving_command(np.full((6, 2), np.nan)) == 2


def test_can_bus_and_measured_ultrasonic(ds):
    s = ds.load_sample(ds.split_sample_tokens("mini_train")[2])
    assert s.can_bus.speed_mps == pytest.approx(fx.SPEED_MPS)
    assert s.can_bus.yaw_rate_radps == pytest.approx(fx.YAW_RATE)
    assert s.can_bus.accel_mps2 == pytest.approx(0.2)
    assert s.can_bus.steering_rad == pytest.approx(0.5)
    assert ds.has_ultrasonic and s.ultrasonic.derived is False
    # Nearest ULTRASONIC reading is 5 ms after the LiDAR keyframe at t = 1.0 s.
    assert s.ultrasonic.timestamp_us == s.timestamp_us + 5_000
    assert s.ultrasonic.ranges_m[2] == pytest.approx(1.0 + 1.005)
    assert np.isnan(s.ultrasonic.ranges_m[0])


def test_virtual_ultrasonic_without_channel_and_no_can_bus(ds_plain):
    s = ds_plain.load_sample(ds_plain.split_sample_tokens("mini_train")[1])
    assert not ds_plain.has_ultrasonic and ds_plain.can_bus is None
    assert s.can_bus is None
    assert s.ultrasonic.derived is True and s.ultrasonic.timestamp_us == s.timestamp_us
    # num_sweeps=3 -> time lags 0, 0.05, 0.1 s only.
    np.testing.assert_allclose(np.unique(s.lidar.points[:, 4]), [0.0, 0.05, 0.1], atol=1e-7)


def test_load_sweep_non_key_and_key(ds):
    scene = ds.scene_tokens[0]
    lidar = ds.scene_lidar_tokens(scene)
    s = ds.load_sweep(lidar[13])
    assert not s.is_keyframe and s.boxes is None and s.token == lidar[13]
    assert s.camera_mask.all()
    for view in s.cameras:
        assert abs(view.time_offset_us) <= 1e6 / 12 / 2 + 1
    # t = 0.65 s in a 3 s scene: +0.5 .. +2.0 s exist, +2.5 and +3.0 s do not.
    finite = np.isfinite(s.future_xy_ego_m).all(axis=1)
    assert finite.tolist() == [True] * 4 + [False] * 2
    key = ds.load_sweep(lidar[10])
    assert key.is_keyframe and key.token == ds.split_sample_tokens("mini_train")[1]
    with pytest.raises(ValueError, match="CAM_FRONT"):
        ds.load_sweep(ds.nusc.get("sample", key.token)["data"]["CAM_FRONT"])


def test_missing_camera_is_none_and_recorded(root_plain, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(root_plain, root)
    d = NuScenesDataset(root, version=fx.VERSION, num_sweeps=2)
    token = d.split_sample_tokens("mini_train")[2]
    sd = d.nusc.get("sample_data", d.nusc.get("sample", token)["data"]["CAM_BACK"])
    (root / sd["filename"]).unlink()
    s = d.load_sample(token)
    assert s.camera_mask.tolist() == [True, True, True, False, True, True]
    assert len(d.missing_files) == 1 and d.missing_files[0].channel == "CAM_BACK"
    assert d.missing_files[0].path.endswith(sd["filename"])
    # A missing reference LiDAR sweep means no LiDAR (and no virtual ultrasonic) for the tick.
    lsd = d.nusc.get("sample_data", d.nusc.get("sample", token)["data"]["LIDAR_TOP"])
    (root / lsd["filename"]).unlink()
    s = d.load_sample(token)
    assert s.lidar is None and s.ultrasonic is None and s.presence
    # With on_sensor_error="raise" a corrupt (truncated) sweep is an error naming the file.
    prev = d.nusc.get("sample_data", lsd["next"])
    data = (root / prev["filename"]).read_bytes()
    (root / prev["filename"]).write_bytes(data[:-3])
    d.on_sensor_error = "raise"
    with pytest.raises(SensorFileError, match=prev["filename"].split("/")[-1]):
        d.load_sweep(prev["token"])


def test_bad_dataroot(tmp_path):
    with pytest.raises(FileNotFoundError, match="v1.0-mini"):
        NuScenesDataset(tmp_path)


def _copy_with_table_edit(src, dst, table, edit):
    import json

    shutil.copytree(src, dst)
    path = dst / fx.VERSION / f"{table}.json"
    rows = json.loads(path.read_text())
    edit(rows)
    path.write_text(json.dumps(rows))
    return dst


def test_bad_calibration_names_channel(root_plain, tmp_path):
    def shear(rows):
        for r in rows:
            if r["token"] == fx.tok("cs", "CAM_FRONT_LEFT"):
                r["rotation"] = [0.9, 0.1, 0.0, 0.0]  # not unit norm

    root = _copy_with_table_edit(root_plain, tmp_path / "c", "calibrated_sensor", shear)
    d = NuScenesDataset(root, version=fx.VERSION, num_sweeps=1)
    with pytest.raises(ValueError, match="CAM_FRONT_LEFT.*norm"):
        d.load_sample(d.split_sample_tokens("mini_train")[0])


def test_bad_annotation_rotation_names_annotation(root_plain, tmp_path):
    bad = {}

    def edit(rows):
        rows[0]["rotation"] = [2.0, 0.0, 0.0, 0.0]
        bad["token"] = rows[0]["token"]

    root = _copy_with_table_edit(root_plain, tmp_path / "a", "sample_annotation", edit)
    d = NuScenesDataset(root, version=fx.VERSION, num_sweeps=1)
    sample = d.nusc.get("sample_annotation", bad["token"])["sample_token"]
    with pytest.raises(ValueError, match=f"sample_annotation {bad['token']}.*norm"):
        d.load_sample(sample)


def test_corrupt_camera_raises_naming_file(root_plain, tmp_path):
    root = tmp_path / "j"
    shutil.copytree(root_plain, root)
    d = NuScenesDataset(root, version=fx.VERSION, num_sweeps=1, on_sensor_error="raise")
    token = d.split_sample_tokens("mini_train")[0]
    sd = d.nusc.get("sample_data", d.nusc.get("sample", token)["data"]["CAM_FRONT_RIGHT"])
    (root / sd["filename"]).write_bytes(b"\xff\xd8garbage")
    with pytest.raises(SensorFileError, match=sd["filename"].split("/")[-1]):
        d.load_sample(token)


def test_sensor_rig(ds):
    rig = ds.sensor_rig(ds.split_sample_tokens("mini_train")[0])
    assert set(rig.channels) == {"LIDAR_TOP", "ULTRASONIC", *CAMERA_CHANNELS}
    assert set(rig.cameras) == set(CAMERA_CHANNELS)
    cam = rig.cameras["CAM_BACK"]
    assert (cam.width, cam.height) == (fx.CAM_W, fx.CAM_H)
    np.testing.assert_allclose(
        rig.pose("LIDAR_TOP").as_matrix(), transform_matrix(fx.LIDAR_T, fx.LIDAR_Q), atol=1e-12
    )


def test_load_sweep_interpolated_boxes(ds):
    """Non-key sweep with interpolate_boxes: the fixture's car moves linearly at 3 m/s along
    the initial heading, so the devkit interpolation is exact: compare with the analytic pose."""
    lidar = ds.scene_lidar_tokens(ds.scene_tokens[0])
    s = ds.load_sweep(lidar[13], interpolate_boxes=True)
    assert not s.is_keyframe and len(s.boxes) == 2
    assert s.boxes.num_lidar_pts.tolist() == [-1, -1]
    car = fx.AGENTS[0]
    c, q = car.pose(s.timestamp_us)
    pos, eq = fx.ego_pose_at(s.timestamp_us)
    expected = eq.inverse.rotate(c - pos)
    np.testing.assert_allclose(s.boxes.center_m[0], expected, atol=1e-6)
    assert s.boxes.yaw_rad[0] == pytest.approx(q.yaw_pitch_roll[0] - eq.yaw_pitch_roll[0], abs=1e-9)
    assert ds.load_sweep(lidar[13]).boxes is None


def test_threaded_io_gives_identical_samples_and_pickles(root_us, ds):
    import pickle

    threaded = NuScenesDataset(root_us, version=fx.VERSION, num_sweeps=10, io_threads=3)
    for token in ds.split_sample_tokens("mini_train")[::3]:
        a, b = ds.load_sample(token), threaded.load_sample(token)
        np.testing.assert_array_equal(a.lidar.points, b.lidar.points)
        for va, vb in zip(a.cameras, b.cameras):
            np.testing.assert_array_equal(va.image.image, vb.image.image)
            np.testing.assert_array_equal(va.ref_SE3_cam.as_matrix(), vb.ref_SE3_cam.as_matrix())
    clone = pickle.loads(pickle.dumps(threaded))
    assert clone.load_sample(token).lidar.num_points == b.lidar.num_points
