"""Soak: the perception node fed synchronized RGB-D at 30 Hz for a long time; memory, latency, drops.

    .venv/bin/python bench/soak.py --random small                # 30 minutes, random-weight small model
    .venv/bin/python bench/soak.py --checkpoint C.ckpt --device cuda --minutes 120 --json soak.json

Starts ``segaff_ros.perception_node`` as its own process, publishes one synthetic frame (a tilted plane:
rgb8, 16UC1 millimetres and camera_info, one stamp) at ``--rate-hz``, re-stamped each time, and the
instruction once a second. From the first result on, every ``--window-s`` it prints the node's resident
memory (psutil on its pid), the results received, their latency percentiles (RGB stamp to ``~/result``
received) and the node's own counters from /diagnostics (frames replaced by newer ones, stale, bad,
failed). At the end, one verdict line each:

- memory: RSS growth from the end of the first window (warm-up) to the end, at most ``--max-rss-growth-mb``
  (the slope in MB/min is printed too);
- latency: the last window's median at most ``--max-latency-ratio`` x the first window's plus
  ``--latency-slack-ms``;
- output: results in every window, no bad or failed frame;
- alive: the node still runs, and stops cleanly on Ctrl-C.

Exit code 0 when every verdict holds, 1 otherwise. ``--json`` writes the windows and the verdicts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from node_bench_common import add_node_arguments, random_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "open the top drawer"
FRAME_ID = "soak_camera_optical_frame"
NODE = "/segaff_perception"
_NODE_COUNTERS = ("dropped_replaced", "dropped_stale", "bad_frames", "failed_frames")


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_arguments(parser)
    parser.add_argument("--rate-hz", type=float, default=30.0, help="input frame rate (default 30)")
    parser.add_argument("--minutes", type=float, default=30.0, help="soak duration after warm-up (default 30)")
    parser.add_argument("--window-s", type=float, default=60.0, help="reporting window (default 60 s)")
    parser.add_argument("--threads", type=int, help="CPU threads of the node's model (parameter cpu_threads; default: torch's)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0, help="memory verdict limit (default 50)")
    parser.add_argument("--max-latency-ratio", type=float, default=2.0, help="latency verdict ratio (default 2)")
    parser.add_argument("--latency-slack-ms", type=float, default=250.0, help="latency verdict slack (default 250)")
    parser.add_argument("--json", type=Path, help="write the windows and verdicts here")
    parser.add_argument("--node-log", type=Path, help="keep the node's log here (default: a temporary file)")
    return parser.parse_args()


def plane_frame(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8, depth metres, K) of a textured plane 1.2 m away, tilted, seen by a ~60 degree camera."""
    focal = 0.87 * width
    K = np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    normal = np.array([0.25, -0.2, 1.0]) / np.linalg.norm([0.25, -0.2, 1.0])
    rays = np.stack([(u - K[0, 2]) / focal, (v - K[1, 2]) / focal, np.ones_like(u)], axis=-1)
    depth_m = (1.2 / (rays @ normal)).astype(np.float32)
    rgb = np.stack([120 + 80 * u / width, 100 + 60 * v / height, 90 + 40 * u * v / (width * height)], axis=-1)
    rgb[height // 3: 2 * height // 3, width // 4: 3 * width // 4] = (200, 180, 140)  # a "drawer front"
    return rgb.astype(np.uint8), depth_m, K


class SoakClient:
    """Publishes the frame at a fixed rate from a thread and records (stamp, arrival) of every result and
    the newest /diagnostics counters; keeps no messages (a long soak must not grow here)."""

    def __init__(self, width: int, height: int, rate_hz: float) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header, String

        from segaff_msgs.msg import AffordanceResult
        from segaff_ros import conversions, publishing

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("segaff_soak", context=self.context)
        qos = QoSProfile(depth=5)
        self._publishers = [
            self.node.create_publisher(Image, "rgb/image", qos),
            self.node.create_publisher(Image, "depth/image", qos),
            self.node.create_publisher(CameraInfo, "rgb/camera_info", qos),
        ]
        self._instruction_pub = self.node.create_publisher(String, "instruction", 10)
        self._instruction = String(data=INSTRUCTION)
        rgb, depth_m, K = plane_frame(width, height)
        header = Header(frame_id=FRAME_ID)
        self._messages = [
            conversions.numpy_to_image(rgb, "rgb8", header),
            conversions.numpy_to_image(depth_m * 1000.0, "16UC1", header),
            conversions.K_to_camera_info(K, width, height, header),
        ]
        self._stamp_to_ns = conversions.stamp_to_ns
        self._publishing = publishing
        self._lock = threading.Lock()
        self.results: list[tuple[float, float]] = []  # (arrival, latency s), wall clock
        self.counters: dict[str, int] = {name: 0 for name in _NODE_COUNTERS}
        self.frames_sent = 0
        self.publish_failures = 0
        self.node.create_subscription(AffordanceResult, f"{NODE}/result", self._on_result, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._period_s = 1.0 / rate_hz
        self._stop = threading.Event()
        self._publisher_thread = threading.Thread(target=self._publish_loop, daemon=True)

    def _on_result(self, msg: Any) -> None:
        now = time.time()
        with self._lock:
            self.results.append((now, now - self._stamp_to_ns(msg.header.stamp) * 1e-9))

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith("segaff_perception"):
                values = {kv.key: kv.value for kv in status.values}
                with self._lock:
                    self.counters = {name: int(float(values.get(name, 0))) for name in _NODE_COUNTERS}

    def _publish_loop(self) -> None:
        next_time = time.monotonic()
        next_instruction = next_time
        while not self._stop.is_set():
            stamp = self.node.get_clock().now().to_msg()
            sent = True
            for publisher, msg in zip(self._publishers, self._messages):
                msg.header.stamp = stamp
                sent &= self._publishing.publish_or_warn(publisher, msg, self.node.get_logger())  # a camera loses the frame
            self.frames_sent += sent
            self.publish_failures += not sent
            if time.monotonic() >= next_instruction:  # sticky, but a late subscriber must see it too
                self._publishing.publish_or_warn(self._instruction_pub, self._instruction, self.node.get_logger())
                next_instruction += 1.0
            next_time += self._period_s
            self._stop.wait(max(next_time - time.monotonic(), 0.0))

    def wait_for_node(self, timeout_s: float) -> bool:
        """True once the node subscribes to every input (its model is loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in [*self._publishers, self._instruction_pub]):
                return True
            time.sleep(0.1)
        return False

    def start_publishing(self) -> None:
        self._publisher_thread.start()

    def snapshot(self) -> tuple[list[tuple[float, float]], dict[str, int], int]:
        """(results so far, newest node counters, frames sent)."""
        with self._lock:
            return list(self.results), dict(self.counters), self.frames_sent

    def close(self) -> None:
        self._stop.set()
        if self._publisher_thread.is_alive():
            self._publisher_thread.join(timeout=10.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._spinner.join(timeout=10.0)


@dataclass
class Window:
    """One reporting window: the node's RSS at its end, its results, latencies and drops."""

    end_s: float
    rss_mb: float
    frames_sent: int
    results: int
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    counters: dict[str, int] = field(default_factory=dict)  # the node's totals at the window's end

    def line(self) -> str:
        c = self.counters
        return (f"{self.end_s:7.0f} s  RSS {self.rss_mb:7.1f} MB  sent {self.frames_sent:5d}  "
                f"results {self.results:4d}  latency p50 {self.latency_p50_ms:6.0f}  p90 {self.latency_p90_ms:6.0f}  "
                f"p99 {self.latency_p99_ms:6.0f}  max {self.latency_max_ms:6.0f} ms  "
                f"replaced {c['dropped_replaced']}  stale {c['dropped_stale']}  bad {c['bad_frames']}  "
                f"failed {c['failed_frames']}")


def make_window(end_s: float, rss_bytes: int, latencies_s: list[float], frames_sent: int,
                counters: dict[str, int]) -> Window:
    """The window ending ``end_s`` after warm-up, from the latencies of the results that arrived in it."""
    latencies_ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99]) if latencies_ms.size else (np.nan,) * 3
    return Window(end_s, rss_bytes / 2**20, frames_sent, int(latencies_ms.size), float(p50), float(p90), float(p99),
                  float(latencies_ms.max()) if latencies_ms.size else float("nan"), counters)


def verdicts(windows: list[Window], args: argparse.Namespace, alive: bool, exit_code: Optional[int]) -> dict[str, Any]:
    """Each verdict: passed (bool) and its line."""
    settled = windows[0].rss_mb
    growth_mb = windows[-1].rss_mb - settled
    minutes = [(w.end_s - windows[0].end_s) / 60.0 for w in windows]
    slope = float(np.polyfit(minutes, [w.rss_mb for w in windows], 1)[0]) if len(windows) > 2 else float("nan")
    first, last = windows[0].latency_p50_ms, windows[-1].latency_p50_ms
    latency_limit = args.max_latency_ratio * first + args.latency_slack_ms
    counters = windows[-1].counters
    silent = [round(w.end_s) for w in windows if w.results == 0]
    return {
        "memory": {"passed": growth_mb <= args.max_rss_growth_mb,
                   "line": f"RSS {growth_mb:+.1f} MB after warm-up ({settled:.0f} -> {windows[-1].rss_mb:.0f} MB, "
                           f"{slope:+.2f} MB/min; limit {args.max_rss_growth_mb:.0f} MB)"},
        "latency": {"passed": bool(last <= latency_limit),
                    "line": f"median {first:.0f} ms in the first window, {last:.0f} ms in the last "
                            f"(limit {latency_limit:.0f} ms)"},
        "output": {"passed": not silent and counters["bad_frames"] == 0 and counters["failed_frames"] == 0,
                   "line": f"windows without results: {silent or 'none'}; {counters['bad_frames']} bad, "
                           f"{counters['failed_frames']} failed frames"},
        "alive": {"passed": alive and exit_code == 0,
                  "line": f"node {'alive' if alive else 'DEAD'} at the end, exit code {exit_code} on Ctrl-C"},
    }


def soak(args: argparse.Namespace, checkpoint: Optional[Path], log_path: Path) -> dict[str, Any]:
    """Run the soak; the report (windows, verdicts, totals)."""
    import psutil

    from segaff_ros.processes import NodeProcess

    width, height = (int(v) for v in args.size.lower().split("x"))
    ros_args = ["-p", f"device:={args.device}", "-p", f"backend:={args.backend}",
                "-p", f"input_height:={args.input}", "-p", f"input_width:={args.input}",
                "-p", f"cpu_threads:={args.threads or 0}"]
    if checkpoint is not None:
        ros_args += ["-p", f"checkpoint:={checkpoint}"]
    client = SoakClient(width, height, args.rate_hz)
    node = NodeProcess(log_path, ros_args, "segaff_ros.perception_node", cwd=REPO_ROOT)
    windows: list[Window] = []
    try:
        if not client.wait_for_node(180.0):
            raise SystemExit(f"the node did not come up; its log:\n{node.log_tail(40)}")
        process = psutil.Process(node.popen.pid)
        client.start_publishing()
        deadline = time.monotonic() + 120.0
        while not client.snapshot()[0]:
            if time.monotonic() > deadline or not node.alive():
                raise SystemExit(f"no result within 120 s; the node's log:\n{node.log_tail(40)}")
            time.sleep(0.1)
        start = time.time()
        print(f"node pid {node.popen.pid}, {width}x{height} at {args.rate_hz:g} Hz, input {args.input}, "
              f"{args.device}; windows of {args.window_s:g} s for {args.minutes:g} min", flush=True)
        seen, sent_before = len(client.snapshot()[0]), client.snapshot()[2]
        while time.time() - start < args.minutes * 60.0 - 1e-6 and node.alive():
            time.sleep(min(args.window_s, max(args.minutes * 60.0 - (time.time() - start), 0.0)))
            results, counters, sent = client.snapshot()
            window = make_window(time.time() - start, process.memory_info().rss, [lat for _, lat in results[seen:]],
                                 sent - sent_before, counters)
            seen, sent_before = len(results), sent
            windows.append(window)
            print(window.line(), flush=True)
        alive = node.alive()
    finally:
        client.close()
        exit_code = node.stop()
    if not windows:
        raise SystemExit(f"the node died before the first window; its log:\n{node.log_tail(40)}")
    results, counters, sent = client.snapshot()
    report = {
        "windows": [asdict(w) for w in windows],
        "verdicts": verdicts(windows, args, alive, exit_code),
        "frames_sent": sent,
        "publish_failures": client.publish_failures,  # frames the middleware refused to send (back-pressure)
        "results": len(results),
        "node_alive": alive,
        "node_exit_code": exit_code,
    }
    print(f"frames sent {sent}, refused by the middleware {client.publish_failures}", flush=True)
    for name, verdict in report["verdicts"].items():
        print(f"verdict {name}: {'OK' if verdict['passed'] else 'FAILED'}: {verdict['line']}", flush=True)
    return report


def main() -> int:
    """Soak and report; 0 when every verdict holds."""
    args = parse_args()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    from segaff_ros.processes import use_large_images_profile

    print(f"Fast DDS profile: {use_large_images_profile()}", flush=True)
    if "ROS_DOMAIN_ID" not in os.environ:
        from segaff_ros.processes import claim_ros_domain_id

        os.environ["ROS_DOMAIN_ID"] = str(claim_ros_domain_id())
    with tempfile.TemporaryDirectory(prefix="segaff_soak_") as directory:
        checkpoint = random_checkpoint(Path(directory), args.random) if args.random else args.checkpoint
        report = soak(args, checkpoint, args.node_log or Path(directory) / "node.log")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if all(v["passed"] for v in report["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
