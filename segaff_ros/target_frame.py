"""The transform from the camera's optical frame to the node's ``target_frame``, looked up with tf2.

tf2_ros is imported when a :class:`TargetFrameResolver` is made (only a node with a ``target_frame``
needs it), so the package imports without it.
"""
from __future__ import annotations

import math
from typing import Any

import rclpy.node
import rclpy.time
from rclpy.duration import Duration

from segaff_core.frames import RigidTransform
from segaff_ros.conversions import transform_from_msg

_TF2_MISSING = (
    "target_frame needs tf2_ros, which is not importable here: on a ROS 2 install "
    "`sudo apt install ros-$ROS_DISTRO-tf2-ros-py`; in the project's .venv run "
    "`../shared/ros2-src/install.sh .venv` (or leave target_frame '' to output in the camera frame)"
)


class TransformUnavailable(Exception):
    """tf2 has no ``target <- source`` transform at the image stamp (within the timeout)."""


class TargetFrameResolver:
    """Looks up target <- source transforms with a tf2_ros Buffer + TransformListener (created on the given node).

    The listener's subscriptions (``/tf``, ``/tf_static``) are served by whatever executor spins ``node``;
    :meth:`lookup` waits up to ``timeout_s`` for a transform, so call it from another thread than that
    executor's (e.g. the node's worker), or set ``timeout_s`` to 0 (no waiting).
    """

    def __init__(self, node: rclpy.node.Node, timeout_s: float) -> None:
        try:
            import tf2_ros
        except ImportError as error:
            raise RuntimeError(f"{_TF2_MISSING} ({error})") from None
        self.timeout_s = timeout_s
        self._transform_exception: type[Exception] = tf2_ros.TransformException
        self._buffer: Any = tf2_ros.Buffer()
        self._listener: Any = tf2_ros.TransformListener(self._buffer, node)
        self._closed = False

    @property
    def timeout_s(self) -> float:
        """Seconds :meth:`lookup` waits for a transform not yet received (0: no waiting)."""
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0.0:
            raise ValueError(f"tf timeout must be a finite number of seconds >= 0, got {value}")
        self._timeout_s = value

    def lookup(self, target_frame: str, source_frame: str, stamp: rclpy.time.Time) -> RigidTransform:
        """The transform mapping ``source_frame`` coordinates into ``target_frame`` at ``stamp`` (the
        identity when both are the same frame); TransformUnavailable when tf2 cannot give it in time."""
        if target_frame == source_frame:
            return RigidTransform.identity()
        try:
            msg = self._buffer.lookup_transform(
                target_frame, source_frame, stamp, timeout=Duration(nanoseconds=int(self._timeout_s * 1e9))
            )
        except self._transform_exception as error:
            seconds, nanoseconds = divmod(stamp.nanoseconds, 1_000_000_000)
            reason = str(error).strip().rstrip(".")
            raise TransformUnavailable(
                f"no transform from '{source_frame}' to '{target_frame}' at stamp {seconds}.{nanoseconds:09d} s "
                f"(waited {self._timeout_s:g} s): {reason}. Publish the transforms linking '{target_frame}' to "
                f"'{source_frame}' on /tf or /tf_static (robot_state_publisher; for a fixed camera `ros2 run "
                f"tf2_ros static_transform_publisher --frame-id {target_frame} --child-frame-id {source_frame} "
                f"...`), or set target_frame to '' for outputs in the camera frame"
            ) from None
        return transform_from_msg(msg)

    def close(self) -> None:
        """Stop listening: destroys the listener's /tf and /tf_static subscriptions (idempotent)."""
        if not self._closed:
            self._listener.unregister()
            self._closed = True
