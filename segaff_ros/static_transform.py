"""One static transform on ``/tf_static``, as ``tf2_ros``' ``static_transform_publisher`` would publish it.

Through ``tf2_ros.StaticTransformBroadcaster`` where importable; else a ``tf2_msgs/TFMessage`` publisher with
the transient-local QoS of ``/tf_static`` (late subscribers such as RViz still get it); else nothing, with a
warning (the PyPI set-up has neither unless ``../shared/ros2-src/install.sh`` ran).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from segaff_core.geometry import quaternion_from_matrix

#: Rotation parent <- optical frame of a camera looking along the parent's +x (REP 103: optical z forward,
#: x right, y down; parent x forward, y left, z up).
_OPTICAL_IN_PARENT = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def optical_frame_rotation(pitch_down_rad: float) -> np.ndarray:
    """Rotation parent <- optical frame of a camera looking along the parent's +x, pitched down by the angle."""
    c, s = math.cos(pitch_down_rad), math.sin(pitch_down_rad)
    pitch = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # about +y: positive tilts +x down
    return pitch @ _OPTICAL_IN_PARENT


def transform_msg(parent_frame: str, child_frame: str, translation_m: np.ndarray, rotation: np.ndarray,
                  node: Node) -> TransformStamped:
    """``parent_frame <- child_frame`` as a TransformStamped stamped now."""
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent_frame, child_frame
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in translation_m
    )
    x, y, z, w = quaternion_from_matrix(rotation)
    msg.transform.rotation.x, msg.transform.rotation.y = float(x), float(y)
    msg.transform.rotation.z, msg.transform.rotation.w = float(z), float(w)
    return msg


class StaticTransformPublisher:
    """Publishes ``msg`` on /tf_static once (latched); ``method`` says how (None: it could not)."""

    def __init__(self, node: Node, msg: TransformStamped) -> None:
        self._keep: Optional[Any] = None
        self.method: Optional[str] = None
        try:
            from tf2_ros import StaticTransformBroadcaster
        except ImportError:
            pass
        else:
            self._keep = StaticTransformBroadcaster(node)
            self._keep.sendTransform(msg)
            self.method = "tf2_ros"
            return
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            node.get_logger().warning(
                f"neither tf2_ros nor tf2_msgs is importable: the transform {msg.header.frame_id} -> "
                f"{msg.child_frame_id} is not published"
            )
            return
        qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        self._keep = node.create_publisher(TFMessage, "/tf_static", qos)
        self._keep.publish(TFMessage(transforms=[msg]))
        self.method = "tf2_msgs"
