"""segaff_ros.target_frame with a real tf2 Buffer fed over DDS by tf2_ros broadcasters (own domain)."""
from __future__ import annotations

import math
import sys
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
tf2_ros = pytest.importorskip(
    "tf2_ros", reason="tf2_ros is not installed (ROS 2: ros-$ROS_DISTRO-tf2-ros-py; .venv: ../shared/ros2-src/install.sh)"
)

from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.time import Time  # noqa: E402

from ros_helpers import spun_node, wait_until  # noqa: E402
from segaff_ros.target_frame import TargetFrameResolver, TransformUnavailable  # noqa: E402

CAMERA = "camera_color_optical_frame"


def make_transform(parent: str, child: str, translation: tuple[float, float, float],
                   quaternion_xyzw: tuple[float, float, float, float], stamp_ns: int = 0) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = translation
    q.x, q.y, q.z, q.w = quaternion_xyzw
    return msg


# base_link <- camera_link: 90 degrees about z (x -> y, y -> -x), then (0.4, -0.1, 1.2)
CAMERA_LINK = make_transform("base_link", "camera_link", (0.4, -0.1, 1.2), (0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)))
# camera_link <- optical frame: REP 103's optical rotation (z forward = x of camera_link, x right = -y, y down = -z)
OPTICAL = make_transform("camera_link", CAMERA, (0.0, 0.02, 0.0), (-0.5, 0.5, -0.5, 0.5))


@pytest.fixture
def node() -> Iterator[Node]:
    """A node in its own context, spun by an executor thread (the resolver's lookups run in the test's)."""
    with spun_node("segaff_test_target_frame") as spun:
        yield spun


@pytest.fixture
def resolver(node: Node) -> Iterator[TargetFrameResolver]:
    resolver = TargetFrameResolver(node, timeout_s=5.0)
    try:
        yield resolver
    finally:
        resolver.close()


def test_lookup_gives_the_broadcast_transform(node: Node, resolver: TargetFrameResolver) -> None:
    broadcaster = tf2_ros.StaticTransformBroadcaster(node)
    broadcaster.sendTransform([CAMERA_LINK])
    transform = resolver.lookup("base_link", "camera_link", Time(seconds=1234, nanoseconds=5))
    np.testing.assert_allclose(transform.rotation, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(transform.translation, [0.4, -0.1, 1.2])
    np.testing.assert_allclose(transform.apply_points([1.0, 2.0, 3.0]), [0.4 - 2.0, -0.1 + 1.0, 1.2 + 3.0])


def test_lookup_chains_the_camera_to_the_robot(node: Node, resolver: TargetFrameResolver) -> None:
    broadcaster = tf2_ros.StaticTransformBroadcaster(node)
    broadcaster.sendTransform([CAMERA_LINK, OPTICAL])
    transform = resolver.lookup("base_link", CAMERA, Time())
    # a point 2 m straight ahead of the camera: camera_link (2, 0.02, 0), base_link (0.4 - 0.02, -0.1 + 2, 1.2)
    np.testing.assert_allclose(transform.apply_points([0.0, 0.0, 2.0]), [0.38, 1.9, 1.2], atol=1e-9)
    # the optical z (forward) is camera_link's x, i.e. base_link's y; optical y (down) is base_link's -z
    np.testing.assert_allclose(transform.apply_vectors([[0, 0, 1], [0, 1, 0]]), [[0, 1, 0], [0, 0, -1]], atol=1e-9)


def test_lookup_is_at_the_stamp(node: Node, resolver: TargetFrameResolver) -> None:
    broadcaster = tf2_ros.TransformBroadcaster(node)
    # /tf is volatile: publish once the listener is matched, or the transforms are lost
    assert wait_until(lambda: broadcaster.pub_tf.get_subscription_count() > 0, 10.0), "the listener never matched"
    start_ns = 1_000 * 1_000_000_000
    identity = (0.0, 0.0, 0.0, 1.0)
    broadcaster.sendTransform([
        make_transform("odom", "moving_camera", (0.0, 0.0, 0.0), identity, start_ns),
        make_transform("odom", "moving_camera", (1.0, 0.0, 0.0), identity, start_ns + 1_000_000_000),
    ])
    transform = resolver.lookup("odom", "moving_camera", Time(nanoseconds=start_ns + 250_000_000))
    np.testing.assert_allclose(transform.translation, [0.25, 0.0, 0.0], atol=1e-9)  # interpolated
    resolver.timeout_s = 0.1
    with pytest.raises(TransformUnavailable, match="extrapolation"):
        resolver.lookup("odom", "moving_camera", Time(nanoseconds=start_ns + 60 * 1_000_000_000))


def test_a_missing_frame_names_both_frames_and_the_fix(resolver: TargetFrameResolver) -> None:
    resolver.timeout_s = 0.2
    with pytest.raises(TransformUnavailable) as raised:
        resolver.lookup("base_link", "nowhere_optical_frame", Time(seconds=12, nanoseconds=5))
    message = str(raised.value)
    for part in ("'nowhere_optical_frame'", "'base_link'", "12.000000005", "/tf_static",
                 "static_transform_publisher --frame-id base_link --child-frame-id nowhere_optical_frame"):
        assert part in message, message


def test_the_same_frame_is_the_identity(resolver: TargetFrameResolver) -> None:
    transform = resolver.lookup(CAMERA, CAMERA, Time(seconds=3))
    np.testing.assert_array_equal(transform.rotation, np.eye(3))
    np.testing.assert_array_equal(transform.translation, np.zeros(3))


def test_timeout_is_validated(resolver: TargetFrameResolver) -> None:
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="tf timeout"):
            resolver.timeout_s = bad
    resolver.timeout_s = 0
    assert resolver.timeout_s == 0.0


def test_close_removes_the_tf_subscriptions(node: Node) -> None:
    resolver = TargetFrameResolver(node, timeout_s=1.0)
    assert {"/tf", "/tf_static"} <= {subscription.topic_name for subscription in node.subscriptions}
    resolver.close()
    resolver.close()  # a second close does nothing
    assert not {"/tf", "/tf_static"} & {subscription.topic_name for subscription in node.subscriptions}


def test_without_tf2_ros_a_clear_runtime_error(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # import tf2_ros -> ImportError
    with pytest.raises(RuntimeError, match="target_frame needs tf2_ros.*install"):
        TargetFrameResolver(node, timeout_s=1.0)
