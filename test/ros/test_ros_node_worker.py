"""The perception node's worker, in this process (conftest's ``node_in_process``): the debug overlay is drawn
only while someone subscribes, and ``max_rate_hz`` spaces model runs in wall-clock time."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")

from ros_helpers import FrameSpec, wait_until  # noqa: E402
from segaff_ros import outputs  # noqa: E402
from segaff_ros.frame_input import Frame  # noqa: E402
from segaff_ros.perception_node import PerceptionNode  # noqa: E402

pytestmark = pytest.mark.ros

INSTRUCTION = "open the top drawer"
MAX_RATE_HZ = 5.0


def fresh_frame(node: PerceptionNode) -> Frame:
    stamp_ns = node.get_clock().now().nanoseconds
    messages = dict(FrameSpec().messages(stamp_ns))
    return Frame(messages["rgb/image"], messages["depth/image"], messages["rgb/camera_info"], stamp_ns)


def test_debug_overlay_is_drawn_only_while_someone_subscribes(
    node_in_process: PerceptionNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensor_msgs.msg import Image

    node = node_in_process
    drawn: list[int] = []
    draw = outputs.draw_overlay
    monkeypatch.setattr(outputs, "draw_overlay", lambda *args: drawn.append(1) or draw(*args))

    node._process(fresh_frame(node), INSTRUCTION)
    assert node._stats.snapshot().frames_processed == 1
    assert drawn == [], "the overlay was drawn with nobody subscribed to ~/debug_image"

    received: list[Any] = []
    node.create_subscription(Image, "~/debug_image", received.append, 1)
    assert wait_until(lambda: node._outputs.debug_image.get_subscription_count() > 0, 10.0)
    node._process(fresh_frame(node), INSTRUCTION)
    assert drawn == [1]


@pytest.mark.node_parameters(max_rate_hz=MAX_RATE_HZ)
def test_max_rate_hz_spaces_model_runs_in_wall_time(
    node_in_process: PerceptionNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = node_in_process
    starts: list[float] = []
    monkeypatch.setattr(node, "_process", lambda frame, instruction: starts.append(time.monotonic()))
    node._instruction = INSTRUCTION
    stop = threading.Event()

    def feed() -> None:  # a 50 Hz camera: always a fresh frame waiting
        while not stop.is_set():
            node._worker.slot.put(fresh_frame(node))
            time.sleep(0.02)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        time.sleep(3.0)
    finally:
        stop.set()
        feeder.join()
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) >= 10, f"only {len(starts)} runs in 3 s at {MAX_RATE_HZ} Hz"
    assert len(starts) <= 3.0 * MAX_RATE_HZ + 1, f"{len(starts)} runs in 3 s at most {MAX_RATE_HZ} Hz"
    assert min(gaps) >= 0.95 / MAX_RATE_HZ, f"two runs closer than 1/max_rate_hz: {min(gaps):.3f} s"
