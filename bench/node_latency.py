"""End-to-end latency of the perception node next to the bare model on the same frames.

    .venv/bin/python bench/node_latency.py --random small     # random-weight ModelParams.small()
    .venv/bin/python bench/node_latency.py --random default   # the design's 150 M-parameter model
    .venv/bin/python bench/node_latency.py --checkpoint C.ckpt --device cuda --input 256 --size 640x480
    .venv/bin/python bench/node_latency.py --size 640x480 --floor   # the transport floor, no model

Renders ``--frames`` synthetic RGB-D views, starts ``segaff_ros.perception_node`` as its own process and
sends the frames one at a time over DDS (the next one after the previous result), measuring
RGB stamp -> ``~/result`` received; after each, the same frame goes through a bare ``Predictor`` in this
process (interleaved, so both see the same machine load). Printed: median and 90th percentile of each,
and the end-to-end / bare ratio (the cost of the ROS face: serialisation, transport, decoding,
synchronisation, publishing, the debug overlay).

``--floor`` runs ``transport_floor_node.py`` in the node's place: it answers each frame at once with a result
of the node's size, without a model, so its end-to-end time is the least any Python node adds to the model
over DDS (printed next to the same bare Predictor: the best ratio a node could reach).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from node_bench_common import add_node_arguments, random_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_arguments(parser)
    parser.add_argument("--frames", type=int, default=30, help="frames measured (default 30)")
    parser.add_argument("--no-debug-image", action="store_true", help="node without the debug overlay")
    parser.add_argument("--threads", type=int, help="CPU threads of torch in the node and here (default: torch's)")
    parser.add_argument("--floor", action="store_true",
                        help="the transport floor: a node that answers at once, without a model, in the node's place")
    parser.add_argument("--node-log", type=Path, help="keep the node's log in this file (default: a temporary one)")
    return parser.parse_args()


def isolate_ros() -> None:
    """Localhost-only discovery, a domain of its own unless ROS_DOMAIN_ID is set, and the shipped Fast DDS
    profile for large images unless a profiles file is set."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    from segaff_ros.processes import use_large_images_profile

    print(f"Fast DDS profile: {use_large_images_profile()}")


def render_frames(count: int, width: int, height: int) -> tuple[list[Any], str]:
    """``count`` views of synthetic scene 0 and the description of a part seen in the first."""
    from segaff_core.synth.sample import scene_views

    views, rng = scene_views(0)
    samples = [views.view(rng, (height, width)) for _ in range(count)]
    return samples, samples[0].parts[0].descriptions[0]


class Client:
    """Publishes frames and waits for the node's result of each (own context, executor thread)."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        from segaff_msgs.msg import AffordanceResult

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("segaff_latency_bench", context=self.context)
        qos = QoSProfile(depth=5)
        self.rgb = self.node.create_publisher(Image, "rgb/image", qos)
        self.depth = self.node.create_publisher(Image, "depth/image", qos)
        self.info = self.node.create_publisher(CameraInfo, "rgb/camera_info", qos)
        self.instruction = self.node.create_publisher(String, "instruction", 10)
        self._String = String
        self._results: dict[int, tuple[float, Any]] = {}
        self._arrived = threading.Condition()
        self.node.create_subscription(AffordanceResult, "/segaff_perception/result", self._on_result, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_result(self, msg: Any) -> None:
        from segaff_ros.conversions import stamp_to_ns

        with self._arrived:
            self._results[stamp_to_ns(msg.header.stamp)] = (time.time(), msg)
            self._arrived.notify_all()

    def wait_for_node(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        publishers = (self.rgb, self.depth, self.info, self.instruction)
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in publishers):
                return True
            time.sleep(0.1)
        return False

    def send(self, sample: Any, instruction: str, timeout_s: float) -> Optional[tuple[float, Any]]:
        """Publish one frame stamped now; (latency s, result) once its result arrives, else None.

        The messages are built before the stamp is taken, as a camera driver has its image in a message
        when it stamps it: the clock runs from publishing (serialisation and transport included).
        """
        from std_msgs.msg import Header

        from segaff_ros import conversions

        header = Header(frame_id="camera_color_optical_frame")
        height, width = sample.rgb.shape[:2]
        messages = (
            (self.rgb, conversions.numpy_to_image(sample.rgb, "rgb8", header)),
            (self.depth, conversions.numpy_to_image(sample.depth_m * 1000.0, "16UC1", header)),
            (self.info, conversions.K_to_camera_info(sample.K, width, height, header)),
        )
        self.instruction.publish(self._String(data=instruction))
        stamp = self.node.get_clock().now()
        for publisher, msg in messages:
            msg.header.stamp = stamp.to_msg()
            publisher.publish(msg)
        with self._arrived:
            if not self._arrived.wait_for(lambda: stamp.nanoseconds in self._results, timeout_s):
                return None
            received, result = self._results.pop(stamp.nanoseconds)
        return received - stamp.nanoseconds * 1e-9, result

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@dataclass
class Timings:
    """Per frame, paired: end-to-end (s), the node's model time (ms), bare Predictor call (s) and its
    network forward (ms)."""

    end_to_end_s: list[float] = field(default_factory=list)
    node_model_ms: list[float] = field(default_factory=list)
    bare_call_s: list[float] = field(default_factory=list)
    bare_forward_ms: list[float] = field(default_factory=list)


def node_command(args: argparse.Namespace, checkpoint: Path) -> list[str]:
    """The perception node's command line, or the transport floor's node with ``--floor``."""
    if args.floor:
        return [sys.executable, str(REPO_ROOT / "bench" / "transport_floor_node.py")]
    return [
        sys.executable, "-m", "segaff_ros.perception_node", "--ros-args",
        "-p", f"checkpoint:={checkpoint}", "-p", f"device:={args.device}", "-p", f"backend:={args.backend}",
        "-p", f"input_height:={args.input}", "-p", f"input_width:={args.input}",
        "-p", f"cpu_threads:={args.threads or 0}", "-p", "image_qos:=reliable", "-p", f"publish_debug_image:={'false' if args.no_debug_image else 'true'}",
    ]


def measure(args: argparse.Namespace, checkpoint: Path, samples: list[Any], instruction: str,
            log_path: Path) -> Timings:
    """Each frame through the node (over DDS), then the same frame through a bare Predictor here.

    Interleaved, so both see the same load on a shared machine; the node is idle during the bare call.
    """
    import torch

    from segaff_core.inference import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    size = {"input_size": (args.input, args.input)} if args.input else {}
    predictor = Predictor.from_checkpoint(checkpoint, device=args.device, backend=args.backend, **size)
    print(f"bare Predictor: backend {predictor.backend}, input {predictor.input_size}")
    client = Client()
    with open(log_path, "wb") as log:
        node = subprocess.Popen(node_command(args, checkpoint), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        if not client.wait_for_node(180.0):
            raise SystemExit(f"the node did not come up; its log:\n{log_path.read_text()[-3000:]}")
        # Warm-up of both (instruction encoding, first allocations, DDS connections): a few answered frames.
        warm = sum(client.send(sample, instruction, 15.0) is not None for sample in samples[:5])
        if warm == 0:
            raise SystemExit(f"no result for a warm-up frame; the node's log:\n{log_path.read_text()[-3000:]}")
        for sample in samples[:3]:
            predictor(sample.rgb, sample.depth_m, instruction, sample.K)
        timings = Timings()
        for sample in samples:
            answer = client.send(sample, instruction, 20.0)
            if answer is None:
                print("a frame got no result within 20 s (skipped)", file=sys.stderr)
                continue
            started = time.perf_counter()
            prediction = predictor(sample.rgb, sample.depth_m, instruction, sample.K)
            timings.bare_call_s.append(time.perf_counter() - started)
            timings.bare_forward_ms.append(prediction.timings["image"])
            timings.end_to_end_s.append(answer[0])
            timings.node_model_ms.append(answer[1].inference_time_ms)
        return timings
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
        client.close()


def stats_ms(values_ms: list[float]) -> str:
    return f"median {np.median(values_ms):8.1f} ms   p90 {np.percentile(values_ms, 90):8.1f} ms"


def main() -> int:
    args = parse_args()
    isolate_ros()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="segaff_bench_") as tmp:
        if args.random:
            checkpoint = random_checkpoint(Path(tmp), args.random)
        else:
            from segaff_core.checkpoint import DEFAULT_CHECKPOINT

            checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
            if not Path(checkpoint).is_file():
                raise SystemExit(f"checkpoint {checkpoint} does not exist (name one, or use --random)")
        samples, instruction = render_frames(args.frames, width, height)
        timings = measure(args, checkpoint, samples, instruction, args.node_log or Path(tmp) / "node.log")
    if not timings.end_to_end_s:
        raise SystemExit("no frame got a result")
    end_to_end_ms = [1e3 * s for s in timings.end_to_end_s]
    bare_ms = [1e3 * s for s in timings.bare_call_s]
    ratios = np.array(end_to_end_ms) / np.array(bare_ms)
    print(f"{len(end_to_end_ms)} frames {width}x{height}, input {args.input or 'trained size'}, device {args.device}, "
          f"backend {args.backend}, "
          f"threads {args.threads or 'default'}, checkpoint {f'{args.random} (random)' if args.random else checkpoint}, instruction {instruction!r}")
    if args.floor:
        print(f"transport floor (no model)           {stats_ms(end_to_end_ms)}")
        print(f"bare Predictor call, same frames      {stats_ms(bare_ms)}")
        best = (np.array(end_to_end_ms) + np.array(bare_ms)) / np.array(bare_ms)
        print(f"best ratio a node could reach         median {np.median(best):.2f}   ((floor + bare) / bare; "
              "goal <= 1.15)")
        return 0
    print(f"end-to-end (RGB stamp -> ~/result)   {stats_ms(end_to_end_ms)}")
    print(f"node's model time (inference_time)   {stats_ms(timings.node_model_ms)}")
    print(f"bare Predictor call, same frames      {stats_ms(bare_ms)}")
    print(f"bare network forward ('image')       {stats_ms(timings.bare_forward_ms)}")
    print(f"ratio end-to-end / bare Predictor     median {np.median(ratios):.2f}   "
          f"(ratio of medians {np.median(end_to_end_ms) / np.median(bare_ms):.2f}; goal <= 1.15)")
    print(f"ratio end-to-end / bare network       "
          f"{np.median(end_to_end_ms) / np.median(timings.bare_forward_ms):.2f} (ratio of medians; the rest is "
          "pre/post-processing, which the Predictor call includes too)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
