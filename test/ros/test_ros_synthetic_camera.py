"""The synthetic camera node over DDS: three topics with one stamp, REP 118 depth, a smoothly swaying viewpoint."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")

from ros_helpers import NodeProcess, wait_until  # noqa: E402
from segaff_core.synth.sample import scene_views  # noqa: E402
from segaff_ros.conversions import camera_info_to_K, image_to_numpy, stamp_to_ns  # noqa: E402
from segaff_ros.synthetic_camera import choose_scene  # noqa: E402

pytestmark = pytest.mark.ros

TIMEOUT_S = 90.0


class CameraListener:
    """Records rgb/image, depth/image, rgb/camera_info and instruction (own context and executor)."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("segaff_camera_listener", context=self.context)
        self._lock = threading.Lock()
        self.received: dict[str, list[Any]] = {"rgb": [], "depth": [], "info": [], "instruction": []}
        for key, msg_type, topic in [("rgb", Image, "rgb/image"), ("depth", Image, "depth/image"),
                                     ("info", CameraInfo, "rgb/camera_info"), ("instruction", String, "instruction")]:
            self.node.create_subscription(msg_type, topic, lambda msg, key=key: self._record(key, msg), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _record(self, key: str, msg: Any) -> None:
        with self._lock:
            self.received[key].append(msg)

    def get(self, key: str) -> list[Any]:
        with self._lock:
            return list(self.received[key])

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=10.0)


@pytest.mark.parametrize(("depth_encoding", "target"), [("16UC1", ""), ("32FC1", "open the top drawer")])
def test_synthetic_camera_publishes_synchronized_rgbd(tmp_path: Path, depth_encoding: str, target: str) -> None:
    listener = CameraListener()
    scene = ["-p", "seed:=-1", "-p", f"target_instruction:={target}"] if target else []
    camera = NodeProcess(
        tmp_path / "camera.log",
        ["-p", "width:=160", "-p", "height:=120", "-p", "rate_hz:=10.0", "-p", f"depth_encoding:={depth_encoding}",
         "-p", "orbit_period_s:=2.0", "-p", "orbit_steps:=20", "-p", "publish_instruction:=true", *scene],
        module="segaff_ros.synthetic_camera",
    )
    try:
        # 30 frames: past the first sway cycle (2 s), whose views are rendered when first shown
        enough = wait_until(lambda: len(listener.get("info")) >= 30 and listener.get("instruction"), TIMEOUT_S)
        assert enough, f"too few frames:\n{camera.log()}"
        rgb, depth, info = listener.get("rgb"), listener.get("depth"), listener.get("info")
    finally:
        code = camera.stop()
        listener.close()
    assert code == 0, camera.log()

    info_by_stamp = {stamp_to_ns(m.header.stamp): m for m in info}
    depth_by_stamp = {stamp_to_ns(m.header.stamp): m for m in depth}
    matched = [
        (r, depth_by_stamp[stamp], info_by_stamp[stamp])
        for r in rgb
        if (stamp := stamp_to_ns(r.header.stamp)) in depth_by_stamp and stamp in info_by_stamp
    ]
    assert len(matched) >= 15, "RGB, depth and camera_info must share their stamps"
    for rgb_msg, depth_msg, info_msg in matched:
        assert {rgb_msg.header.frame_id, depth_msg.header.frame_id, info_msg.header.frame_id} == {
            "camera_color_optical_frame"}
        assert (rgb_msg.encoding, depth_msg.encoding) == ("rgb8", depth_encoding)
        assert image_to_numpy(rgb_msg).shape == (120, 160, 3)
        depth_m = image_to_numpy(depth_msg)
        assert depth_m.shape == (120, 160) and 0.3 < np.median(depth_m[depth_m > 0]) < 10.0
        K = camera_info_to_K(info_msg)
        assert (info_msg.width, info_msg.height) == (160, 120) and 0 < K[0, 2] < 160

    periods_s = np.diff(sorted(info_by_stamp)) * 1e-9
    assert 0.05 < np.median(periods_s) < 0.2, f"not about 10 Hz: median period {np.median(periods_s):.3f} s"
    distinct_views = {image_to_numpy(r).tobytes() for r, _, _ in matched}
    assert len(distinct_views) >= 2, "the viewpoint must change"
    # Frames stamped one camera period apart are at most one sway step apart: a frame is stamped at the moment
    # its view shows, before a first render of it. A render that stalls the camera on a loaded machine skips
    # steps (views are rendered when first shown), and the stamps show the gap: such gaps are not judged.
    frames = sorted((stamp_to_ns(r.header.stamp) * 1e-9, image_to_numpy(d)) for r, d, _ in matched)
    close = [np.mean(np.abs(a - b) < 0.05) for (t_a, a), (t_b, b) in zip(frames, frames[1:]) if t_b - t_a < 0.15]
    assert len(close) >= 5, f"too few frames one period apart: {[t for t, _ in frames]}"
    assert min(close) > 0.8, f"the viewpoint must sway, not jump: depths within 5 cm of the previous frame's {close}"
    instruction = listener.get("instruction")[0].data
    assert instruction == target if target else instruction.strip()
    if target:  # seed -1: the scene chosen for the instruction, seen from the part it names
        seed = choose_scene(target)
        scene, _ = scene_views(seed)
        assert f"scene {seed}: viewpoint on {scene.layout.parts[scene.part_named(target)].name}" in camera.log()
