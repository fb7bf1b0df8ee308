"""Outputs in ``target_frame`` through tf2, the missing-transform path, and ``~/part_points``, in this process.

A static transform that rotates and translates (published with tf2_ros' StaticTransformBroadcaster) links
``base_link`` to the test camera's optical frame; the model is deterministic, so the same frame processed
with ``target_frame`` '' and ``base_link`` gives the camera-frame prediction and its transform, which every
published 3D output is checked against, value by value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")
tf2_ros = pytest.importorskip("tf2_ros", reason="tf2_ros is not installed (../shared/ros2-src/install.sh)")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from nav_msgs.msg import Path as PathMsg  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from in_process import SpunNode, poll  # noqa: E402
from ros_helpers import FrameSpec  # noqa: E402
from segaff_core.frames import masked_points  # noqa: E402
from segaff_msgs.msg import AffordanceResult  # noqa: E402
from segaff_ros.frame_input import decode_frame  # noqa: E402

pytestmark = pytest.mark.ros

CAMERA_FRAME = FrameSpec().frame_id
TARGET_FRAME = "base_link"
INSTRUCTION = "open the top drawer"
# base_link <- camera: 120 degrees about a tilted axis, and a translation
_AXIS = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
_ANGLE = np.radians(120.0)
QUATERNION_XYZW = np.array([*(np.sin(_ANGLE / 2) * _AXIS), np.cos(_ANGLE / 2)])
TRANSLATION_M = np.array([0.4, -1.3, 2.1])
OUTPUTS = {"interaction_pose": PoseStamped, "axis_marker": Marker, "trajectory": PathMsg, "markers": MarkerArray,
           "result": AffordanceResult, "part_points": PointCloud2, "mask": Image}


def rotation_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


ROTATION = rotation_matrix(QUATERNION_XYZW)


def to_base(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ ROTATION.T + TRANSLATION_M


@pytest.fixture
def spun(small_checkpoint: Path) -> Iterator[SpunNode]:
    spun = SpunNode(small_checkpoint, cloud_stride=3)
    broadcaster = tf2_ros.StaticTransformBroadcaster(spun.helper)
    transform = TransformStamped()
    transform.header.frame_id, transform.child_frame_id = TARGET_FRAME, CAMERA_FRAME
    transform.header.stamp = spun.helper.get_clock().now().to_msg()
    t, q = transform.transform.translation, transform.transform.rotation
    t.x, t.y, t.z = (float(v) for v in TRANSLATION_M)
    q.x, q.y, q.z, q.w = (float(v) for v in QUATERNION_XYZW)
    broadcaster.sendTransform(transform)
    for topic, msg_type in OUTPUTS.items():
        spun.record(topic, msg_type)
    spun.record("/diagnostics", DiagnosticArray)
    try:
        yield spun
    finally:
        spun.close()


def activate(spun: SpunNode) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    node = spun.node
    if node._predictor is None:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    spun.wait_connected(list(OUTPUTS))


def vec(p: Any) -> np.ndarray:
    return np.array([p.x, p.y, p.z])


def z_axis(q: Any) -> np.ndarray:
    return rotation_matrix(np.array([q.x, q.y, q.z, q.w]))[:, 2]


def cloud_xyz_rgb(cloud: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(bytes(cloud.data), dtype=np.dtype({"names": ["x", "y", "z", "rgb"],
                                                           "formats": ["<f4"] * 4, "itemsize": cloud.point_step}))
    packed = data["rgb"].view("<u4")
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float64), rgb


def test_every_3d_output_is_in_the_target_frame_value_by_value(spun: SpunNode) -> None:
    activate(spun)
    node = spun.node
    frame = spun.frame()
    camera = node._run_frame(frame, INSTRUCTION).prediction  # target_frame '': the camera frame
    assert camera.valid_3d
    assert node.set_parameters([Parameter("target_frame", value=TARGET_FRAME)])[0].successful
    node._process(frame, INSTRUCTION)
    messages = {topic: spun.wait_for(topic)[-1] for topic in OUTPUTS}

    pose = messages["interaction_pose"]
    assert pose.header.frame_id == TARGET_FRAME and pose.header.stamp == frame.rgb.header.stamp
    np.testing.assert_allclose(vec(pose.pose.position), to_base(camera.point_3d), atol=1e-5)
    np.testing.assert_allclose(z_axis(pose.pose.orientation), ROTATION @ camera.approach, atol=1e-5)

    result = messages["result"]
    assert result.header.frame_id == TARGET_FRAME
    np.testing.assert_allclose(vec(result.interaction_pose.position), to_base(camera.point_3d), atol=1e-5)
    np.testing.assert_allclose(vec(result.axis), ROTATION @ camera.axis, atol=1e-5)
    np.testing.assert_allclose(vec(result.axis_origin), to_base(camera.origin), atol=1e-5)
    np.testing.assert_allclose(vec(result.learned_origin), to_base(camera.learned_origin), atol=1e-5)
    np.testing.assert_allclose([vec(p) for p in result.trajectory], to_base(camera.trajectory), atol=1e-5)
    assert (result.interaction_u, result.interaction_v) == pytest.approx(camera.point_px, abs=1e-3)
    assert result.mask.header.frame_id == CAMERA_FRAME, "the mask stays an image of the camera"
    assert messages["mask"].header.frame_id == CAMERA_FRAME

    path = messages["trajectory"]
    assert path.header.frame_id == TARGET_FRAME
    np.testing.assert_allclose([vec(p.pose.position) for p in path.poses], to_base(camera.trajectory), atol=1e-5)
    arrow = messages["axis_marker"]
    assert arrow.header.frame_id == TARGET_FRAME
    start, end = (vec(p) for p in arrow.points)
    np.testing.assert_allclose(start, to_base(camera.origin), atol=1e-5)
    np.testing.assert_allclose(end - start, node._params.axis_marker_length_m * (ROTATION @ camera.axis), atol=1e-5)
    markers = messages["markers"].markers
    assert all(m.header.frame_id == TARGET_FRAME for m in markers)
    np.testing.assert_allclose(vec(markers[2].pose.position), to_base(camera.point_3d), atol=1e-5)

    cloud = messages["part_points"]
    assert cloud.header.frame_id == TARGET_FRAME
    decoded = decode_frame(frame, node._params.min_depth_m, node._params.max_depth_m)
    expected_xyz, expected_rgb = masked_points(camera.mask, decoded.depth_m, decoded.K, decoded.rgb, 3,
                                               node._params.min_depth_m, node._params.max_depth_m)
    xyz, rgb = cloud_xyz_rgb(cloud)
    assert len(xyz) == len(expected_xyz) > 0
    np.testing.assert_allclose(xyz, to_base(expected_xyz), atol=1e-4)
    np.testing.assert_array_equal(rgb, expected_rgb)

    response = node._run_frame(frame, INSTRUCTION).result()  # what ~/query and ~/perceive answer
    assert response.header.frame_id == TARGET_FRAME
    np.testing.assert_allclose(vec(response.axis_origin), to_base(camera.origin), atol=1e-5)


def test_part_points_in_the_camera_frame_follow_cloud_stride(spun: SpunNode) -> None:
    activate(spun)
    node = spun.node
    frame = spun.frame(FrameSpec(depth_encoding="32FC1", depth_scale=2))
    for stride in (3, 1):
        assert node.set_parameters([Parameter("cloud_stride", value=stride)])[0].successful
        count = len(spun.messages("part_points"))
        node._process(frame, INSTRUCTION)
        cloud = spun.wait_for("part_points", count + 1)[-1]
        assert cloud.header.frame_id == CAMERA_FRAME
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
        prediction = node._run_frame(frame, INSTRUCTION).prediction
        decoded = decode_frame(frame, node._params.min_depth_m, node._params.max_depth_m)
        expected_xyz, expected_rgb = masked_points(prediction.mask, decoded.depth_m, decoded.K, decoded.rgb, stride,
                                                   node._params.min_depth_m, node._params.max_depth_m)
        xyz, rgb = cloud_xyz_rgb(cloud)
        np.testing.assert_allclose(xyz, expected_xyz, atol=1e-6)
        np.testing.assert_array_equal(rgb, expected_rgb)
        plane = FrameSpec().plane
        assert max(plane.distance_to(p) for p in xyz) < 0.01, "the points are not on the depth surface"


def test_missing_transform_skips_the_frame_warns_and_counts_it(
    spun: SpunNode, capfd: pytest.CaptureFixture[str]
) -> None:
    activate(spun)
    node = spun.node
    assert node.set_parameters([Parameter("target_frame", value="odom"),
                                Parameter("tf_timeout_s", value=0.0)])[1].successful
    node._process(spun.frame(), INSTRUCTION)
    node._process(spun.frame(), INSTRUCTION)
    assert node._stats.snapshot().dropped_no_transform == 2
    log = capfd.readouterr().err
    assert log.count(f"no transform from '{CAMERA_FRAME}' to 'odom'") == 1, "not warned once (throttled)"
    assert "static_transform_publisher" in log
    assert spun.messages("result") == [] and spun.messages("mask") == []

    node._process(spun.frame(), INSTRUCTION)
    node._on_diagnostics_timer()

    def warned() -> Any:
        for array in spun.messages("/diagnostics"):
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if values.get("dropped_no_transform") == "3":
                    return status
        return None

    status = poll(warned)
    assert status.level == DiagnosticStatus.WARN and "without a transform" in status.message
