"""segaff_ros.conversions on its own: message <-> numpy and prediction -> messages (no DDS)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="the ROS 2 message wheels are not installed")

from geometry_msgs.msg import Quaternion  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from segaff_core.inference import AffordancePrediction  # noqa: E402
from segaff_msgs.msg import AffordanceResult  # noqa: E402
from segaff_ros import conversions  # noqa: E402


def make_image(array: np.ndarray, encoding: str, step_padding: int = 0, bigendian: bool = False) -> Image:
    """An Image with rows padded by ``step_padding`` bytes, in the given byte order."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder(">" if bigendian else "<")
    rows = array.astype(dtype).reshape(array.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], step_padding), 7, np.uint8)], axis=1)
    return Image(
        height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=int(bigendian),
        step=padded.shape[1], data=padded.tobytes(),
    )


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize(
    "encoding, pixels",
    [
        ("rgb8", RGB),
        ("bgr8", RGB[:, :, ::-1]),
        ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])),
        ("bgra8", np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 9, np.uint8)])),
    ],
)
def test_colour_encodings_give_rgb_uint8(encoding: str, pixels: np.ndarray, padding: int) -> None:
    decoded = conversions.image_to_numpy(make_image(pixels, encoding, step_padding=padding))
    assert decoded.dtype == np.uint8 and decoded.shape == (5, 7, 3)
    np.testing.assert_array_equal(decoded, RGB)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 2])
def test_16uc1_millimetres_become_metres(bigendian: bool, padding: int) -> None:
    depth_mm = np.array([[0, 1000, 1500], [65535, 250, 0]], dtype=np.uint16)
    decoded = conversions.image_to_numpy(make_image(depth_mm, "16UC1", padding, bigendian))
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, depth_mm / 1000.0, rtol=1e-6)
    assert decoded[0, 0] == 0.0  # invalid stays 0


@pytest.mark.parametrize("bigendian", [False, True])
def test_32fc1_metres_with_nan_and_inf_become_zero(bigendian: bool) -> None:
    depth = np.array([[1.25, np.nan, np.inf], [-np.inf, 0.0, 3.5]], dtype=np.float32)
    decoded = conversions.image_to_numpy(make_image(depth, "32FC1", step_padding=4, bigendian=bigendian))
    np.testing.assert_array_equal(decoded, [[1.25, 0, 0], [0, 0, 3.5]])


@pytest.mark.parametrize("encoding", ["mono16", "yuv422", "8UC3", ""])
def test_unsupported_encoding_is_a_clear_value_error(encoding: str) -> None:
    image = Image(height=2, width=2, encoding=encoding, step=4, data=bytes(8))
    with pytest.raises(ValueError, match="unsupported image encoding"):
        conversions.image_to_numpy(image)


def test_wrong_data_length_and_step_are_clear_value_errors() -> None:
    short = make_image(RGB, "rgb8")
    short.data = bytes(len(short.data) - 1)
    with pytest.raises(ValueError, match="expected step x height"):
        conversions.image_to_numpy(short)
    narrow = make_image(RGB, "rgb8")
    narrow.step = 7 * 3 - 1
    with pytest.raises(ValueError, match="step"):
        conversions.image_to_numpy(narrow)
    with pytest.raises(ValueError, match="empty"):
        conversions.image_to_numpy(Image(height=0, width=0, encoding="rgb8", step=0, data=b""))


def test_numpy_to_image_round_trips() -> None:
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    mask = conversions.numpy_to_image(np.eye(4, 6, dtype=bool), "mono8", header)
    assert (mask.encoding, mask.height, mask.width, mask.step) == ("mono8", 4, 6, 6)
    assert mask.header.frame_id == "cam" and mask.header.stamp.nanosec == 345
    assert set(np.frombuffer(mask.data, np.uint8)) == {0, 255}

    rgb = conversions.numpy_to_image(RGB, "rgb8", header)
    np.testing.assert_array_equal(conversions.image_to_numpy(rgb), RGB)

    depth_m = np.array([[0.0, 1.2344], [2.5, 0.7]], dtype=np.float32)
    as_mm = conversions.numpy_to_image(depth_m * 1000.0, "16UC1", header)
    np.testing.assert_allclose(conversions.image_to_numpy(as_mm), [[0, 1.234], [2.5, 0.7]], atol=1e-6)
    as_m = conversions.numpy_to_image(depth_m, "32FC1", header)
    np.testing.assert_array_equal(conversions.image_to_numpy(as_m), depth_m)

    with pytest.raises(ValueError):
        conversions.numpy_to_image(RGB, "mono8", header)
    with pytest.raises(ValueError):
        conversions.numpy_to_image(RGB, "bgr16", header)


def test_camera_info_to_K_and_back() -> None:
    K = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    info = conversions.K_to_camera_info(K, 640, 480, Header(frame_id="cam"))
    assert (info.width, info.height, info.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(conversions.camera_info_to_K(info), K)
    np.testing.assert_array_equal(np.reshape(info.p, (3, 4))[:, :3], K)


@pytest.mark.parametrize(
    "k", [np.zeros(9), np.r_[np.nan, 0, 1, 0, 1, 1, 0, 0, 1], np.r_[1, 0, 1, 0, np.inf, 1, 0, 0, 1],
          np.r_[-1, 0, 1, 0, 1, 1, 0, 0, 1]],
    ids=["zeros", "nan", "inf", "negative-fx"],
)
def test_camera_info_to_K_rejects_unusable_intrinsics(k: np.ndarray) -> None:
    info = CameraInfo()
    info.k = [float(x) for x in k]
    with pytest.raises(ValueError, match="camera_info K"):
        conversions.camera_info_to_K(info)


def test_stamp_to_ns() -> None:
    header = Header()
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 999_999_999
    assert conversions.stamp_to_ns(header.stamp) == 1_700_000_000_999_999_999


def rotate(q: Quaternion, vector: np.ndarray) -> np.ndarray:
    """``vector`` rotated by the unit quaternion ``q``."""
    u, w = np.array([q.x, q.y, q.z]), q.w
    return vector + 2.0 * np.cross(u, np.cross(u, vector) + w * vector)


def make_prediction(motion_type: str = "rotation", approach=(0.0, 0.0, 1.0)) -> AffordancePrediction:
    point = np.array([0.1, -0.05, 1.2])
    trajectory = point + np.linspace(0.0, 0.2, 20)[:, None] * np.array([[1.0, 0.0, 0.0]])
    return AffordancePrediction(
        mask=np.pad(np.ones((2, 3), bool), 1),
        mask_score=0.8,
        point_px=(2.0, 1.5),
        point_3d=point,
        approach=np.asarray(approach, float) / np.linalg.norm(approach),
        axis=np.array([0.0, 1.0, 0.0]),
        origin=point + np.array([-0.3, 0.0, 0.0]),
        motion_type=motion_type,
        motion_type_confidence=0.9,
        trajectory=trajectory,
        timings={"preprocess": 1.0, "image": 40.0, "total": 45.0},
        learned_trajectory=trajectory + np.linspace(0.0, 0.01, 20)[:, None] * np.array([[0.0, 1.0, 0.0]]),
        opening_extent=0.2,
        learned_origin=point + np.array([-0.1, 0.02, 0.0]),
    )


@pytest.mark.parametrize("approach", [(0, 0, 1), (0.3, -0.2, 0.9), (0, 0, -1), (1, 0, 0), (0, 1, 0)])
def test_pose_orientation_z_is_the_approach(approach) -> None:
    prediction = make_prediction(approach=approach)
    header = Header(frame_id="cam")
    pose = conversions.prediction_to_pose(prediction, header)
    assert pose.header.frame_id == "cam"
    np.testing.assert_allclose([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z],
                               prediction.point_3d)
    q = pose.pose.orientation
    assert np.linalg.norm([q.x, q.y, q.z, q.w]) == pytest.approx(1.0)
    np.testing.assert_allclose(rotate(q, np.array([0.0, 0.0, 1.0])), prediction.approach, atol=1e-9)


def test_path_has_the_20_trajectory_points() -> None:
    prediction = make_prediction()
    path = conversions.prediction_to_path(prediction, Header(frame_id="cam"))
    assert path.header.frame_id == "cam" and len(path.poses) == 20
    positions = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in path.poses])
    np.testing.assert_allclose(positions, prediction.trajectory)
    assert all(p.header.frame_id == "cam" for p in path.poses)


def test_axis_marker_is_an_arrow_from_the_origin_along_the_axis() -> None:
    prediction = make_prediction()
    marker = conversions.prediction_to_axis_marker(prediction, Header(frame_id="cam"), length_m=0.25)
    assert marker.type == Marker.ARROW and marker.action == Marker.ADD and marker.header.frame_id == "cam"
    start, end = (np.array([p.x, p.y, p.z]) for p in marker.points)
    np.testing.assert_allclose(start, prediction.origin)
    np.testing.assert_allclose(end - start, 0.25 * prediction.axis)


def test_marker_array_holds_axis_trajectory_point_and_label() -> None:
    prediction = make_prediction()
    markers = conversions.prediction_to_markers(prediction, Header(frame_id="cam"), "open the drawer").markers
    assert [m.type for m in markers] == [Marker.ARROW, Marker.LINE_STRIP, Marker.SPHERE, Marker.TEXT_VIEW_FACING]
    assert len({(m.ns, m.id) for m in markers}) == 4
    assert all(m.header.frame_id == "cam" and m.color.a > 0 for m in markers)
    assert len(markers[1].points) == 20
    sphere = markers[2].pose.position
    np.testing.assert_allclose([sphere.x, sphere.y, sphere.z], prediction.point_3d)
    assert "open the drawer" in markers[3].text and "rotation" in markers[3].text
    cleared = conversions.delete_all_markers(Header(frame_id="cam")).markers
    assert [m.action for m in cleared] == [Marker.DELETEALL]


@pytest.mark.parametrize("motion_type, code", [("translation", AffordanceResult.TRANSLATION),
                                               ("rotation", AffordanceResult.ROTATION)])
def test_result_message_holds_everything(motion_type: str, code: int) -> None:
    prediction = make_prediction(motion_type)
    header = Header(frame_id="cam")
    result = conversions.prediction_to_result(prediction, header, "pull the handle")
    assert result.header.frame_id == "cam" and result.instruction == "pull the handle"
    assert (result.mask.height, result.mask.width, result.mask.encoding) == (4, 5, "mono8")
    np.testing.assert_array_equal(np.frombuffer(result.mask.data, np.uint8).reshape(4, 5) > 0, prediction.mask)
    assert result.motion_type == code
    assert (result.interaction_u, result.interaction_v) == (2.0, 1.5)
    assert result.mask_score == pytest.approx(0.8) and result.motion_type_confidence == pytest.approx(0.9)
    np.testing.assert_allclose([result.axis.x, result.axis.y, result.axis.z], prediction.axis)
    np.testing.assert_allclose([result.axis_origin.x, result.axis_origin.y, result.axis_origin.z],
                               prediction.origin)
    np.testing.assert_allclose([result.learned_origin.x, result.learned_origin.y, result.learned_origin.z],
                               prediction.learned_origin)
    assert len(result.trajectory) == 20
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in result.learned_trajectory], prediction.learned_trajectory)
    assert result.opening_extent == pytest.approx(0.2)
    assert result.inference_time_ms == pytest.approx(45.0)
    pose = conversions.prediction_to_pose(prediction, header).pose
    assert result.interaction_pose == pose


# ---- point cloud and transforms ------------------------------------------------------------------------

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])


def test_points_to_cloud_fields_and_bytes() -> None:
    from sensor_msgs.msg import PointField

    points = np.array([[0.1, -0.2, 1.5], [1.0, 2.0, 3.0], [-0.5, 0.25, 0.75]])
    colors = np.array([[255, 0, 0], [0, 128, 255], [1, 2, 3]], dtype=np.uint8)
    header = Header(frame_id="base_link")
    header.stamp.sec, header.stamp.nanosec = 12, 500
    cloud = conversions.points_to_cloud(points, colors, header)
    assert cloud.header == header
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, 3, 16, 48)
    assert cloud.is_dense and not cloud.is_bigendian
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        (name, offset, PointField.FLOAT32, 1) for name, offset in (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))
    ]
    read = np.frombuffer(bytes(cloud.data), dtype=CLOUD_DTYPE)
    np.testing.assert_allclose(np.stack([read["x"], read["y"], read["z"]], axis=1), points, rtol=1e-6)
    assert [hex(value) for value in read["rgb"]] == ["0xff0000", "0x80ff", "0x10203"]  # 0x00RRGGBB


def test_points_to_cloud_reads_back_with_sensor_msgs_py() -> None:
    point_cloud2 = pytest.importorskip(
        "sensor_msgs_py.point_cloud2", reason="sensor_msgs_py is not installed (not on PyPI; a full ROS 2 has it)"
    )
    points = np.array([[0.1, -0.2, 1.5], [1.0, 2.0, 3.0]], dtype=np.float32)
    colors = np.array([[10, 20, 30], [200, 100, 0]], dtype=np.uint8)
    read = point_cloud2.read_points(conversions.points_to_cloud(points, colors, Header()))
    np.testing.assert_allclose(np.stack([read["x"], read["y"], read["z"]], axis=1), points)
    assert read["rgb"].view(np.uint32).tolist() == [0x0A141E, 0xC86400]


def test_empty_cloud_is_valid() -> None:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2

    cloud = conversions.points_to_cloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), Header(frame_id="camera"))
    assert (cloud.height, cloud.width, cloud.row_step, len(cloud.data), len(cloud.fields)) == (1, 0, 0, 0, 4)
    assert deserialize_message(serialize_message(cloud), PointCloud2) == cloud


@pytest.mark.parametrize(
    "points, colors, message",
    [
        (np.zeros((2, 2)), np.zeros((2, 3), np.uint8), r"points_xyz must be an \(N, 3\)"),
        (np.array([[0.0, np.nan, 1.0]]), np.zeros((1, 3), np.uint8), "NaN or inf"),
        (np.zeros((2, 3)), np.zeros((3, 3), np.uint8), "one colour per point"),
        (np.zeros((2, 3)), np.zeros((2, 3), np.float32), "uint8"),
    ],
)
def test_points_to_cloud_refuses_bad_input(points: np.ndarray, colors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        conversions.points_to_cloud(points, colors, Header())


def test_transform_from_msg() -> None:
    from geometry_msgs.msg import TransformStamped

    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = "base_link", "camera_optical_frame"
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = 0.5, -0.1, 1.2
    # 90 degrees about x: y -> z, z -> -y (an optical frame looking down from above)
    msg.transform.rotation.x, msg.transform.rotation.w = np.sin(np.pi / 4), np.cos(np.pi / 4)
    transform = conversions.transform_from_msg(msg)
    np.testing.assert_allclose(transform.rotation, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(transform.apply_points([0.0, 1.0, 2.0]), [0.5, -2.1, 2.2])
    msg.transform.rotation.x, msg.transform.rotation.w = 0.0, 0.0
    with pytest.raises(ValueError, match="zero length"):
        conversions.transform_from_msg(msg)
