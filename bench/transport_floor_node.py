"""A stand-in for the perception node without a model: the transport floor of ``node_latency.py --floor``.

It subscribes to the node's inputs (``rgb/image``, ``depth/image``, ``rgb/camera_info``, ``instruction``) with
the node's QoS and, for each RGB stamp whose three messages have arrived, publishes on
``/segaff_perception/result`` an ``AffordanceResult`` carrying a mono8 mask of the image's size, as the node
does, spun by a single-threaded executor (the lightest of rclpy's), with the node's malloc settings
(:mod:`segaff_ros.frame_memory`). What it costs per frame is what any node in Python
pays to receive a 640x480 RGB-D frame and answer over DDS: the least the perception node can add to its model.

    .venv/bin/python bench/transport_floor_node.py   # started by node_latency.py --floor
"""
from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from segaff_msgs.msg import AffordanceResult
from segaff_ros.frame_memory import keep_frame_buffers_mapped
from segaff_ros.spinning import spin_until_shutdown

_INPUTS = (("rgb/image", Image), ("depth/image", Image), ("rgb/camera_info", CameraInfo))


class TransportFloorNode(Node):
    """Answers every complete RGB-D frame at once with a result of the node's size."""

    def __init__(self) -> None:
        super().__init__("segaff_perception")
        self._pending: dict[tuple[int, int], dict[str, Any]] = {}
        qos = QoSProfile(depth=5)
        for topic, msg_type in _INPUTS:
            self.create_subscription(msg_type, topic, lambda msg, topic=topic: self._on_input(topic, msg), qos)
        self.create_subscription(String, "instruction", lambda _: None, 10)
        self._result = self.create_publisher(AffordanceResult, "~/result", 10)

    def _on_input(self, topic: str, msg: Any) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        frame = self._pending.setdefault(stamp, {})
        frame[topic] = msg
        if len(frame) < len(_INPUTS):
            return
        del self._pending[stamp]
        for older in [s for s in self._pending if s < stamp]:
            del self._pending[older]
        rgb = frame["rgb/image"]
        result = AffordanceResult(header=rgb.header, instruction="transport floor")
        result.mask = Image(header=rgb.header, height=rgb.height, width=rgb.width, encoding="mono8",
                            step=rgb.width, data=bytes(rgb.width * rgb.height))
        self._result.publish(result)


def main() -> int:
    keep_frame_buffers_mapped()  # as the node does
    rclpy.init()
    node = TransportFloorNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
