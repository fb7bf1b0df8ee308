"""The perception node under a camera's stream (open loop), with the bare Predictor and the model-free floor.

    .venv/bin/python bench/camera_rate.py                          # 15, 30 and 60 Hz, 640x480, node defaults
    .venv/bin/python bench/camera_rate.py --rates 30 --node-param cpu_threads:=1
    .venv/bin/python bench/camera_rate.py --checkpoint C.ckpt --size 320x240 --seconds 20

A camera stand-in (``bench/rate_camera.py``) runs in a process of its own and publishes RGB-D frames at each
rate in turn, stamped when sent, whether or not anything keeps up (open loop, as a driver does). The node
runs as users start it (``segaff-perception``, its defaults, the shipped checkpoint unless ``--checkpoint``;
``--node-param`` adds parameters). This process publishes the instruction as ``ros2 topic pub`` does and
times every ``~/result`` from its header stamp to its arrival here. Per rate, over ``--seconds`` after a
warm-up: frames sent, results per second, latency median / p90 / max, the node's drops from
``/diagnostics`` (replaced by a newer frame, stale), and whether a queue grows (latency of the window's
last third against its first, the node's RSS). At ``--services-rate`` (30 Hz) the services are timed too
while frames stream in: ``~/query``, ``set_parameters`` (what ``ros2 param set`` calls) and the lifecycle
``get_state`` / ``get_available_transitions``.

Then, in the same run: the bare ``Predictor`` on the same frame in this process (same checkpoint, backend
and threads as the node), and ``bench/transport_floor_node.py`` in the node's place at each rate: what
any Python node pays for receiving a 640x480 RGB-D frame and answering over DDS.
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
from typing import Any, Callable, Optional

import numpy as np
from node_latency import isolate_ros

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE = "/segaff_perception"
BENCH = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: the shipped one)")
    parser.add_argument("--rates", default="15,30,60", help="camera rates, Hz, comma-separated (default 15,30,60)")
    parser.add_argument("--size", default="640x480", help="camera WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window per rate, s (default 15)")
    parser.add_argument("--warmup", type=float, default=4.0, help="warm-up per rate after the first result, s")
    parser.add_argument("--services-rate", type=float, default=30.0,
                        help="the rate at which the services are timed (default 30; 0: not timed)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a parameter of the node (repeatable), e.g. cpu_threads:=1")
    parser.add_argument("--no-floor", action="store_true", help="skip the model-free floor")
    parser.add_argument("--node-log", type=Path, help="keep the node's log in this file")
    return parser.parse_args()


# ---- the measuring node ----------------------------------------------------------------------------


@dataclass
class ServiceTimes:
    """Response times of the services timed while frames stream in, ms, by service."""

    times_ms: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, elapsed_ms: Optional[float]) -> None:
        if elapsed_ms is None:
            self.failures[name] = self.failures.get(name, 0) + 1
        else:
            self.times_ms.setdefault(name, []).append(elapsed_ms)


class Listener:
    """This process's rclpy node: publishes the instruction once a second, records each ``~/result`` (arrival
    wall time, stamp) and the node's newest ``/diagnostics`` values, and calls the node's services."""

    def __init__(self, instruction: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from segaff_msgs.msg import AffordanceResult

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("segaff_camera_rate_bench", context=self.context)
        self._lock = threading.Lock()
        self.results: list[tuple[float, int, float]] = []  # (arrival wall time s, header stamp ns, model ms)
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(AffordanceResult, f"{NODE}/result", self._on_result, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        publisher = self.node.create_publisher(String, "instruction", 10)
        self.node.create_timer(1.0, lambda: publisher.publish(String(data=instruction)))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_result(self, msg: Any) -> None:
        arrived = time.time()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self.results.append((arrived, stamp_ns, msg.inference_time_ms))

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.hardware_id == NODE:
                with self._lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def results_between(self, start_s: float, end_s: float) -> tuple[list[float], list[float]]:
        """Latencies and the node's model times (ms) of the results that arrived in [start_s, end_s) (wall
        time)."""
        with self._lock:
            window = [(1e3 * (arrived - stamp_ns * 1e-9), model_ms) for arrived, stamp_ns, model_ms in self.results
                      if start_s <= arrived < end_s]
        return [latency for latency, _ in window], [model_ms for _, model_ms in window]

    def first_result_after(self, start_s: float, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if any(arrived >= start_s for arrived, _, _ in self.results):
                    return True
            time.sleep(0.05)
        return False

    def counter(self, key: str) -> int:
        with self._lock:
            return int(float(self.diagnostics.get(key, "0")))

    def call(self, srv_type: type, name: str, request: Any, timeout_s: float = 10.0) -> Optional[tuple[float, Any]]:
        """(response time ms, response) of one call, or None without an answer within ``timeout_s``."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                return None
            done = threading.Event()
            started = time.perf_counter()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            if not done.wait(timeout_s):
                return None
            return 1e3 * (time.perf_counter() - started), future.result()
        finally:
            self.node.destroy_client(client)

    def lifecycle_state(self) -> Optional[str]:
        from lifecycle_msgs.srv import GetState

        answer = self.call(GetState, f"{NODE}/get_state", GetState.Request(), timeout_s=2.0)
        return answer[1].current_state.label if answer else None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=10.0)


def time_services(listener: Listener, instruction: str, seconds: float) -> ServiceTimes:
    """Each service in turn, twice a second, for ``seconds`` (ms from the call to its answer)."""
    from lifecycle_msgs.srv import GetAvailableTransitions, GetState
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from segaff_msgs.srv import Query

    lengths = iter(np.tile([0.25, 0.2], 1000))
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("~/query", lambda: listener.call(Query, f"{NODE}/query", Query.Request(instruction=instruction))),
        ("set_parameters (ros2 param set)", lambda: listener.call(SetParameters, f"{NODE}/set_parameters",
         SetParameters.Request(parameters=[Parameter("axis_marker_length_m", value=float(next(lengths)))
                                           .to_parameter_msg()]))),
        ("lifecycle get_state", lambda: listener.call(GetState, f"{NODE}/get_state", GetState.Request())),
        ("lifecycle get_available_transitions", lambda: listener.call(
            GetAvailableTransitions, f"{NODE}/get_available_transitions", GetAvailableTransitions.Request())),
    ]
    times = ServiceTimes()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, call in calls:
            started = time.monotonic()
            answer = call()
            times.add(name, answer[0] if answer else None)
            time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
    return times


# ---- processes ---------------------------------------------------------------------------------------


def node_command(checkpoint: Optional[Path], params: list[str]) -> list[str]:
    """``segaff-perception --ros-args ...`` as a user starts it (the venv's entry point)."""
    entry = Path(sys.prefix) / "bin" / "segaff-perception"
    command = [str(entry)] if entry.is_file() else [sys.executable, "-m", "segaff_ros.perception_node"]
    ros_args = [arg for param in params for arg in ("-p", param)]
    if checkpoint is not None:
        ros_args += ["-p", f"checkpoint:={checkpoint}"]
    return [*command, "--ros-args", *ros_args] if ros_args else command


class Camera:
    """``rate_camera.py`` at ``rate_hz`` in its own process."""

    def __init__(self, rate_hz: float, size: str) -> None:
        self.popen = subprocess.Popen([sys.executable, str(BENCH / "rate_camera.py"), "--rate", str(rate_hz),
                                       "--size", size], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        ready = self.popen.stdout.readline()
        if "ready" not in ready:
            raise SystemExit(f"the camera did not start: {ready!r}")

    def stop(self) -> str:
        self.popen.send_signal(signal.SIGINT)
        out, _ = self.popen.communicate(timeout=30)
        return out.strip()


@dataclass
class RateResult:
    rate_hz: float
    camera: str
    answered_hz: float
    latencies_ms: list[float]
    model_ms: list[float]
    first_third_ms: float
    last_third_ms: float
    replaced: int = 0
    stale: int = 0
    rss_growth_mb: float = 0.0
    services: Optional[ServiceTimes] = None


def run_rate(listener: Listener, rate_hz: float, args: argparse.Namespace, node_pid: Optional[int],
             instruction: str, time_the_services: bool) -> RateResult:
    """One rate: camera on, warm-up, the measured window (then the services, when asked), camera off."""
    import psutil

    camera = Camera(rate_hz, args.size)
    try:
        if not listener.first_result_after(time.time(), 60.0):
            raise SystemExit(f"no result within 60 s at {rate_hz} Hz")
        time.sleep(args.warmup)
        process = psutil.Process(node_pid) if node_pid else None
        rss_before = process.memory_info().rss if process else 0
        replaced, stale = listener.counter("dropped_replaced"), listener.counter("dropped_stale")
        start = time.time()
        time.sleep(args.seconds)
        end = time.time()
        time.sleep(1.2)  # the diagnostics of the window's last second
        result = RateResult(rate_hz, "", 0.0, [], [], 0.0, 0.0)
        result.latencies_ms, result.model_ms = listener.results_between(start, end)
        result.answered_hz = len(result.latencies_ms) / (end - start)
        third = max(len(result.latencies_ms) // 3, 1)
        result.first_third_ms = float(np.median(result.latencies_ms[:third])) if result.latencies_ms else 0.0
        result.last_third_ms = float(np.median(result.latencies_ms[-third:])) if result.latencies_ms else 0.0
        result.replaced = listener.counter("dropped_replaced") - replaced
        result.stale = listener.counter("dropped_stale") - stale
        result.rss_growth_mb = (process.memory_info().rss - rss_before) / 2**20 if process else 0.0
        if time_the_services:
            result.services = time_services(listener, instruction, args.seconds)
    finally:
        result_camera = camera.stop()
    result.camera = result_camera
    return result


def run_node(command: list[str], rates: list[float], args: argparse.Namespace, instruction: str,
             log_path: Path, services: bool) -> list[RateResult]:
    """Start ``command`` (the node or the floor), measure every rate, stop it with Ctrl-C."""
    listener = Listener(instruction)
    with open(log_path, "wb") as log:
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        if services:
            deadline = time.monotonic() + 180.0
            while listener.lifecycle_state() != "active":
                if time.monotonic() > deadline or node.poll() is not None:
                    raise SystemExit(f"the node did not become active; its log:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        else:
            time.sleep(2.0)
        return [run_rate(listener, rate, args, node.pid, instruction, services and rate == args.services_rate)
                for rate in rates]
    finally:
        interrupted = time.monotonic()
        node.send_signal(signal.SIGINT)
        code = node.wait(timeout=60)
        listener.close()
        print(f"{'the node' if services else 'the floor'}: exit code {code}, "
              f"{time.monotonic() - interrupted:.2f} s after Ctrl-C (ros2 launch sends SIGTERM at 5 s)")


# ---- the bare Predictor -------------------------------------------------------------------------------


def bare_predictor_ms(checkpoint: Optional[Path], params: list[str], size: str, calls: int = 40) -> list[float]:
    """The Predictor on the camera's first frame in this process, as the node builds it (backend, threads)."""
    import torch

    from segaff_core.inference import Predictor
    from segaff_core.synth.sample import scene_views

    values = dict(param.split(":=", 1) for param in params)
    threads = int(values.get("cpu_threads", "0")) or None
    if threads:
        torch.set_num_threads(threads)
    width, height = (int(v) for v in size.lower().split("x"))
    views, rng = scene_views(0)
    sample = views.view(rng, (height, width))
    predictor = Predictor.from_checkpoint(checkpoint, backend=values.get("backend", "auto"), threads=threads)
    instruction = sample.parts[0].descriptions[0]
    for _ in range(5):
        predictor(sample.rgb, sample.depth_m, instruction, sample.K)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        predictor(sample.rgb, sample.depth_m, instruction, sample.K)
        times.append(1e3 * (time.perf_counter() - started))
    print(f"bare Predictor: backend {predictor.backend}, input {predictor.input_size}, "
          f"{torch.get_num_threads()} torch threads")
    return times


def instruction_of_the_scene() -> str:
    from segaff_core.synth.sample import scene_views

    views, rng = scene_views(0)
    return views.view(rng, (120, 160)).parts[0].descriptions[0]


# ---- report ------------------------------------------------------------------------------------------


def row(name: str, result: RateResult, bare_ms: float) -> str:
    latencies = result.latencies_ms
    if not latencies:
        return f"| {name} | {result.rate_hz:g} Hz | {result.camera} | 0 | | | | | |"
    median, p90, worst = np.median(latencies), np.percentile(latencies, 90), max(latencies)
    return (f"| {name} | {result.rate_hz:g} Hz | {result.camera.replace('sent ', '')} | {result.answered_hz:.1f} Hz "
            f"| {median:.1f} / {p90:.1f} / {worst:.1f} ms | {median - bare_ms:+.1f} / {p90 - bare_ms:+.1f} ms "
            f"| {np.median(result.model_ms):.1f} ms | {result.replaced} / {result.stale} "
            f"| {result.first_third_ms:.1f} -> {result.last_third_ms:.1f} ms, RSS {result.rss_growth_mb:+.1f} MB |")


def main() -> int:
    args = parse_args()
    isolate_ros()
    rates = [float(r) for r in args.rates.split(",")]
    instruction = instruction_of_the_scene()
    with tempfile.TemporaryDirectory(prefix="segaff_camera_rate_") as tmp:
        node_log = args.node_log or Path(tmp) / "node.log"
        node_results = run_node(node_command(args.checkpoint, args.node_param), rates, args, instruction, node_log,
                                services=True)
        floor_results = [] if args.no_floor else run_node(
            [sys.executable, str(BENCH / "transport_floor_node.py")], rates, args, instruction,
            Path(tmp) / "floor.log", services=False)
    bare = bare_predictor_ms(args.checkpoint, args.node_param, args.size)
    bare_ms = float(np.median(bare))

    print(f"\n{args.size}, {args.seconds:g} s per rate, node parameters: {' '.join(args.node_param) or 'defaults'}, "
          f"checkpoint: {args.checkpoint or 'shipped'}, instruction {instruction!r}, {os.cpu_count()} CPUs")
    print(f"bare Predictor on the same frame: median {bare_ms:.1f} ms, p90 {np.percentile(bare, 90):.1f} ms\n")
    print("| node | camera | camera sent | answered | latency median / p90 / max | median / p90 - bare "
          "| node's model time (median) | dropped replaced / stale | latency first -> last third, node RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in node_results:
        print(row("perception node", result, bare_ms))
    for result in floor_results:
        print(row("transport floor (no model)", result, 0.0))
    for result in node_results:
        if result.services is None:
            continue
        print(f"\nservices while {result.rate_hz:g} Hz streams in (ms from call to answer):")
        for name, times in result.services.times_ms.items():
            print(f"  {name:38s} n {len(times):3d}  median {np.median(times):7.1f}  p90 "
                  f"{np.percentile(times, 90):7.1f}  max {max(times):7.1f}")
        for name, count in result.services.failures.items():
            print(f"  {name:38s} {count} calls unanswered within 10 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
