"""``python -m segaff_ros.demo`` (console script ``segaff-demo``): SegAffordance end to end over real DDS.

Starts the synthetic RGB-D camera and the perception node as separate processes, publishes an instruction
(``"open the top drawer"`` by default) once a second until results arrive, as ``ros2 topic pub`` would,
waits for ``--num-results`` results, writes the last one to ``OUT/result.json`` and its debug overlay to
``OUT/overlay.png``, prints a summary and stops both processes (SIGINT, then SIGKILL after a timeout; also
on Ctrl-C, SIGTERM and errors). The processes' logs are ``OUT/camera.log`` and ``OUT/perception.log``.

The scene is the first synthetic scene in which the instruction names a part, preferably among others of
its kind (:func:`segaff_ros.synthetic_camera.choose_scene`), and the camera sways slowly about that part.
Topics are those of ``launch/demo.launch.py``: the camera under ``/camera``, the instruction on
``/segaff/instruction``, the node's outputs under ``/segaff_perception``. The demo uses its own
``ROS_DOMAIN_ID`` unless one is set, and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless a range is set.

Exit status: 0 on success; 1 when the demo failed (the reason and the logs' tails on stderr); 2 for bad
arguments (e.g. no checkpoint); 130 after Ctrl-C (or SIGTERM / SIGHUP).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Optional, Union

import cv2
import numpy as np
import rclpy
from geometry_msgs.msg import Point, Quaternion, Vector3
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from segaff_core.crash_reports import enable_crash_tracebacks
from segaff_core.paths import find_default_checkpoint
from segaff_core.synth.sample import find_scene
from segaff_msgs.msg import AffordanceResult
from segaff_ros.conversions import image_to_numpy, stamp_to_ns
from segaff_ros.processes import NodeProcess, claim_ros_domain_id, use_large_images_profile
from segaff_ros.publishing import publish_or_warn
from segaff_ros.synthetic_camera import choose_scene

log = logging.getLogger("segaff_demo")

DEFAULT_INSTRUCTION = "open the top drawer"
#: ``segaff_core.checkpoint.DEFAULT_CHECKPOINT``, found here without importing torch.
DEFAULT_CHECKPOINT = find_default_checkpoint()
CAMERA_NAMESPACE = "/camera"  # as launch/demo.launch.py
INSTRUCTION_TOPIC = "/segaff/instruction"  # as launch/demo.launch.py
PERCEPTION_NODE = "/segaff_perception"
CAMERA_TOPICS = ("rgb/image", "depth/image", "rgb/camera_info")
CAMERA_RATE_HZ = 10.0
STOP_TIMEOUT_S = 15.0
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130  # and 2: bad arguments (argparse)
_LOG_TAIL_LINES = 25
#: What the perception node logs when its configure transition fails (it then stays up, unconfigured).
_CONFIGURE_FAILED = "configure failed:"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGINT: KeyboardInterrupt, the others: Interrupted


class DemoFailure(RuntimeError):
    """The demo could not produce its result; the message says why (and shows the logs that tell more)."""


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything and exit 130."""


@dataclass(frozen=True)
class DemoOptions:
    """What the command line asks for."""

    instruction: str = DEFAULT_INSTRUCTION
    checkpoint: Path = DEFAULT_CHECKPOINT
    out: Path = Path("out/demo")
    timeout_s: float = 180.0
    device: str = "auto"
    num_results: int = 3
    seed: Optional[int] = None  # None: the scene chosen for the instruction
    width: int = 320
    height: int = 240


@dataclass
class Received:
    """What the demo's own node has received (spun from the main thread only: no locks)."""

    camera_frames: list[float] = field(default_factory=list)  # wall-clock receive times of camera_info
    results: list[tuple[float, AffordanceResult]] = field(default_factory=list)  # (wall-clock receive time, msg)
    debug_images: dict[int, Image] = field(default_factory=dict)  # stamp (ns) -> overlay, the newest few


@dataclass(frozen=True)
class DemoOutcome:
    """The result the demo reports and what it took to get it."""

    result: AffordanceResult
    overlay_rgb: np.ndarray
    num_results: int
    latency_s: float  # image stamp -> result received by the demo, the reported result
    rate_hz: Optional[float]  # camera frames answered per second, from the results' stamps (None: one result)
    camera_rate_hz: Optional[float]  # camera frames received per second by the demo
    first_result_s: float  # from the demo's start, the model's loading included
    seed: int
    part_named: bool  # whether the scene has the part the instruction names


def parse_args(argv: Optional[list[str]] = None) -> DemoOptions:
    """The options of the command line (argparse exits 2 with a message on bad ones)."""
    defaults = DemoOptions()
    parser = argparse.ArgumentParser(
        prog="segaff-demo",
        description="Run the synthetic RGB-D camera and the SegAffordance perception node over ROS 2, "
        "send an instruction, save the answer (overlay.png, result.json) and print a summary.",
    )
    parser.add_argument("--instruction", default=defaults.instruction, help="what to do (default: %(default)r)")
    parser.add_argument("--checkpoint", type=Path, default=defaults.checkpoint,
                        help="SegAffordance .ckpt (default: the shipped checkpoints/segaff_default.ckpt)")
    parser.add_argument("--out", type=Path, default=defaults.out, help="output folder (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, dest="timeout_s",
                        help="seconds to wait for the results, model loading included (default: %(default)s)")
    parser.add_argument("--device", default=defaults.device, help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--num-results", type=int, default=defaults.num_results,
                        help="results to wait for (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="synthetic scene seed (default: the first scene where the instruction names a part)")
    parser.add_argument("--width", type=int, default=defaults.width, help="camera width, px (default: %(default)s)")
    parser.add_argument("--height", type=int, default=defaults.height,
                        help="camera height, px (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.num_results < 1:
        parser.error("--num-results must be at least 1")
    if args.timeout_s <= 0:
        parser.error("--timeout must be positive")
    if not args.instruction.strip():
        parser.error("--instruction must not be empty (an empty instruction stops the node)")
    if not args.checkpoint.is_file():
        hint = (" (the shipped default: train one, see the README, or pass --checkpoint PATH)"
                if args.checkpoint == DEFAULT_CHECKPOINT else "")
        parser.error(f"checkpoint {args.checkpoint} does not exist{hint}")
    return DemoOptions(args.instruction.strip(), args.checkpoint.resolve(), args.out, args.timeout_s, args.device,
                       args.num_results, args.seed, args.width, args.height)


def configure_ros_environment() -> str:
    """Give this process and its children their own DDS domain, localhost discovery and the large-image Fast
    DDS profile, unless the user set them; must run before ``rclpy.init``. Returns a description for the log."""
    chosen = []
    if not os.environ.get("ROS_DOMAIN_ID"):
        os.environ["ROS_DOMAIN_ID"] = str(claim_ros_domain_id())
        chosen.append("ROS_DOMAIN_ID")
    if not os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        chosen.append("ROS_AUTOMATIC_DISCOVERY_RANGE")
    profile = use_large_images_profile()
    origin = f" ({', '.join(chosen)} chosen by the demo)" if chosen else " (as set)"
    return (f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}{origin}, "
            f"Fast DDS profile {profile}")


def _raise_interrupted(signum: int, frame: Optional[FrameType]) -> None:
    raise Interrupted(signal.Signals(signum).name)


class DemoNode:
    """The demo's rclpy node in its own context: publishes the instruction, records the node's answers."""

    def __init__(self, instruction: str) -> None:
        self.instruction = instruction
        self.received = Received()
        self.context = rclpy.Context()
        # The demo handles SIGINT itself (KeyboardInterrupt), so that it always stops its processes first.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("segaff_demo", context=self.context)
        self._message = String(data=instruction)
        self.instruction_pub = self.node.create_publisher(String, INSTRUCTION_TOPIC, 10)
        qos = QoSProfile(depth=5)
        self.node.create_subscription(CameraInfo, f"{CAMERA_NAMESPACE}/rgb/camera_info", self._on_camera_info, qos)
        self.node.create_subscription(AffordanceResult, f"{PERCEPTION_NODE}/result", self._on_result, qos)
        self.node.create_subscription(Image, f"{PERCEPTION_NODE}/debug_image", self._on_debug_image, qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.received.camera_frames.append(time.time())

    def _on_result(self, msg: AffordanceResult) -> None:
        if msg.instruction == self.instruction:  # not an answer to an instruction someone else sent
            self.received.results.append((time.time(), msg))

    def _on_debug_image(self, msg: Image) -> None:
        images = self.received.debug_images
        images[stamp_to_ns(msg.header.stamp)] = msg
        while len(images) > 20:
            del images[next(iter(images))]

    def publish_instruction(self) -> None:
        publish_or_warn(self.instruction_pub, self._message, self.node.get_logger())

    def perception_node_ready(self) -> bool:
        """Whether the perception node subscribes to the camera (it does once active: model loaded)."""
        return self.node.count_subscribers(f"{CAMERA_NAMESPACE}/rgb/image") > 0

    def spin_once(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=timeout_s)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _pick_result(received: Received, wanted: int) -> Optional[tuple[int, AffordanceResult, Image]]:
    """(index, result, debug image) of the newest result among the ``wanted``-th and later whose debug image
    (same stamp) has arrived; None while there is none."""
    for index in range(len(received.results) - 1, wanted - 2, -1):
        result = received.results[index][1]
        image = received.debug_images.get(stamp_to_ns(result.header.stamp))
        if image is not None:
            return index, result, image
    return None


def _camera_args(options: DemoOptions, seed: int) -> list[str]:
    return [
        "-r", f"__ns:={CAMERA_NAMESPACE}",
        "-p", f"seed:={seed}",
        "-p", f"target_instruction:={options.instruction}",
        "-p", f"width:={options.width}",
        "-p", f"height:={options.height}",
        "-p", f"rate_hz:={CAMERA_RATE_HZ}",
    ]


def _perception_args(options: DemoOptions) -> list[str]:
    remaps = [("instruction", INSTRUCTION_TOPIC)] + [(t, f"{CAMERA_NAMESPACE}/{t}") for t in CAMERA_TOPICS]
    return [
        "-p", f"checkpoint:={options.checkpoint}",
        "-p", f"device:={options.device}",
        *[arg for name, target in remaps for arg in ("-r", f"{name}:={target}")],
    ]


def _tail(process: NodeProcess) -> str:
    return f"--- last lines of {process.log_path} ---\n{process.log_tail(_LOG_TAIL_LINES)}"


def run(options: DemoOptions) -> DemoOutcome:
    """Start the processes, send the instruction, wait for the results; DemoFailure when that fails.

    The processes and the demo node are stopped before this returns or raises (also on Interrupted).
    """
    started = time.time()
    options.out.mkdir(parents=True, exist_ok=True)
    if options.seed is not None:
        seed = options.seed
        part_named = find_scene(options.instruction, [seed]) is not None
    else:
        chosen = choose_scene(options.instruction)
        seed, part_named = (chosen, True) if chosen is not None else (0, False)
    if not part_named:
        log.warning("scene %d has no part that %r names: the answer can only be a guess", seed, options.instruction)
    log.info("scene %d, camera %dx%d at %.0f Hz; %s", seed, options.width, options.height, CAMERA_RATE_HZ,
             configure_ros_environment())
    processes: list[NodeProcess] = []
    demo_node: Optional[DemoNode] = None
    try:
        camera = NodeProcess(options.out / "camera.log", _camera_args(options, seed), "segaff_ros.synthetic_camera")
        processes.append(camera)
        perception = NodeProcess(options.out / "perception.log", _perception_args(options),
                                 "segaff_ros.perception_node")
        processes.append(perception)
        log.info("started the synthetic camera (pid %d) and the perception node (pid %d, %s on %s); logs in %s",
                 camera.popen.pid, perception.popen.pid, options.checkpoint.name, options.device, options.out)
        demo_node = DemoNode(options.instruction)
        picked = _wait_for_results(options, demo_node, camera, perception, started)
    finally:
        _stop(processes, demo_node)
    index, result, image = picked
    results = demo_node.received.results[: index + 1]
    stamps_s = [stamp_to_ns(r.header.stamp) * 1e-9 for _, r in results]
    span_s = stamps_s[-1] - stamps_s[0]
    return DemoOutcome(
        result=result,
        overlay_rgb=image_to_numpy(image),
        num_results=index + 1,
        latency_s=results[-1][0] - stamps_s[-1],
        rate_hz=(len(results) - 1) / span_s if span_s > 0 else None,
        camera_rate_hz=_rate(demo_node.received.camera_frames),
        first_result_s=results[0][0] - started,
        seed=seed,
        part_named=part_named,
    )


def _wait_for_results(options: DemoOptions, demo_node: DemoNode, camera: NodeProcess, perception: NodeProcess,
                      started: float) -> tuple[int, AffordanceResult, Image]:
    """Spin the demo node until ``num_results`` results (and the overlay of the last) arrived; ``started`` is
    the demo's start (wall clock, like the receive times)."""
    deadline = started + options.timeout_s
    next_instruction = 0.0
    ready_logged = first_logged = False
    received = demo_node.received
    while True:
        demo_node.spin_once(0.1)
        now = time.time()
        for process, name in ((camera, "synthetic camera"), (perception, "perception node")):
            if not process.alive():
                raise DemoFailure(f"the {name} exited (code {process.popen.returncode}) before the demo ended\n"
                                  f"{_tail(process)}")
        if not received.results and now >= next_instruction:  # sticky in the node: until it answers
            demo_node.publish_instruction()
            next_instruction = now + 1.0
        if not ready_logged and _CONFIGURE_FAILED in perception.log():
            raise DemoFailure(f"the perception node could not be configured\n{_tail(perception)}")
        if not ready_logged and demo_node.perception_node_ready():
            log.info("perception node ready after %.1f s; sent %r on %s", now - started, options.instruction,
                     INSTRUCTION_TOPIC)
            ready_logged = True
        if not first_logged and received.results:
            log.info("first result after %.1f s", now - started)
            first_logged = True
        picked = _pick_result(received, options.num_results)
        if picked is not None:
            return picked
        if now > deadline:
            if not received.camera_frames:
                reason = "the synthetic camera published no frame"
            elif not demo_node.perception_node_ready():
                reason = "the perception node never became ready (still loading its model?)"
            else:
                reason = f"received {len(received.results)} of {options.num_results} results"
            raise DemoFailure(f"no result within --timeout {options.timeout_s:g} s: {reason}\n"
                              f"{_tail(camera)}\n{_tail(perception)}")


def _stop(processes: list[NodeProcess], demo_node: Optional[DemoNode]) -> None:
    """Stop the node processes (newest first; SIGINT, SIGKILL after a timeout) and the demo node, ignoring
    further Ctrl-C, SIGTERM and SIGHUP meanwhile so that nothing is left running."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        running = [process.alive() for process in processes]  # the others' exit was reported already
        for process in processes:
            process.interrupt()
        for process, was_running in reversed(list(zip(processes, running))):
            code = process.stop(STOP_TIMEOUT_S)
            if not was_running:
                continue
            if code == -signal.SIGKILL:
                log.warning("%s did not stop within %.0f s of Ctrl-C: killed (see %s)", process.module,
                            STOP_TIMEOUT_S, process.log_path)
            else:  # 0 once running; interrupted while starting, whatever the interrupted import raised
                log.info("%s stopped (exit code %d)", process.module, code)
        if demo_node is not None:
            demo_node.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _rate(times: list[float]) -> Optional[float]:
    """Events per second of increasing ``times`` (None for fewer than two)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


def _vector(v: Union[Point, Vector3]) -> list[float]:
    return [float(v.x), float(v.y), float(v.z)]


def _approach(q: Quaternion) -> list[float]:
    """+z of the orientation ``q`` (the approach direction into the surface)."""
    x, y, z, w = float(q.x), float(q.y), float(q.z), float(q.w)
    return [2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y)]


def result_to_dict(result: AffordanceResult) -> dict[str, Any]:
    """The fields of a ``segaff_msgs/AffordanceResult`` as JSON-ready values (the mask as its pixel count)."""
    pose = result.interaction_pose
    rotation = result.motion_type == AffordanceResult.ROTATION
    mask = np.frombuffer(bytes(result.mask.data), dtype=np.uint8)  # mono8, 255 = part (padding bytes are 0)
    return {
        "instruction": result.instruction,
        "frame_id": result.header.frame_id,
        "stamp": {"sec": int(result.header.stamp.sec), "nanosec": int(result.header.stamp.nanosec)},
        "mask_score": float(result.mask_score),
        "mask_pixels": int(np.count_nonzero(mask)),
        "interaction_px": [float(result.interaction_u), float(result.interaction_v)],
        "interaction_pose": {
            "position": _vector(pose.position),
            "orientation_xyzw": [float(pose.orientation.x), float(pose.orientation.y), float(pose.orientation.z),
                                 float(pose.orientation.w)],
        },
        "approach": _approach(pose.orientation),
        "motion_type": "rotation" if rotation else "translation",
        "motion_type_confidence": float(result.motion_type_confidence),
        "axis": _vector(result.axis),
        "origin": _vector(result.axis_origin),
        "trajectory": [_vector(p) for p in result.trajectory],
        "inference_time_ms": float(result.inference_time_ms),
    }


def write_outputs(outcome: DemoOutcome, options: DemoOptions) -> tuple[Path, Path]:
    """``overlay.png`` (the debug image, BGR for OpenCV) and ``result.json``; returns their paths."""
    overlay_path, result_path = options.out / "overlay.png", options.out / "result.json"
    if not cv2.imwrite(str(overlay_path), cv2.cvtColor(outcome.overlay_rgb, cv2.COLOR_RGB2BGR)):
        raise DemoFailure(f"cannot write {overlay_path}")
    document = result_to_dict(outcome.result)
    document["demo"] = {
        "scene_seed": outcome.seed,
        "scene_has_the_named_part": outcome.part_named,
        "checkpoint": str(options.checkpoint),
        "device": options.device,
        "image_size": [options.width, options.height],
        "num_results": outcome.num_results,
        "latency_ms": outcome.latency_s * 1e3,
        "frames_answered_per_s": outcome.rate_hz,
        "camera_frames_per_s": outcome.camera_rate_hz,
        "first_result_s": outcome.first_result_s,
    }
    result_path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    return overlay_path, result_path


def summary(outcome: DemoOutcome, overlay_path: Path, result_path: Path) -> str:
    """One paragraph: what was found, where, how it moves, how fast."""
    fields = result_to_dict(outcome.result)
    u, v = fields["interaction_px"]
    x, y, z = fields["interaction_pose"]["position"]
    axis = ", ".join(f"{c:+.2f}" for c in fields["axis"])
    trajectory = np.asarray(fields["trajectory"])
    travel_m = float(np.linalg.norm(trajectory[-1] - trajectory[0]))
    motion = fields["motion_type"]
    about = "" if motion == "translation" else " about an axis through ({:.2f}, {:.2f}, {:.2f}) m".format(
        *fields["origin"])
    rate = f"{outcome.rate_hz:.1f} frames answered per second" if outcome.rate_hz is not None else "one result"
    if outcome.camera_rate_hz is not None:
        rate += f" of the camera's {outcome.camera_rate_hz:.1f}"
    scene = f"synthetic scene {outcome.seed}" + ("" if outcome.part_named else " (which has no such part)")
    return (
        f"SegAffordance answered {fields['instruction']!r} {outcome.num_results} time(s) on {scene} "
        f"(frame {fields['frame_id']!r}). The part's mask covers {fields['mask_pixels']} px (score "
        f"{fields['mask_score']:.2f}); the interaction point is at pixel ({u:.0f}, {v:.0f}), "
        f"({x:+.2f}, {y:+.2f}, {z:.2f}) m in the camera's optical frame. Predicted motion: {motion} "
        f"(confidence {fields['motion_type_confidence']:.2f}) along ({axis}){about}; the 20-point trajectory "
        f"moves the handle {travel_m:.2f} m. Model inference {fields['inference_time_ms']:.0f} ms, image-to-result "
        f"latency {outcome.latency_s * 1e3:.0f} ms, {rate}; first result {outcome.first_result_s:.1f} s after the "
        f"start (model loading included). Overlay: {overlay_path}; result: {result_path}."
    )


def main(argv: Optional[list[str]] = None) -> int:
    """Run the demo; the exit status of the module docstring."""
    enable_crash_tracebacks()
    logging.basicConfig(level=logging.INFO, format="[demo] %(message)s", stream=sys.stderr)
    options = parse_args(argv)
    handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in _STOP_SIGNALS if sig != signal.SIGINT}
    try:
        outcome = run(options)
        overlay_path, result_path = write_outputs(outcome, options)
    except DemoFailure as failure:
        log.error("failed: %s", failure)
        return EXIT_FAILED
    except (KeyboardInterrupt, Interrupted):
        log.error("interrupted: the camera and the perception node were stopped")
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print(summary(outcome, overlay_path, result_path))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
