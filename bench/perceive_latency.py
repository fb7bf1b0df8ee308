"""The lifecycle node's configure-to-active time and the ``~/perceive`` action's answer time.

    .venv/bin/python bench/perceive_latency.py                   # the shipped checkpoint, 320x240 at 10 Hz
    .venv/bin/python bench/perceive_latency.py --random small --size 640x480 --goals 5

Starts ``segaff_ros.perception_node`` with ``autostart:=false``, then times the lifecycle ``configure`` and
``activate`` transitions through the node's ``change_state`` service (what ``ros2 lifecycle set`` calls:
configure loads and warms up the model and builds or loads the runtime engine; ``--cold``: with an empty
engine cache). A synthetic camera stream (one view, as a camera at rest sees it) then runs at
``--rate-hz``, and ``--goals`` goals of ``--frames`` frames are sent one after the other; each goal's time
from sending to its result is printed (goal: 5 frames at 10 Hz within 1.5 s), with the frames' agreement.
Printed, not asserted.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from node_bench_common import add_node_arguments, random_checkpoint
from node_latency import isolate_ros, render_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE = "/segaff_perception"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_arguments(parser)
    parser.add_argument("--rate-hz", type=float, default=10.0, help="camera rate (default 10)")
    parser.add_argument("--frames", type=int, default=5, help="frames per goal (default 5)")
    parser.add_argument("--goals", type=int, default=3, help="goals sent one after the other (default 3)")
    parser.add_argument("--threads", type=int, help="CPU threads of torch in the node (default: torch's)")
    parser.add_argument("--cold", action="store_true",
                        help="an empty engine cache (cache_dir in a temporary folder): configure builds the engine")
    return parser.parse_args()


class Camera:
    """Publishes pre-rendered views at a rate from a thread (own context and executor thread)."""

    def __init__(self, samples: list[Any], rate_hz: float) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("segaff_perceive_bench", context=self.context)
        qos = QoSProfile(depth=5)
        self._publishers = (self.node.create_publisher(Image, "rgb/image", qos),
                            self.node.create_publisher(Image, "depth/image", qos),
                            self.node.create_publisher(CameraInfo, "rgb/camera_info", qos))
        self._samples, self._period_s = samples, 1.0 / rate_hz
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._stop = threading.Event()
        self._streamer = threading.Thread(target=self._stream, daemon=True)

    def client(self, srv_type: type, name: str, timeout_s: float) -> Any:
        """A client of the service ``name`` once it is offered."""
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise SystemExit(f"{name} is not offered")
        return client

    def call_now(self, client: Any, request: Any, timeout_s: float) -> Any:
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise SystemExit(f"the service call did not answer within {timeout_s} s")
            time.sleep(0.005)
        self.node.destroy_client(client)
        return future.result()

    def start_stream(self) -> None:
        self._streamer.start()

    def _stream(self) -> None:
        from std_msgs.msg import Header

        from segaff_ros import conversions

        index, next_time = 0, time.monotonic()
        while not self._stop.is_set():
            sample = self._samples[index % len(self._samples)]
            header = Header(frame_id="camera_color_optical_frame", stamp=self.node.get_clock().now().to_msg())
            height, width = sample.rgb.shape[:2]
            rgb, depth, info = self._publishers
            rgb.publish(conversions.numpy_to_image(sample.rgb, "rgb8", header))
            depth.publish(conversions.numpy_to_image(sample.depth_m * 1000.0, "16UC1", header))
            info.publish(conversions.K_to_camera_info(sample.K, width, height, header))
            index += 1
            next_time += self._period_s
            self._stop.wait(max(next_time - time.monotonic(), 0.0))

    def close(self) -> None:
        self._stop.set()
        if self._streamer.is_alive():
            self._streamer.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def transition(camera: Camera, transition_id: int) -> float:
    """Seconds one lifecycle transition took (change_state, as ros2 lifecycle set)."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    client = camera.client(ChangeState, f"{NODE}/change_state", timeout_s=120.0)
    started = time.perf_counter()
    response = camera.call_now(client, ChangeState.Request(transition=Transition(id=transition_id)), timeout_s=600.0)
    if not response.success:
        raise SystemExit(f"transition {transition_id} failed (see the node's log)")
    return time.perf_counter() - started


def run_goal(client: Any, instruction: str, frames: int) -> tuple[float, Any]:
    from segaff_msgs.action import Perceive

    started = time.perf_counter()
    sent = client.send_goal_async(Perceive.Goal(instruction=instruction, frames=frames))
    while not sent.done():
        time.sleep(0.002)
    handle = sent.result()
    if not handle.accepted:
        raise SystemExit("the goal was rejected")
    answer = handle.get_result_async()
    while not answer.done():
        time.sleep(0.002)
    return time.perf_counter() - started, answer.result().result


def main() -> int:
    args = parse_args()
    isolate_ros()
    from lifecycle_msgs.msg import Transition
    from rclpy.action import ActionClient

    from segaff_msgs.action import Perceive
    from segaff_ros.processes import NodeProcess

    width, height = (int(v) for v in args.size.lower().split("x"))
    samples, instruction = render_frames(1, width, height)  # a camera at rest: one view
    with tempfile.TemporaryDirectory(prefix="segaff_bench_") as tmp:
        checkpoint = random_checkpoint(Path(tmp), args.random) if args.random else args.checkpoint
        ros_args = ["-p", "autostart:=false", "-p", f"device:={args.device}", "-p", f"backend:={args.backend}",
                    "-p", f"input_height:={args.input}", "-p", f"input_width:={args.input}",
                    "-p", f"cpu_threads:={args.threads or 0}"]
        if checkpoint is not None:
            ros_args += ["-p", f"checkpoint:={checkpoint}"]
        if args.cold:
            ros_args += ["-p", f"cache_dir:={Path(tmp) / 'engines'}"]
        camera = Camera(samples, args.rate_hz)
        node = NodeProcess(Path(tmp) / "node.log", ros_args, "segaff_ros.perception_node", cwd=REPO_ROOT)
        try:
            configure_s = transition(camera, Transition.TRANSITION_CONFIGURE)
            activate_s = transition(camera, Transition.TRANSITION_ACTIVATE)
            print(f"configure {configure_s:.2f} s + activate {activate_s:.2f} s = configure-to-active "
                  f"{configure_s + activate_s:.2f} s (goal <= 10 s; {checkpoint or 'shipped checkpoint'}, "
                  f"backend {args.backend}, {'empty' if args.cold else 'default'} engine cache)")
            loaded = [line for line in node.log().splitlines() if "loaded " in line]
            print(loaded[-1] if loaded else "(no 'loaded' line in the node's log)")
            client = ActionClient(camera.node, Perceive, f"{NODE}/perceive")
            if not client.wait_for_server(timeout_sec=60.0):
                raise SystemExit("~/perceive is not offered")
            camera.start_stream()
            time.sleep(1.0)  # the stream and the DDS connections settle
            times_s = []
            for _ in range(args.goals):
                elapsed_s, result = run_goal(client, instruction, args.frames)
                times_s.append(elapsed_s)
                print(f"goal of {args.frames} frames at {args.rate_hz:g} Hz ({width}x{height}): {elapsed_s:.2f} s, "
                      f"success {result.success}, frames {result.frames_used}, motion agreement "
                      f"{result.motion_type_agreement:.2f}, axis spread {result.axis_spread_deg:.1f} deg, point "
                      f"spread {1e3 * result.point_spread_m:.1f} mm, mask IoU {result.mask_iou:.2f}")
            print(f"~/perceive answer time: median {np.median(times_s):.2f} s, max {max(times_s):.2f} s "
                  f"(goal: {args.frames} frames at 10 Hz within 1.5 s)")
        finally:
            node.stop()
            camera.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
