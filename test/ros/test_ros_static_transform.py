"""The demo's static transform base_link -> camera optical frame: its rotation, and /tf_static through tf2_ros or
through a plain tf2_msgs publisher (read back with a tf2 Buffer, as the perception node reads it)."""
from __future__ import annotations

import sys
import threading
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
tf2_ros = pytest.importorskip("tf2_ros", reason="tf2_ros is not installed (../shared/ros2-src/install.sh)")

from ros_helpers import wait_until  # noqa: E402
from segaff_core.frames import RigidTransform  # noqa: E402
from segaff_ros.conversions import transform_from_msg  # noqa: E402
from segaff_ros.static_transform import StaticTransformPublisher, optical_frame_rotation, transform_msg  # noqa: E402

pytestmark = pytest.mark.ros


def test_optical_frame_looks_forward_and_down_with_image_right_to_the_right() -> None:
    pitch = np.radians(20.0)
    rotation = optical_frame_rotation(pitch)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation @ [0, 0, 1], [np.cos(pitch), 0.0, -np.sin(pitch)], atol=1e-12)  # optical z
    np.testing.assert_allclose(rotation @ [1, 0, 0], [0.0, -1.0, 0.0], atol=1e-12)  # image right = robot's right
    assert (rotation @ [0, 1, 0])[2] < 0, "image down must point down"


@pytest.fixture
def nodes() -> Iterator[tuple[object, object]]:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    camera = rclpy.create_node("segaff_static_camera", context=context)
    reader = rclpy.create_node("segaff_static_reader", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(camera)
    executor.add_node(reader)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield camera, reader
    finally:
        executor.shutdown()
        camera.destroy_node()
        reader.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=10.0)


@pytest.mark.parametrize("method", ["tf2_ros", "tf2_msgs"])
def test_static_transform_reaches_a_late_tf2_listener(
    nodes: tuple[object, object], method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rclpy.time

    camera, reader = nodes
    if method == "tf2_msgs":
        monkeypatch.setitem(sys.modules, "tf2_ros", None)  # as where tf2_ros is not importable
    rotation, translation = optical_frame_rotation(np.radians(15.0)), np.array([0.1, -0.2, 1.0])
    publisher = StaticTransformPublisher(camera, transform_msg("base_link", "camera_optical", translation,
                                                               rotation, camera))
    assert publisher.method == method
    monkeypatch.undo()
    buffer = tf2_ros.Buffer()
    listener = tf2_ros.TransformListener(buffer, reader)  # subscribes after the transform was sent
    try:
        assert wait_until(lambda: buffer.can_transform("base_link", "camera_optical", rclpy.time.Time()), 10.0)
        received = transform_from_msg(buffer.lookup_transform("base_link", "camera_optical", rclpy.time.Time()))
    finally:
        listener.unregister()
    expected = RigidTransform(rotation, translation)
    np.testing.assert_allclose(received.rotation, expected.rotation, atol=1e-9)
    np.testing.assert_allclose(received.translation, expected.translation, atol=1e-9)
