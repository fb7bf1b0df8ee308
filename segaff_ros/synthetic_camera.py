"""``synthetic_camera``: an RGB-D camera on a procedural articulated-furniture scene, for demos and tests.

Publishes ``rgb/image`` (rgb8), ``depth/image`` (16UC1 millimetres or 32FC1 metres) and
``rgb/camera_info`` with one stamp and one frame_id per frame, at ``rate_hz``. The scene of ``seed`` is
rendered from ``num_views`` viewpoints at start-up (``segaff_core.synth``); the camera dwells
``view_hold_s`` on each and cycles through them. With ``publish_instruction`` the description of a part
visible in the current view is published on ``instruction`` once a second, so the perception node has
something to do without a user.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from segaff_core.synth.sample import SceneSample, scene_views
from segaff_ros import conversions

NODE_NAME = "synthetic_camera"
_DEPTH_ENCODINGS = ("16UC1", "32FC1")


class SyntheticCamera(Node):
    """Cycles through pre-rendered views of one synthetic scene, publishing them as a ROS camera."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._seed: int = self._declare("seed", 0, "scene seed (the same seed, the same scene)",
                                        integer_range=[IntegerRange(from_value=0, to_value=2**31 - 1, step=1)])
        self._width: int = self._declare("width", 320, "image width, px",
                                         integer_range=[IntegerRange(from_value=32, to_value=1920, step=1)])
        self._height: int = self._declare("height", 240, "image height, px",
                                          integer_range=[IntegerRange(from_value=32, to_value=1080, step=1)])
        rate_hz: float = self._declare("rate_hz", 10.0, "frames per second",
                                       floating_point_range=[FloatingPointRange(from_value=0.1, to_value=60.0)])
        self._depth_encoding: str = self._declare("depth_encoding", "16UC1", "16UC1 (mm) | 32FC1 (m)")
        self._frame_id: str = self._declare("frame_id", "camera_color_optical_frame", "frame_id of all three")
        num_views: int = self._declare("num_views", 6, "viewpoints rendered at start-up and cycled",
                                       integer_range=[IntegerRange(from_value=1, to_value=100, step=1)])
        self._view_hold_s: float = self._declare(
            "view_hold_s", 3.0, "seconds on each viewpoint",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=3600.0)],
        )
        self._publish_instruction: bool = self._declare(
            "publish_instruction", False, "publish a visible part's description on 'instruction' once a second"
        )
        if self._depth_encoding not in _DEPTH_ENCODINGS:
            raise ValueError(
                f"parameter 'depth_encoding' is {self._depth_encoding!r}: expected one of {_DEPTH_ENCODINGS}"
            )

        self._views: list[SceneSample] = self._render_views(num_views)
        self._started: float = time.monotonic()
        qos = QoSProfile(depth=5)
        self._rgb_pub: Publisher = self.create_publisher(Image, "rgb/image", qos)
        self._depth_pub: Publisher = self.create_publisher(Image, "depth/image", qos)
        self._info_pub: Publisher = self.create_publisher(CameraInfo, "rgb/camera_info", qos)
        self._instruction_pub: Publisher = self.create_publisher(String, "instruction", 10)
        self._frame_timer: Timer = self.create_timer(1.0 / rate_hz, self._on_frame_timer)
        self._instruction_timer: Optional[Timer] = (
            self.create_timer(1.0, self._on_instruction_timer) if self._publish_instruction else None
        )

    def _declare(self, name: str, default: Any, description: str, **constraints: Any) -> Any:
        descriptor = ParameterDescriptor(description=description, read_only=True, **constraints)
        return self.declare_parameter(name, default, descriptor).value

    def _render_views(self, num_views: int) -> list[SceneSample]:
        """Start-up: render the scene of ``seed`` from ``num_views`` viewpoints."""
        started = time.monotonic()
        views, rng = scene_views(self._seed)
        samples = [views.view(rng, (self._height, self._width)) for _ in range(num_views)]
        self.get_logger().info(
            f"rendered scene {self._seed} from {num_views} viewpoints at {self._width}x{self._height} "
            f"in {time.monotonic() - started:.1f} s"
        )
        return samples

    def _current_view(self) -> SceneSample:
        if self._view_hold_s <= 0.0:
            return self._views[0]
        index = int((time.monotonic() - self._started) / self._view_hold_s) % len(self._views)
        return self._views[index]

    def _on_frame_timer(self) -> None:
        """Publish the current view as RGB, depth and camera_info with one stamp; returns nothing."""
        view = self._current_view()
        header = Header(frame_id=self._frame_id, stamp=self.get_clock().now().to_msg())
        depth = view.depth_m * 1000.0 if self._depth_encoding == "16UC1" else view.depth_m
        self._rgb_pub.publish(conversions.numpy_to_image(view.rgb, "rgb8", header))
        self._depth_pub.publish(conversions.numpy_to_image(depth, self._depth_encoding, header))
        self._info_pub.publish(conversions.K_to_camera_info(view.K, self._width, self._height, header))

    def _on_instruction_timer(self) -> None:
        """Publish the shortest description of the first part visible in the current view."""
        parts = self._current_view().parts
        if parts:
            self._instruction_pub.publish(String(data=parts[0].descriptions[0]))


def main(args: Optional[list[str]] = None) -> int:
    """Run the camera until Ctrl-C or shutdown; 1 when it cannot start (the reason is logged)."""
    rclpy.init(args=args)
    try:
        node = SyntheticCamera()
    except (ValueError, RuntimeError, ParameterException) as error:  # bad parameter, unrenderable scene
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
