"""The perception node spun in the test process beside a helper node (one context, one executor thread).

Faster than a node process (no start-up of a second Python, the small checkpoint at 64 x 64, the torch
back-end) and the node's internals stay reachable; traffic between the two nodes still goes through DDS.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ros_helpers import FrameSpec, wait_until

NAMESPACE = "in_process"
NODE = f"/{NAMESPACE}/segaff_perception"


class SpunNode:
    """``node`` (PerceptionNode, ``autostart`` false unless overridden) and ``helper`` (a plain node) spun by a
    SingleThreadedExecutor in a thread, as the node's ``main`` spins it. ``record(topic, type)`` subscribes the
    helper and keeps the messages."""

    def __init__(self, small_checkpoint: Path, **overrides: Any) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter

        from segaff_ros.perception_node import PerceptionNode

        values = {"checkpoint": str(small_checkpoint), "device": "cpu", "input_height": 64, "input_width": 64,
                  "backend": "torch", "cpu_threads": 1, "autostart": False, **overrides}
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = PerceptionNode(context=self.context, namespace=NAMESPACE,
                                   parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        self.helper = rclpy.create_node("segaff_test_helper", context=self.context)
        self._lock = threading.Lock()
        self.received: dict[str, list[Any]] = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.helper)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def record(self, topic: str, msg_type: type) -> None:
        """Keep every message on ``topic`` (relative names: under the perception node)."""
        name = topic if topic.startswith("/") else f"{NODE}/{topic}"
        self.received.setdefault(topic, [])

        def keep(msg: Any) -> None:
            with self._lock:
                self.received[topic].append(msg)

        self.helper.create_subscription(msg_type, name, keep, 10)

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return list(self.received[topic])

    def wait_for(self, topic: str, count: int = 1, timeout_s: float = 20.0) -> list[Any]:
        """At least ``count`` messages on ``topic`` (AssertionError after ``timeout_s``)."""
        assert wait_until(lambda: len(self.messages(topic)) >= count, timeout_s), f"no message on {topic}"
        return self.messages(topic)

    def wait_connected(self, topics: list[str], timeout_s: float = 10.0) -> None:
        """Until the node's publishers of ``topics`` see the helper's subscriptions."""
        def connected() -> bool:
            return all(self.node.count_subscribers(f"{NODE}/{t}") > 0 for t in topics)
        assert wait_until(connected, timeout_s), f"the helper does not subscribe to {topics}"

    def frame(self, spec: Optional[FrameSpec] = None) -> Any:
        """A Frame of ``spec`` stamped now."""
        from segaff_ros.frame_input import Frame

        stamp_ns = self.node.get_clock().now().nanoseconds
        messages = dict((spec or FrameSpec()).messages(stamp_ns))
        return Frame(messages["rgb/image"], messages["depth/image"], messages["rgb/camera_info"], stamp_ns)

    def feed(self, rate_hz: float, spec: Optional[FrameSpec] = None) -> "Feeder":
        """Hand synchronized frames (stamped now) to the node at ``rate_hz``, as its synchronizer would."""
        return Feeder(self, rate_hz, spec)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.helper.destroy_node()
        self.context.try_shutdown()
        self._spinner.join(timeout=10.0)


class Feeder:
    """A thread calling the node's synchronized-frame callback at a rate; a context manager."""

    def __init__(self, spun: SpunNode, rate_hz: float, spec: Optional[FrameSpec]) -> None:
        self.stamps: list[int] = []
        self._spun, self._period_s, self._spec = spun, 1.0 / rate_hz, spec
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self._spun.frame(self._spec)
            self.stamps.append(frame.stamp_ns)
            self._spun.node._on_synchronized(frame.rgb, frame.depth, frame.camera_info)
            self._stop.wait(self._period_s)

    def __enter__(self) -> "Feeder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)


def call_service(helper: Any, srv_type: type, name: str, request: Any, timeout_s: float = 20.0) -> Any:
    """Call a service from the helper node (spun elsewhere) and return the response."""
    client = helper.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout_s), f"{name} is not offered"
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout_s), f"{name} did not answer within {timeout_s} s"
        return future.result()
    finally:
        helper.destroy_client(client)


def call_until_answered(send: Callable[[], Any], timeout_s: float, resend_after_s: float = 10.0) -> Any:
    """The result of the future ``send()`` returns, sending again when ``resend_after_s`` passes unanswered (for
    idempotent requests: on a loaded machine a request sent just after discovery can go unanswered)."""
    deadline = time.monotonic() + timeout_s
    while True:
        future = send()
        until = min(deadline, time.monotonic() + resend_after_s)
        while not future.done() and time.monotonic() < until:
            time.sleep(0.02)
        if future.done():
            return future.result()
        assert time.monotonic() < deadline, f"no answer within {timeout_s} s"


def lifecycle_state(helper: Any) -> str:
    """The perception node's state as ``ros2 lifecycle get`` reads it (lifecycle_msgs/GetState)."""
    from lifecycle_msgs.srv import GetState

    return call_service(helper, GetState, f"{NODE}/get_state", GetState.Request()).current_state.label


def poll(condition: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    value = wait_until(condition, timeout_s)
    assert value, "condition not met in time"
    return value
