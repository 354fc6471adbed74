import numpy as np
import pytest

from calibration.camera import PinholeCamera
from calibration.rig import SensorRig, sensor_pose
from calibration.se3 import SE3


def test_rig_poses_and_relative_transform():
    rig = SensorRig.from_matrices(
        {
            "LIDAR_TOP": SE3.from_yaw(-np.pi / 2, [0.94, 0, 1.84]).as_matrix(),
            "CAM_FRONT": SE3.from_yaw(0.1, [1.7, 0, 1.5]).as_matrix(),
        }
    )
    p = np.array([[1.0, 2.0, 3.0]])
    rel = rig.sensor_SE3_sensor("CAM_FRONT", "LIDAR_TOP")
    via_ego = (
        rig.pose("CAM_FRONT").inverse().transform_points(rig.pose("LIDAR_TOP").transform_points(p))
    )
    np.testing.assert_allclose(rel.transform_points(p), via_ego, atol=1e-12)
    assert rig.channels == ("LIDAR_TOP", "CAM_FRONT")


def test_non_orthonormal_rotation_names_channel():
    m = np.eye(4)
    m[0, 1] = 1e-4  # shear
    with pytest.raises(ValueError, match="CAM_BACK_LEFT.*orthonormal"):
        SensorRig.from_matrices({"CAM_BACK_LEFT": m})


def test_reflection_names_channel():
    m = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="LIDAR_TOP.*det"):
        SensorRig.from_matrices({"LIDAR_TOP": m})


def test_tolerance_is_1e6():
    r = np.eye(3)
    r[0, 1] = 5e-7
    sensor_pose("CAM_FRONT", rotation=r)  # within tolerance
    r[0, 1] = 5e-6
    with pytest.raises(ValueError, match="CAM_FRONT"):
        sensor_pose("CAM_FRONT", rotation=r)


def test_non_unit_quaternion_names_channel():
    with pytest.raises(ValueError, match="CAM_FRONT_RIGHT.*norm"):
        sensor_pose("CAM_FRONT_RIGHT", quaternion_wxyz=[1.0, 0.01, 0, 0])
    with pytest.raises(ValueError, match="ULTRASONIC.*translation"):
        sensor_pose("ULTRASONIC", quaternion_wxyz=[1.0, 0, 0, 0], translation=[0, np.nan, 0])


def test_unknown_channel_and_camera_without_pose():
    rig = SensorRig({"LIDAR_TOP": SE3.identity()})
    with pytest.raises(KeyError, match="CAM_FRONT"):
        rig.pose("CAM_FRONT")
    with pytest.raises(ValueError, match="CAM_FRONT"):
        SensorRig({"LIDAR_TOP": SE3.identity()}, {"CAM_FRONT": PinholeCamera(np.eye(3), 10, 10)})


def test_rig_is_immutable():
    rig = SensorRig({"LIDAR_TOP": SE3.identity()})
    with pytest.raises(TypeError):
        rig.ego_SE3_sensor["X"] = SE3.identity()
