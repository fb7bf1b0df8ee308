"""``synthetic_camera``: an RGB-D camera on a procedural articulated-furniture scene, for demos and tests.

Publishes ``rgb/image`` (rgb8), ``depth/image`` (16UC1 millimetres or 32FC1 metres) and
``rgb/camera_info`` with one stamp and one frame_id per frame, at ``rate_hz``.

The scene is that of ``seed`` (``-1``: the one :func:`choose_scene` picks for ``target_instruction``), seen
from one viewpoint, aimed at the part that ``target_instruction`` names when set. The viewpoint sways slowly
and smoothly about that part's handle: a figure of eight of ``orbit_amplitude_deg`` every ``orbit_period_s``
(:class:`segaff_core.synth.camera.Orbit`), in ``orbit_steps`` viewpoints per period, each rendered when
first needed and then reused.

With ``parent_frame`` set, the camera also publishes the static transform ``parent_frame`` -> ``frame_id``
(:mod:`segaff_ros.static_transform`): a camera ``camera_height_m`` above the parent frame's origin, looking
along its +x, pitched down by ``camera_pitch_deg`` (the demo's ``base_link``).

With ``publish_instruction`` the camera publishes ``target_instruction`` on ``instruction`` once a second
(or, without one, the description of the part it sways about), so the perception node has something to do
without a user.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from segaff_core.crash_reports import enable_crash_tracebacks
from segaff_core.synth.camera import Orbit
from segaff_core.synth.sample import SceneSample, SceneViews, find_scene, scene_views
from segaff_ros import conversions
from segaff_ros.publishing import publish_or_warn
from segaff_ros.spinning import spin_until_shutdown
from segaff_ros.frame_memory import keep_frame_buffers_mapped
from segaff_ros.static_transform import StaticTransformPublisher, optical_frame_rotation, transform_msg

NODE_NAME = "synthetic_camera"
AUTO_SEED = -1
#: Seeds searched (from 0) for a scene that has the part an instruction names (seed ``AUTO_SEED``).
SCENE_SEARCH_SEEDS = 300
#: Parts of the named part's category on its piece of furniture besides it, so the instruction must choose.
SCENE_MIN_SIBLINGS = 2
_DEPTH_ENCODINGS = ("16UC1", "32FC1")


def choose_scene(instruction: str) -> Optional[int]:
    """The seed that ``seed:=-1`` shows: the first scene (among ``SCENE_SEARCH_SEEDS``) with a part that
    ``instruction`` names among at least ``SCENE_MIN_SIBLINGS`` others of its kind on the same furniture, or
    else the first with such a part at all (an oven has one door); None when no scene has one."""
    first = find_scene(instruction, range(SCENE_SEARCH_SEEDS))
    if first is None:
        return None
    among_siblings = find_scene(instruction, range(first[0], SCENE_SEARCH_SEEDS), SCENE_MIN_SIBLINGS)
    return (among_siblings or first)[0]


@dataclass(frozen=True)
class CameraFrame:
    """One viewpoint ready to publish: ``rgb (H, W, 3) uint8``, ``depth`` in the depth encoding's unit,
    ``K (3, 3)`` and the instruction to publish while it shows (empty: none)."""

    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    instruction: str


class SyntheticCamera(Node):
    """Publishes a slowly swaying view of one synthetic scene as a ROS RGB-D camera."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        seed: int = self._declare(
            "seed", 0, f"scene seed (the same seed, the same scene); {AUTO_SEED}: the scene chosen for "
            "target_instruction", integer_range=[IntegerRange(from_value=AUTO_SEED, to_value=2**31 - 1, step=1)],
        )
        self._target: str = self._declare(
            "target_instruction", "", "aim the camera at the part this instruction names ('' = any part)"
        ).strip()
        self._width: int = self._declare("width", 320, "image width, px",
                                         integer_range=[IntegerRange(from_value=32, to_value=1920, step=1)])
        self._height: int = self._declare("height", 240, "image height, px",
                                          integer_range=[IntegerRange(from_value=32, to_value=1080, step=1)])
        rate_hz: float = self._declare("rate_hz", 10.0, "frames per second",
                                       floating_point_range=[FloatingPointRange(from_value=0.1, to_value=60.0)])
        self._depth_encoding: str = self._declare("depth_encoding", "16UC1", "16UC1 (mm) | 32FC1 (m)")
        self._frame_id: str = self._declare("frame_id", "camera_color_optical_frame", "frame_id of all three")
        amplitude_deg: float = self._declare(
            "orbit_amplitude_deg", 4.0, "sway of the viewpoint about the part's handle, degrees (0 = still)",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=30.0)],
        )
        self._period_s: float = self._declare(
            "orbit_period_s", 20.0, "seconds per sway cycle",
            floating_point_range=[FloatingPointRange(from_value=1.0, to_value=3600.0)],
        )
        steps: int = self._declare(
            "orbit_steps", 50, "viewpoints per sway cycle (each rendered once, when first shown)",
            integer_range=[IntegerRange(from_value=1, to_value=1000, step=1)],
        )
        publish_instruction: bool = self._declare(
            "publish_instruction", False,
            "publish target_instruction (or a visible part's description) on 'instruction' once a second",
        )
        parent_frame: str = self._declare(
            "parent_frame", "", "publish the static transform parent_frame -> frame_id ('' = none)"
        )
        height_m: float = self._declare(
            "camera_height_m", 1.0, "height of the camera above parent_frame's origin, m",
            floating_point_range=[FloatingPointRange(from_value=-100.0, to_value=100.0)],
        )
        pitch_deg: float = self._declare(
            "camera_pitch_deg", 15.0, "downward pitch of the camera, looking along parent_frame's +x, degrees",
            floating_point_range=[FloatingPointRange(from_value=-90.0, to_value=90.0)],
        )
        if self._depth_encoding not in _DEPTH_ENCODINGS:
            raise ValueError(
                f"parameter 'depth_encoding' is {self._depth_encoding!r}: expected one of {_DEPTH_ENCODINGS}"
            )

        self._steps = steps if amplitude_deg > 0.0 else 1
        self._views, base, self._pivot_part = self._base_view(seed)
        self._lighting = base.lighting
        pivot = self._views.layout.parts[self._pivot_part].handle
        self._orbit = Orbit(base.camera, pivot, math.radians(amplitude_deg))
        self._frames: dict[int, CameraFrame] = {0: self._to_frame(base)}
        self._started: float = time.monotonic()
        qos = QoSProfile(depth=5)
        self._rgb_pub: Publisher = self.create_publisher(Image, "rgb/image", qos)
        self._depth_pub: Publisher = self.create_publisher(Image, "depth/image", qos)
        self._info_pub: Publisher = self.create_publisher(CameraInfo, "rgb/camera_info", qos)
        self._instruction_pub: Publisher = self.create_publisher(String, "instruction", 10)
        self._static_transform: Optional[StaticTransformPublisher] = None
        if parent_frame:
            transform = transform_msg(parent_frame, self._frame_id, np.array([0.0, 0.0, height_m]),
                                      optical_frame_rotation(math.radians(pitch_deg)), self)
            self._static_transform = StaticTransformPublisher(self, transform)
        self._frame_timer: Timer = self.create_timer(1.0 / rate_hz, self._on_frame_timer)
        self._instruction_timer: Optional[Timer] = (
            self.create_timer(1.0, self._on_instruction_timer) if publish_instruction else None
        )

    def _declare(self, name: str, default: Any, description: str, **constraints: Any) -> Any:
        descriptor = ParameterDescriptor(description=description, read_only=True, **constraints)
        return self.declare_parameter(name, default, descriptor).value

    def _base_view(self, seed: int) -> tuple[SceneViews, SceneSample, int]:
        """Start-up: build the scene, render the base view; returns the scene, the view and the pivot part."""
        started = time.monotonic()
        if seed == AUTO_SEED:
            chosen = choose_scene(self._target) if self._target else None
            if chosen is None:
                self.get_logger().warning(
                    f"seed {AUTO_SEED}: no scene among seeds 0-{SCENE_SEARCH_SEEDS - 1} has a part that "
                    f"target_instruction {self._target!r} names: showing scene 0"
                )
            seed = chosen if chosen is not None else 0
        views, rng = scene_views(seed)
        target = views.part_named(self._target) if self._target else None
        if self._target and target is None:
            self.get_logger().warning(f"no part of scene {seed} is named by {self._target!r}: aiming at any part")
        base = views.view(rng, (self._height, self._width), target)
        pivot = target if target is not None else base.parts[0].part_id
        self.get_logger().info(
            f"scene {seed}: viewpoint on {views.layout.parts[pivot].name} "
            f"({len(base.parts)} parts visible), {self._width}x{self._height}, "
            f"ready in {time.monotonic() - started:.1f} s"
        )
        return views, base, pivot

    def _to_frame(self, sample: SceneSample) -> CameraFrame:
        """A rendered view as the camera publishes it."""
        depth = sample.depth_m
        if self._depth_encoding == "16UC1":  # millimetres, stored as they are published
            depth = np.clip(np.rint(depth * 1000.0), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        shown = [p for p in sample.parts if p.part_id == self._pivot_part] or sample.parts
        instruction = self._target or (shown[0].descriptions[0] if shown else "")
        return CameraFrame(sample.rgb, depth, sample.K, instruction)

    def _current_frame(self) -> CameraFrame:
        """The viewpoint of this moment of the sway cycle (rendered now when first needed)."""
        phase = (time.monotonic() - self._started) / self._period_s
        step = int((phase % 1.0) * self._steps)
        if step not in self._frames:
            sample = self._views.render(self._orbit.camera(step / self._steps), self._lighting)
            self._frames[step] = self._to_frame(sample)
        return self._frames[step]

    def _on_frame_timer(self) -> None:
        """Publish the current view as RGB, depth and camera_info with one stamp; returns nothing.

        The stamp is the moment the view shows (taken before a first render of it, which may take a while),
        as a camera stamps the exposure, not the end of its processing."""
        stamp = self.get_clock().now().to_msg()
        frame = self._current_frame()
        header = Header(frame_id=self._frame_id, stamp=stamp)
        logger = self.get_logger()
        publish_or_warn(self._rgb_pub, conversions.numpy_to_image(frame.rgb, "rgb8", header), logger)
        publish_or_warn(self._depth_pub, conversions.numpy_to_image(frame.depth, self._depth_encoding, header), logger)
        publish_or_warn(self._info_pub, conversions.K_to_camera_info(frame.K, self._width, self._height, header), logger)

    def _on_instruction_timer(self) -> None:
        """Publish the target instruction, or the description of the part the camera sways about."""
        text = self._current_frame().instruction
        if text:
            publish_or_warn(self._instruction_pub, String(data=text), self.get_logger())


def main(args: Optional[list[str]] = None) -> int:
    """Run the camera until Ctrl-C or shutdown; 1 when it cannot start (the reason is logged)."""
    enable_crash_tracebacks()
    keep_frame_buffers_mapped()  # frame-sized buffers reused, not mapped and zeroed again each frame
    rclpy.init(args=args)
    executor = SingleThreadedExecutor()  # before a Ctrl-C during the first render can shut the context down
    try:
        node = SyntheticCamera()
    except KeyboardInterrupt:  # Ctrl-C during the first render: a normal stop
        rclpy.try_shutdown()
        return 0
    except (ValueError, RuntimeError, ParameterException) as error:  # bad parameter, unrenderable scene
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
