"""The node's camera inputs over DDS, through both synchronisers: message_filters and the package's own."""
from __future__ import annotations

import threading
from typing import Any, Iterator

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from ros_helpers import FrameSpec, wait_until  # noqa: E402
from segaff_ros import camera_inputs  # noqa: E402
from segaff_ros.conversions import stamp_to_ns  # noqa: E402

pytestmark = pytest.mark.ros

PATHS = [
    pytest.param(True, id="message_filters", marks=pytest.mark.skipif(
        camera_inputs.message_filters is None, reason="message_filters is not installed")),
    pytest.param(False, id="own-synchronizer"),
]


@pytest.fixture
def nodes() -> Iterator[tuple[Any, Any]]:
    """A subscribing node and a publishing node in one context, spun in a thread."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    subscriber = rclpy.create_node("segaff_inputs_under_test", context=context)
    publisher = rclpy.create_node("segaff_inputs_camera", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(subscriber)
    executor.add_node(publisher)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield subscriber, publisher
    finally:
        executor.shutdown()
        subscriber.destroy_node()
        publisher.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=10.0)


@pytest.mark.parametrize("use_message_filters", PATHS)
def test_matched_sets_come_out_and_destroy_unsubscribes(nodes: tuple[Any, Any], use_message_filters: bool) -> None:
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.qos import QoSProfile

    subscriber, camera = nodes
    sets: list[tuple[int, int, int]] = []
    counted: list[str] = []
    inputs = camera_inputs.SynchronizedCameraInputs(
        subscriber, "reliable", 10, 0.05,
        lambda rgb, depth, info: sets.append(tuple(stamp_to_ns(m.header.stamp) for m in (rgb, depth, info))),
        counted.append, MutuallyExclusiveCallbackGroup(), use_message_filters=use_message_filters,
    )
    assert inputs.implementation == ("message_filters" if use_message_filters else "own synchronizer")
    publishers = {topic: camera.create_publisher(msg_type, topic, QoSProfile(depth=5))
                  for topic, msg_type in camera_inputs.INPUT_TOPICS}
    assert wait_until(lambda: all(p.get_subscription_count() == 1 for p in publishers.values()), 10.0)
    stamps = []
    for offset in range(4):
        stamp_ns = camera.get_clock().now().nanoseconds
        stamps.append(stamp_ns)
        messages = FrameSpec().messages(stamp_ns)
        for topic, msg in (messages if offset % 2 else reversed(messages)):  # any arrival order
            publishers[topic].publish(msg)
        wait_until(lambda: len(sets) > offset, 5.0)
    assert sets == [(s, s, s) for s in stamps]
    assert sorted(set(counted)) == sorted(topic for topic, _ in camera_inputs.INPUT_TOPICS)
    assert len(counted) == 12

    inputs.destroy()
    assert wait_until(lambda: all(p.get_subscription_count() == 0 for p in publishers.values()), 10.0)


@pytest.mark.parametrize("use_message_filters", PATHS)
def test_clear_unblocks_inputs_stalled_by_future_stamps(nodes: tuple[Any, Any], use_message_filters: bool) -> None:
    """Two RGB images stamped 11 days ahead fill message_filters' RGB queue (size 2, kept by stamp): every
    new RGB image is then dropped on arrival. After clear() the next frames synchronize again."""
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.qos import QoSProfile

    subscriber, camera = nodes
    sets: list[int] = []
    counted: list[str] = []
    inputs = camera_inputs.SynchronizedCameraInputs(
        subscriber, "reliable", 2, 0.05, lambda rgb, depth, info: sets.append(stamp_to_ns(rgb.header.stamp)),
        counted.append, MutuallyExclusiveCallbackGroup(), use_message_filters=use_message_filters,
    )
    publishers = {topic: camera.create_publisher(msg_type, topic, QoSProfile(depth=5))
                  for topic, msg_type in camera_inputs.INPUT_TOPICS}
    assert wait_until(lambda: all(p.get_subscription_count() == 1 for p in publishers.values()), 10.0)

    def send(stamp_ns: int, topics: tuple[str, ...] = tuple(publishers)) -> None:
        for topic, msg in FrameSpec().messages(stamp_ns):
            if topic in topics:
                publishers[topic].publish(msg)

    future_ns = camera.get_clock().now().nanoseconds + 10**6 * 10**9
    for offset in range(2):
        send(future_ns + offset * 10**9, ("rgb/image",))
    assert wait_until(lambda: len(counted) == 2, 5.0)

    def sets_after(count: int) -> list[int]:
        stamps = []
        for _ in range(count):
            stamps.append(camera.get_clock().now().nanoseconds)
            send(stamps[-1])
            wait_until(lambda: bool(set(sets) & set(stamps)), 0.5)
        return sorted(set(sets) & set(stamps))

    if use_message_filters:  # the stall this guards against: message_filters drops each new RGB image
        assert sets_after(3) == []
    inputs.clear()
    assert sets_after(3), "no set synchronized after clear()"
    inputs.destroy()
