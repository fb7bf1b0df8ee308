"""Helpers of the ROS tests: an isolated DDS domain, the node as a process, a probe node, test frames.

Everything runs over real DDS: the perception node is a separate process started like a user starts it
(``python -m segaff_ros.perception_node --ros-args ...``, through :mod:`segaff_ros.processes`) and the probe
is an rclpy node in the test process, spun by its own executor thread. Waiting is always on a condition with a deadline.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from segaff_ros import processes

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE = "/segaff_perception"
#: The perception node's publications (under its name), INTERFACE.md's table.
OUTPUT_TOPICS = ("mask", "interaction_pose", "axis_marker", "trajectory", "markers", "result", "debug_image",
                 "part_points")
DIAGNOSTIC_NAME = "segaff_perception: affordance perception"


@contextmanager
def spun_node(name: str) -> Iterator[Any]:
    """A plain rclpy node in its own context, spun by a SingleThreadedExecutor in a thread (as the perception
    node's ``main`` spins it); everything is shut down on exit."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield node
    finally:
        executor.shutdown()
        spinner.join(timeout=10.0)
        node.destroy_node()
        context.try_shutdown()


def isolate_ros_environment() -> int:
    """Set ROS_DOMAIN_ID (a free one), localhost-only discovery and the shipped Fast DDS profile
    (config/fastdds_large_images.xml) for this process and its children.

    Must run before ``rclpy.init``; returns the domain id.
    """
    claimed = os.environ.get("SEGAFF_TEST_ROS_DOMAIN_ID", "")
    owner, _, domain_id = claimed.partition(":")
    if owner != str(os.getpid()):  # claimed by this process, not inherited (parallel pytest workers each claim one)
        domain_id = str(processes.claim_ros_domain_id())
        os.environ["SEGAFF_TEST_ROS_DOMAIN_ID"] = f"{os.getpid()}:{domain_id}"
    os.environ["ROS_DOMAIN_ID"] = domain_id
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    for variable in processes.FASTDDS_PROFILE_VARIABLES:  # the shipped profile, as the demo uses it
        os.environ.pop(variable, None)
    processes.use_large_images_profile()
    return int(os.environ["ROS_DOMAIN_ID"])


def wait_until(
    condition: Callable[[], Any],
    timeout_s: float,
    every_s: float = 0.05,
    action: Optional[Callable[[], None]] = None,
    action_every_s: float = 1.0,
) -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout_s`` passes (None).

    ``action`` (e.g. publishing an instruction again) runs first and then every ``action_every_s``.
    """
    deadline = time.monotonic() + timeout_s
    next_action = time.monotonic()
    while True:
        if action is not None and time.monotonic() >= next_action:
            action()
            next_action = time.monotonic() + action_every_s
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(every_s)


class NodeProcess(processes.NodeProcess):
    """A node process of the tests: one torch thread (the machine is shared), the perception node by default."""

    def __init__(self, log_path: Path, ros_args: list[str], module: str = "segaff_ros.perception_node") -> None:
        super().__init__(log_path, ros_args, module, env={"OMP_NUM_THREADS": "1"}, cwd=REPO_ROOT)


# ---- test frames ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plane:
    """The plane ``normal . X = distance_m`` (unit normal pointing away from the camera), camera frame."""

    normal: np.ndarray
    distance_m: float

    @staticmethod
    def tilted(distance_m: float = 1.2) -> "Plane":
        normal = np.array([0.25, -0.2, 1.0])
        return Plane(normal / np.linalg.norm(normal), distance_m)

    def depth_m(self, K: np.ndarray, width: int, height: int) -> np.ndarray:
        """Depth image (H, W) float32 metres of this plane seen by a pinhole camera K."""
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
        return (self.distance_m / (rays @ self.normal)).astype(np.float32)

    def distance_to(self, point: np.ndarray) -> float:
        return float(abs(self.normal @ np.asarray(point, dtype=np.float64) - self.distance_m))


def intrinsics(width: int, height: int) -> np.ndarray:
    """A plausible K for a ``width`` x ``height`` image (about 60 degrees horizontal field of view)."""
    f = 0.87 * width
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def pattern_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image: smooth colours and a bright rectangle (a 'drawer front')."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    rgb = np.stack([120 + 80 * u, 100 + 60 * v, 90 + 40 * u * v], axis=-1)
    rgb[height // 3: 2 * height // 3, width // 4: 3 * width // 4] = (200, 180, 140)
    rgb += rng.normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@dataclass
class FrameSpec:
    """What one published camera frame looks like; the defaults are a valid frame."""

    width: int = 160
    height: int = 120
    rgb_encoding: str = "rgb8"
    depth_encoding: str = "16UC1"
    depth_scale: int = 1  # depth is (height / depth_scale) x (width / depth_scale)
    depth_size: Optional[tuple[int, int]] = None  # (width, height) overriding depth_scale
    frame_id: str = "test_camera_optical_frame"
    depth_frame_id: Optional[str] = None  # None = frame_id
    plane: Plane = Plane.tilted()
    zero_depth: bool = False
    zero_K: bool = False
    truncate_rgb: bool = False
    send_camera_info: bool = True
    stamp_offset_s: float = 0.0  # added to "now" (negative = old frames)

    def messages(self, stamp_ns: int) -> list[tuple[str, Any]]:
        """(topic, message) pairs of this frame, all stamped ``stamp_ns``."""
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        from segaff_ros import conversions

        header = Header(frame_id=self.frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        depth_header = Header(frame_id=self.depth_frame_id or self.frame_id, stamp=header.stamp)
        K = intrinsics(self.width, self.height)
        rgb = pattern_image(self.width, self.height)
        if self.rgb_encoding in ("rgb8", "bgr8"):
            rgb_msg = conversions.numpy_to_image(rgb if self.rgb_encoding == "rgb8" else rgb[:, :, ::-1], "rgb8", header)
            rgb_msg.encoding = self.rgb_encoding
        else:  # an encoding the node does not support: the bytes do not matter
            rgb_msg = Image(header=header, height=self.height, width=self.width, encoding=self.rgb_encoding,
                            step=2 * self.width, data=bytes(2 * self.width * self.height))
        if self.truncate_rgb:
            rgb_msg.data = bytes(rgb_msg.data)[: -self.width]
        depth_width, depth_height = self.depth_size or (self.width // self.depth_scale, self.height // self.depth_scale)
        scale_x, scale_y = depth_width / self.width, depth_height / self.height
        K_depth = K * np.array([[scale_x], [scale_y], [1.0]])
        depth_m = self.plane.depth_m(K_depth, depth_width, depth_height)
        if self.zero_depth:
            depth_m[:] = 0.0
        if self.depth_encoding == "16UC1":
            depth_msg = conversions.numpy_to_image(depth_m * 1000.0, "16UC1", depth_header)
        elif self.depth_encoding == "32FC1":
            depth_msg = conversions.numpy_to_image(depth_m, "32FC1", depth_header)
        else:
            depth_msg = conversions.numpy_to_image((depth_m * 10).astype(np.uint8), "mono8", depth_header)
            depth_msg.encoding = self.depth_encoding
        messages: list[tuple[str, Any]] = [("rgb/image", rgb_msg), ("depth/image", depth_msg)]
        if self.send_camera_info:
            info_K = np.zeros((3, 3)) if self.zero_K else K
            messages.append(("rgb/camera_info", conversions.K_to_camera_info(info_K, self.width, self.height, header)))
        return messages


class Probe:
    """The test's own rclpy node (own context, executor thread): feeds the perception node and records
    everything it publishes."""

    def __init__(self, name: str = "segaff_test_probe") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Path as PathMsg
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import String
        from visualization_msgs.msg import Marker, MarkerArray

        from segaff_msgs.msg import AffordanceResult
        from segaff_msgs.srv import Query

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        image_qos = QoSProfile(depth=5)  # reliable, as most camera drivers publish
        self.publishers = {
            "rgb/image": self.node.create_publisher(Image, "rgb/image", image_qos),
            "depth/image": self.node.create_publisher(Image, "depth/image", image_qos),
            "rgb/camera_info": self.node.create_publisher(CameraInfo, "rgb/camera_info", image_qos),
        }
        self.instruction_pub = self.node.create_publisher(String, "instruction", 10)
        self._lock = threading.Lock()
        self.received: dict[str, list[tuple[float, Any]]] = {name: [] for name in OUTPUT_TOPICS}
        self.received["diagnostics"] = []
        types = {
            "mask": Image, "interaction_pose": PoseStamped, "axis_marker": Marker, "trajectory": PathMsg,
            "markers": MarkerArray, "result": AffordanceResult, "debug_image": Image, "part_points": PointCloud2,
        }
        for topic, msg_type in types.items():
            self.node.create_subscription(msg_type, f"{NODE}/{topic}", self._recorder(topic), 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), 10)
        self.query_client = self.node.create_client(Query, f"{NODE}/query")
        self._String = String
        self._Query = Query
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _recorder(self, topic: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self._lock:
                self.received[topic].append((time.time(), msg))
        return record

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return [msg for _, msg in self.received[topic]]

    def timed(self, topic: str) -> list[tuple[float, Any]]:
        """(wall-clock receive time, message) pairs of ``topic``."""
        with self._lock:
            return list(self.received[topic])

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def wait_for_perception_node(self, timeout_s: float = 120.0) -> bool:
        """True once the perception node subscribes to every input (i.e. it is active: its model is loaded)."""
        publishers = [*self.publishers.values(), self.instruction_pub]
        return bool(wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers), timeout_s))

    def publish_frame(self, spec: FrameSpec, messages: Optional[list[tuple[str, Any]]] = None) -> int:
        """Publish one frame stamped now (+ ``spec.stamp_offset_s``); returns its stamp in ns.

        ``messages`` (from ``spec.messages``) are re-stamped and reused instead of being built again.
        """
        stamp_ns = self.now_ns() + int(spec.stamp_offset_s * 1e9)
        for topic, msg in messages if messages is not None else spec.messages(stamp_ns):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            self.publishers[topic].publish(msg)
        return stamp_ns

    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(self._String(data=text))

    def query(self, text: str, timeout_s: float = 60.0) -> Any:
        """Call ``~/query``; the response, or an AssertionError after ``timeout_s``."""
        assert self.query_client.wait_for_service(timeout_sec=timeout_s), "~/query is not offered"
        done = threading.Event()
        future = self.query_client.call_async(self._Query.Request(instruction=text))
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout_s), f"~/query did not answer within {timeout_s} s"
        return future.result()

    def diagnostics(self) -> Optional[dict[str, str]]:
        """Key/values of the newest status of the perception node on /diagnostics (None before one)."""
        for msg in reversed(self.messages("diagnostics")):
            for status in msg.status:
                if status.name == DIAGNOSTIC_NAME:
                    return {"message": status.message, **{kv.key: kv.value for kv in status.values}}
        return None

    def diagnostic_count(self, key: str) -> int:
        values = self.diagnostics()
        return int(float(values[key])) if values else 0

    def fresh_diagnostic_count(self, key: str, timeout_s: float = 30.0) -> int:
        """``key`` of a diagnostics status published after this call (the second one received since,
        so that a status already on its way when called is not taken)."""
        seen = len(self.messages("diagnostics"))
        assert wait_until(lambda: len(self.messages("diagnostics")) >= seen + 2, timeout_s), "no /diagnostics"
        return self.diagnostic_count(key)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._spinner.join(timeout=10.0)


class FrameStream:
    """Publishes frames of a (changeable) FrameSpec at ``rate_hz`` from a thread; remembers the stamps."""

    def __init__(self, probe: Probe, spec: FrameSpec, rate_hz: float) -> None:
        self.probe = probe
        self.spec = spec
        self.period_s = 1.0 / rate_hz
        self.stamps: list[int] = []
        self._messages = spec.messages(0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_time = time.monotonic()
        while not self._stop.is_set():
            self.stamps.append(self.probe.publish_frame(self.spec, self._messages))
            next_time += self.period_s
            self._stop.wait(max(next_time - time.monotonic(), 0.0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
