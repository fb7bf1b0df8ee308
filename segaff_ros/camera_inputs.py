"""The node's camera inputs: ``rgb/image``, ``depth/image`` and ``rgb/camera_info``, approximate-time synchronized.

Through ``message_filters.ApproximateTimeSynchronizer`` where the ROS 2 package is importable, through the
package's own :class:`~segaff_ros.synchronizer.ApproximateTimeSynchronizer` (same policy) elsewhere.
Created when the node activates, destroyed when it deactivates.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from segaff_ros import conversions
from segaff_ros.synchronizer import ApproximateTimeSynchronizer

try:  # the ROS 2 package where installed; the package's own synchronizer.py (same policy) elsewhere
    import message_filters
except ImportError:
    message_filters = None

#: Synchronized inputs, in the order the synchronizer hands them over.
INPUT_TOPICS: tuple[tuple[str, type], ...] = (
    ("rgb/image", Image),
    ("depth/image", Image),
    ("rgb/camera_info", CameraInfo),
)
RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


class SynchronizedCameraInputs:
    """Subscribes ``node`` to the three camera inputs; ``on_synchronized(rgb, depth, camera_info)`` gets each
    matched set and ``on_message(topic)`` every single message (to tell "nothing arrives" from "nothing
    synchronizes"). ``use_message_filters`` None: message_filters when importable."""

    def __init__(
        self,
        node: Node,
        image_qos: str,
        queue_size: int,
        slop_s: float,
        on_synchronized: Callable[[Image, Image, CameraInfo], None],
        on_message: Callable[[str], None],
        callback_group: CallbackGroup,
        use_message_filters: Optional[bool] = None,
    ) -> None:
        self._node = node
        self._on_message = on_message
        self._subscriptions: list[Any] = []
        self._synchronizer: Optional[ApproximateTimeSynchronizer[Any]] = None
        self._filter: Any = None
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=RELIABILITIES[image_qos])
        if use_message_filters is None:
            use_message_filters = message_filters is not None
        if use_message_filters:
            if message_filters is None:
                raise RuntimeError("message_filters is not importable")
            subscribers = []
            for topic, msg_type in INPUT_TOPICS:
                subscriber = message_filters.Subscriber(node, msg_type, topic, qos_profile=qos,
                                                        callback_group=callback_group)
                subscriber.registerCallback(partial(self._count, topic))
                subscribers.append(subscriber)
                self._subscriptions.append(subscriber.sub)
            self._filter = message_filters.ApproximateTimeSynchronizer(subscribers, queue_size, slop_s)
            self._filter.registerCallback(on_synchronized)
            self.implementation = "message_filters"
            return
        self._synchronizer = ApproximateTimeSynchronizer(len(INPUT_TOPICS), queue_size, slop_s, on_synchronized)
        for index, (topic, msg_type) in enumerate(INPUT_TOPICS):
            self._subscriptions.append(node.create_subscription(
                msg_type, topic, partial(self._add, index, topic), qos, callback_group=callback_group
            ))
        self.implementation = "own synchronizer"

    def _count(self, topic: str, msg: Any) -> None:
        """One message on ``topic`` (message_filters path)."""
        self._on_message(topic)

    def _add(self, index: int, topic: str, msg: Any) -> None:
        """One message for the package's own synchronizer."""
        self._on_message(topic)
        self._synchronizer.add(index, conversions.stamp_to_ns(msg.header.stamp), msg)

    def clear(self) -> None:
        """Drop every queued message, so that synchronisation starts afresh.

        message_filters keeps each input's newest ``queue_size`` messages by stamp: once an input's queue
        holds that many stamps later than the camera's (a corrupt stamp, a clock that jumped back), every
        new message is dropped on arrival and no set is emitted again until the camera's clock passes them.
        The node calls this when inputs arrive but none synchronize for a while.
        """
        if self._filter is not None:
            with self._filter.lock:
                for queue in self._filter.queues:
                    queue.clear()
        if self._synchronizer is not None:
            self._synchronizer.clear()

    def destroy(self) -> None:
        """Unsubscribe from the camera topics (idempotent)."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []
