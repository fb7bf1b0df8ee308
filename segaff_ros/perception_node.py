"""The ``segaff_perception`` node: synchronized RGB-D + a language instruction in, affordance out.

Subscribes to ``rgb/image``, ``depth/image``, ``rgb/camera_info`` (approximate-time synchronized) and
``instruction``; publishes under ``~/`` the part mask, interaction pose, axis marker, trajectory, a
MarkerArray, an ``AffordanceResult`` and optionally a debug overlay; serves ``~/query``.

Threads: the executor's callbacks only store messages. A worker thread runs the model on the newest
synchronized frame (a one-slot mailbox: frames arriving while it works replace each other, so no
backlog can grow). The ``~/query`` service runs in its own callback group and shares the model with the
worker under a lock. The model is loaded once, in ``_load_predictor`` at start-up.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy  # RCLError, as rclpy itself imports it
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.service import Service
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from segaff_core.inference import COMPILE_MODES, AffordancePrediction, Predictor
from segaff_core.visualize import draw_overlay
from segaff_msgs.msg import AffordanceResult
from segaff_msgs.srv import Query
from segaff_ros import conversions
from segaff_ros.diagnostics import PipelineStats, to_diagnostic_status
from segaff_ros.publishing import publish_or_warn
from segaff_ros.synchronizer import ApproximateTimeSynchronizer, LatestSlot

try:  # the ROS 2 package where installed; the package's own synchronizer.py (same policy) elsewhere
    import message_filters
except ImportError:
    message_filters = None

NODE_NAME = "segaff_perception"
#: Longer instructions are truncated (with a warning); the text encoder keeps 77 tokens anyway.
MAX_INSTRUCTION_CHARS = 1000
#: Synchronized inputs, in the order the synchronizer hands them over.
INPUT_TOPICS: tuple[tuple[str, type], ...] = (
    ("rgb/image", Image),
    ("depth/image", Image),
    ("rgb/camera_info", CameraInfo),
)
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_PRECISIONS = ("fp32", "fp16", "bf16")
_RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
_LOG_THROTTLE_S = 5.0


class _ForwardToNodeLogger(logging.Handler):
    """Forwards Python ``logging`` records of ``segaff_core`` (e.g. the Predictor's CUDA or fp16 fallback
    warning) to the node's logger, so they appear in the ROS log like the node's own lines."""

    def __init__(self, node: Node) -> None:
        super().__init__(level=logging.INFO)
        self._node = node

    def emit(self, record: logging.LogRecord) -> None:
        # One call per severity: rclpy keys its loggers on the calling line, which keeps one severity.
        text = f"{record.name}: {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self._node.get_logger().error(text)
        elif record.levelno >= logging.WARNING:
            self._node.get_logger().warning(text)
        else:
            self._node.get_logger().info(text)


class StartupError(RuntimeError):
    """A configuration the node cannot start with: bad parameter, missing or unloadable checkpoint."""


class BadFrame(ValueError):
    """A synchronized frame that cannot be processed (encoding, size, intrinsics, depth)."""


@dataclass(frozen=True)
class PerceptionParams:
    """The node's parameters (see ``config/perception.yaml``), read once at start-up."""

    checkpoint: str
    device: str
    precision: str
    cpu_threads: int
    channels_last: bool
    compile: bool
    compile_mode: str
    input_height: int
    input_width: int
    mask_threshold: float
    sync_slop_s: float
    sync_queue_size: int
    max_frame_age_s: float
    max_rate_hz: float
    image_qos: str
    publish_debug_image: bool
    min_depth_m: float
    max_depth_m: float
    axis_marker_length_m: float


@dataclass(frozen=True)
class Frame:
    """One synchronized input set, still as messages (decoded only when the worker takes it)."""

    rgb: Image
    depth: Image
    camera_info: CameraInfo
    stamp_ns: int


@dataclass(frozen=True)
class DecodedFrame:
    """A frame as the Predictor takes it."""

    rgb: np.ndarray
    depth_m: np.ndarray
    K: np.ndarray


def decode_frame(frame: Frame, min_depth_m: float, max_depth_m: float) -> DecodedFrame:
    """The frame as numpy; BadFrame with the reason when it cannot be used.

    What the worker (and ``~/query``) runs on every synchronized frame before the model: encodings,
    camera_info size, data length, K, and at least one depth pixel within ``[min_depth_m, max_depth_m]``.
    Raises nothing but BadFrame (a ValueError), whatever the messages hold.
    """
    if frame.rgb.encoding not in conversions.COLOR_ENCODINGS:
        raise BadFrame(
            f"RGB image encoding {frame.rgb.encoding!r} is not one of {tuple(conversions.COLOR_ENCODINGS)}"
        )
    if frame.depth.encoding not in conversions.DEPTH_ENCODINGS:
        raise BadFrame(
            f"depth image encoding {frame.depth.encoding!r} is not one of {tuple(conversions.DEPTH_ENCODINGS)}"
        )
    info = frame.camera_info
    if (info.width, info.height) not in ((0, 0), (frame.rgb.width, frame.rgb.height)):
        raise BadFrame(
            f"camera_info is for {info.width}x{info.height} but the RGB image is "
            f"{frame.rgb.width}x{frame.rgb.height}"
        )
    try:
        rgb = conversions.image_to_numpy(frame.rgb)
        depth_m = conversions.image_to_numpy(frame.depth)
        K = conversions.camera_info_to_K(info)
    except ValueError as error:
        raise BadFrame(str(error)) from error
    in_range = (depth_m >= min_depth_m) & (depth_m <= max_depth_m)
    if not in_range.any():
        raise BadFrame(f"depth image has no valid pixel within [{min_depth_m}, {max_depth_m}] m")
    return DecodedFrame(rgb, depth_m, K)


def _float_range(low: float, high: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=low, to_value=high, step=0.0)]


def _int_range(low: int, high: int, step: int = 1) -> list[IntegerRange]:
    return [IntegerRange(from_value=low, to_value=high, step=step)]


# name -> (default, description, descriptor keyword arguments)
_PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "checkpoint": ("", "SegAffordance .ckpt file; '' = the shipped default checkpoint", {}),
    "device": ("auto", "device of the model (CUDA asked for but absent: a warning, then the CPU)",
               {"additional_constraints": "auto, cpu, cuda or cuda:N"}),
    "precision": ("fp32", "inference precision (fp16 needs CUDA)", {"additional_constraints": "fp32, fp16 or bf16"}),
    "cpu_threads": (0, "torch intra-op CPU threads (0 = torch's default, one per core)",
                    {"integer_range": _int_range(0, 256)}),
    "channels_last": (False, "run the network in channels_last memory format (faster on CUDA tensor cores)", {}),
    "compile": (False, "torch.compile the per-frame network at start-up (a failed compilation falls back "
                       "to eager with a warning)", {}),
    "compile_mode": ("default", "torch.compile mode (max-autotune-no-cudagraphs: faster matrix products on the "
                                "CPU, slower start; reduce-overhead: CUDA graphs)",
                     {"additional_constraints": ", ".join(COMPILE_MODES)}),
    "input_height": (0, "model input height, px (multiple of 32; 0 = the checkpoint's training size)",
                     {"integer_range": _int_range(0, 1024, 32)}),
    "input_width": (0, "model input width, px (multiple of 32; 0 = the checkpoint's training size)",
                    {"integer_range": _int_range(0, 1024, 32)}),
    "mask_threshold": (0.5, "probability above which a pixel belongs to the part",
                       {"floating_point_range": _float_range(0.01, 0.99)}),
    "sync_slop_s": (0.05, "largest stamp difference within one synchronized RGB/depth/camera_info set, s",
                    {"floating_point_range": _float_range(0.0, 1.0)}),
    "sync_queue_size": (10, "messages kept per input while synchronizing", {"integer_range": _int_range(1, 100)}),
    "max_frame_age_s": (1.0, "frames older than this when the model is free are dropped, s (0 = no limit)",
                        {"floating_point_range": _float_range(0.0, 60.0)}),
    "max_rate_hz": (0.0, "most model runs per wall-clock second, also under use_sim_time: a compute budget "
                         "(0 = as fast as the model goes)",
                    {"floating_point_range": _float_range(0.0, 1000.0)}),
    "image_qos": ("reliable", "reliability of the image and camera_info subscriptions",
                  {"additional_constraints": "reliable (most camera drivers' default) or best_effort (for "
                                             "publishers with sensor-data QoS)"}),
    "publish_debug_image": (True, "publish ~/debug_image, an rgb8 overlay of the result (drawn only while "
                                  "someone subscribes)", {}),
    "min_depth_m": (0.1, "smallest valid depth, m", {"floating_point_range": _float_range(0.0, 100.0)}),
    "max_depth_m": (10.0, "largest valid depth, m", {"floating_point_range": _float_range(0.0, 100.0)}),
    "axis_marker_length_m": (0.2, "length of the axis arrow in RViz, m",
                             {"floating_point_range": _float_range(0.01, 10.0)}),
}


class PerceptionNode(Node):
    """SegAffordance on a ROS 2 camera: see the module docstring for topics and threads."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        # What destroy_node needs comes first: rclpy destroys a node that failed half-way through __init__.
        self._stop = threading.Event()
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._worker = threading.Thread(target=self._work, name="segaff_worker", daemon=True)
        self._core_log_handler = _ForwardToNodeLogger(self)
        core_logger = logging.getLogger("segaff_core")
        core_logger.setLevel(logging.INFO)
        core_logger.addHandler(self._core_log_handler)

        self._params: PerceptionParams = self._declare_parameters()
        self._predictor: Predictor = self._load_predictor()
        self._predictor_lock = threading.Lock()
        self._stats = PipelineStats([topic for topic, _ in INPUT_TOPICS])
        self._frame_lock = threading.Lock()
        self._latest_frame: Optional[Frame] = None
        self._instruction: str = ""
        self._encoded_instruction: str = ""
        self._last_logged: dict[str, float] = {}

        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5)
        self._mask_pub: Publisher = self.create_publisher(Image, "~/mask", output_qos)
        self._pose_pub: Publisher = self.create_publisher(PoseStamped, "~/interaction_pose", output_qos)
        self._axis_pub: Publisher = self.create_publisher(Marker, "~/axis_marker", output_qos)
        self._path_pub: Publisher = self.create_publisher(Path, "~/trajectory", output_qos)
        self._markers_pub: Publisher = self.create_publisher(MarkerArray, "~/markers", output_qos)
        self._result_pub: Publisher = self.create_publisher(AffordanceResult, "~/result", output_qos)
        self._debug_pub: Optional[Publisher] = (
            self.create_publisher(Image, "~/debug_image", output_qos) if self._params.publish_debug_image else None
        )
        self._diagnostics_pub: Publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        input_group = MutuallyExclusiveCallbackGroup()
        self._synchronizer: Optional[ApproximateTimeSynchronizer[Any]] = None
        self._filter_subscribers: list[Any] = []
        self._message_filter: Any = None
        self._subscribe_synchronized(input_group)
        self.create_subscription(String, "instruction", self._on_instruction, 10, callback_group=input_group)
        self._query_srv: Service = self.create_service(
            Query, "~/query", self._on_query, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self._diagnostics_timer: Timer = self.create_timer(1.0, self._on_diagnostics_timer, input_group)

        self._worker.start()
        self.get_logger().info(
            f"ready: synchronizing {', '.join(self.resolve_topic_name(t) for t, _ in INPUT_TOPICS)} "
            f"({'message_filters' if message_filters is not None else 'own synchronizer'}, "
            f"slop {self._params.sync_slop_s} s); waiting for an instruction on "
            f"{self.resolve_topic_name('instruction')}"
        )

    # ---- start-up ----------------------------------------------------------------------------------

    def _declare_parameters(self) -> PerceptionParams:
        """Declare every parameter with its descriptor and range; StartupError on a bad value."""
        values: dict[str, Any] = {}
        for name, (default, description, constraints) in _PARAMETERS.items():
            descriptor = ParameterDescriptor(description=description, read_only=True, **constraints)
            try:
                values[name] = self.declare_parameter(name, default, descriptor).value
            except (InvalidParameterValueException, InvalidParameterTypeException) as error:
                raise StartupError(f"parameter {name!r}: {error}") from error
        params = PerceptionParams(**values)
        if not _DEVICE_PATTERN.match(params.device):
            raise StartupError(f"parameter 'device' is {params.device!r}: expected auto, cpu, cuda or cuda:N")
        if params.precision not in _PRECISIONS:
            raise StartupError(f"parameter 'precision' is {params.precision!r}: expected one of {_PRECISIONS}")
        if params.compile_mode not in COMPILE_MODES:
            raise StartupError(f"parameter 'compile_mode' is {params.compile_mode!r}: expected one of {COMPILE_MODES}")
        if params.image_qos not in _RELIABILITIES:
            raise StartupError(
                f"parameter 'image_qos' is {params.image_qos!r}: expected one of {tuple(_RELIABILITIES)}"
            )
        if params.min_depth_m >= params.max_depth_m:
            raise StartupError(
                f"min_depth_m ({params.min_depth_m}) must be smaller than max_depth_m ({params.max_depth_m})"
            )
        return params

    def _load_predictor(self) -> Predictor:
        """Start-up: load the model from the checkpoint (the only place the model is loaded)."""
        path = self._params.checkpoint or None
        if path is not None and not os.path.isfile(path):
            raise StartupError(f"checkpoint {path!r} does not exist (parameter 'checkpoint')")
        started = time.monotonic()
        size = (self._params.input_height, self._params.input_width)
        try:
            predictor = Predictor.from_checkpoint(
                path,
                device=self._params.device,
                **({"input_size": size} if min(size) > 0 else {}),
                precision=self._params.precision,
                threads=self._params.cpu_threads or None,
                channels_last=self._params.channels_last,
                compile=self._params.compile,
                compile_mode=self._params.compile_mode,
                mask_threshold=self._params.mask_threshold,
                min_depth_m=self._params.min_depth_m,
                max_depth_m=self._params.max_depth_m,
            )
        except Exception as error:  # any failure to load is fatal at start-up, with the reason
            raise StartupError(
                f"cannot load checkpoint {path or '(shipped default)'}: {type(error).__name__}: {error}"
            ) from error
        warmup_s = predictor.warmup()  # the first real frame is then not slow
        self.get_logger().info(
            f"loaded {path or 'the shipped default checkpoint'} on {predictor.device} "
            f"({self._params.precision}, input {predictor.input_size[0]}x{predictor.input_size[1]}, "
            f"{torch.get_num_threads()} CPU threads) "
            f"in {time.monotonic() - started:.1f} s (warm-up {warmup_s:.1f} s)"
        )
        return predictor

    def _subscribe_synchronized(self, group: MutuallyExclusiveCallbackGroup) -> None:
        """Subscribe to the three camera inputs through an approximate-time synchronizer."""
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=5,
            reliability=_RELIABILITIES[self._params.image_qos],
        )
        if message_filters is not None:
            for index, (topic, msg_type) in enumerate(INPUT_TOPICS):
                subscriber = message_filters.Subscriber(self, msg_type, topic, qos_profile=qos, callback_group=group)
                subscriber.registerCallback(partial(self._count_input, index))
                self._filter_subscribers.append(subscriber)
            self._message_filter = message_filters.ApproximateTimeSynchronizer(
                self._filter_subscribers, self._params.sync_queue_size, self._params.sync_slop_s
            )
            self._message_filter.registerCallback(self._on_synchronized)
            return
        self._synchronizer = ApproximateTimeSynchronizer(
            len(INPUT_TOPICS), self._params.sync_queue_size, self._params.sync_slop_s, self._on_synchronized
        )
        for index, (topic, msg_type) in enumerate(INPUT_TOPICS):
            self.create_subscription(msg_type, topic, partial(self._on_input, index), qos, callback_group=group)

    # ---- callbacks (cheap: they only store messages) ------------------------------------------------

    def _count_input(self, index: int, msg: Any) -> None:
        """Count one message of input ``index`` (for the "inputs do not synchronize" warning)."""
        self._stats.input_received(INPUT_TOPICS[index][0])

    def _on_input(self, index: int, msg: Any) -> None:
        """One camera message for the package's own synchronizer; returns nothing."""
        self._count_input(index, msg)
        self._synchronizer.add(index, conversions.stamp_to_ns(msg.header.stamp), msg)

    def _on_synchronized(self, rgb: Image, depth: Image, camera_info: CameraInfo) -> None:
        """A synchronized set: kept for ``~/query`` and handed to the worker (replacing an untaken one)."""
        self._stats.count("frames_in")
        if rgb.header.frame_id != depth.header.frame_id:
            self.get_logger().warning(
                f"RGB frame_id {rgb.header.frame_id!r} differs from depth frame_id {depth.header.frame_id!r}: "
                "depth must be registered to the RGB image; outputs use the RGB frame",
                once=True,
            )
        frame = Frame(rgb, depth, camera_info, conversions.stamp_to_ns(rgb.header.stamp))
        with self._frame_lock:
            self._latest_frame = frame
        if not self._instruction:
            self._stats.count("dropped_idle")
        elif self._slot.put(frame):
            self._stats.count("dropped_replaced")

    def _on_instruction(self, msg: String) -> None:
        """A new sticky instruction; empty or whitespace stops processing. Returns nothing."""
        full_text = msg.data.strip()
        text = full_text[:MAX_INSTRUCTION_CHARS]
        if text == self._instruction:  # the same instruction again (ros2 topic pub repeats it): nothing to do
            return
        if len(full_text) > MAX_INSTRUCTION_CHARS:
            self.get_logger().warning(f"instruction of {len(full_text)} characters truncated to {MAX_INSTRUCTION_CHARS}")
        self._instruction = text
        with self._frame_lock:
            frame = self._latest_frame
        if text:
            self.get_logger().info(f"instruction: {text!r}")
            if frame is not None:  # answer on the newest frame now rather than on the next one
                self._slot.put(frame)
            return
        self.get_logger().info("empty instruction: processing stopped until the next instruction")
        if frame is not None:
            self._markers_pub.publish(conversions.delete_all_markers(frame.rgb.header))

    def _on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        """Run the model once on the newest synchronized frame with ``request.instruction``.

        Returns the response: ``success`` False and a ``message`` when there is no frame or no
        instruction, the frame cannot be processed, or no valid depth lies under the interaction point.
        """
        text = request.instruction.strip()[:MAX_INSTRUCTION_CHARS]
        with self._frame_lock:
            frame = self._latest_frame
        if not text:
            response.success, response.message = False, "empty instruction"
        elif frame is None:
            response.success = False
            response.message = "no synchronized RGB, depth and camera_info frame received yet"
        else:
            try:
                _, prediction = self._infer(frame, text)
            except ValueError as error:  # BadFrame, or the Predictor's own check of shapes and K
                response.success, response.message = False, f"bad frame: {error}"
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()  # give the worker's next frame a chance
                response.success, response.message = False, "out of GPU memory: the query was not answered"
            except Exception as error:  # a failed query must not take the service down
                response.success, response.message = False, f"inference failed: {type(error).__name__}: {error}"
            else:
                response.result = conversions.prediction_to_result(prediction, frame.rgb.header, text)
                response.success = prediction.valid_3d
                if not prediction.valid_3d:
                    response.message = "no valid depth at the interaction point: only the mask is meaningful"
        return response

    def _on_diagnostics_timer(self) -> None:
        """Once a second: log the pipeline figures (debug) and publish them on /diagnostics."""
        snapshot = self._stats.snapshot()
        self.get_logger().debug(snapshot.summary())
        if snapshot.unsynchronized():
            received = ", ".join(f"{n} on {self.resolve_topic_name(t)}" for t, n in snapshot.window_inputs.items())
            self.get_logger().warning(
                f"inputs arrive but do not synchronize (last {snapshot.window_s:.1f} s: {received}): check "
                f"that all three topics publish and that their stamps agree within sync_slop_s = "
                f"{self._params.sync_slop_s} s",
                throttle_duration_sec=_LOG_THROTTLE_S,
            )
        status = to_diagnostic_status(
            snapshot, f"{self.get_name()}: affordance perception", self.get_fully_qualified_name(),
            processing=bool(self._instruction),
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        publish_or_warn(self._diagnostics_pub, array, self.get_logger())

    # ---- worker -------------------------------------------------------------------------------------

    def _work(self) -> None:
        """Worker thread: run the model on the newest fresh frame while an instruction is set."""
        min_period_s = 1.0 / self._params.max_rate_hz if self._params.max_rate_hz > 0 else 0.0
        next_start = time.monotonic()
        while not self._stop.is_set():
            if self._stop.wait(max(next_start - time.monotonic(), 0.0)):
                break
            frame = self._slot.take(timeout_s=0.5)
            instruction = self._instruction
            if frame is None:
                continue
            if not instruction:
                self._stats.count("dropped_idle")
                continue
            age_s = (self.get_clock().now().nanoseconds - frame.stamp_ns) * 1e-9
            if 0.0 < self._params.max_frame_age_s < age_s:
                self._stats.count("dropped_stale")
                self.get_logger().warning(
                    f"dropping frames older than max_frame_age_s = {self._params.max_frame_age_s} s "
                    f"(this one: {age_s:.2f} s)",
                    throttle_duration_sec=_LOG_THROTTLE_S,
                )
                continue
            next_start = time.monotonic() + min_period_s
            self._process(frame, instruction)

    def _process(self, frame: Frame, instruction: str) -> None:
        """Run the model on one frame and publish; any failure drops this frame only."""
        try:
            if instruction != self._encoded_instruction:
                with self._predictor_lock:
                    self._predictor.set_instruction(instruction)
                self._encoded_instruction = instruction
                self._stats.count("instructions_set")
            decoded, prediction = self._infer(frame, instruction)
            self._publish(frame, decoded, instruction, prediction)
        except ValueError as error:  # BadFrame, or the Predictor's own check of shapes and K
            self._stats.count("bad_frames")
            if self._first_in_while(text := f"skipping frame: {error}"):
                self.get_logger().warning(text)
        except torch.cuda.OutOfMemoryError:
            self._stats.count("failed_frames")
            torch.cuda.empty_cache()
            if self._first_in_while(text := "out of GPU memory: frame dropped"):
                self.get_logger().error(text)
        except Exception as error:  # one failed frame must not stop the node
            if not self.context.ok():  # Ctrl-C shut ROS down while this frame was being processed
                return
            self._stats.count("failed_frames")
            if self._first_in_while(text := f"inference failed, frame dropped: {type(error).__name__}: {error}"):
                self.get_logger().error(text)

    def _infer(self, frame: Frame, instruction: str) -> tuple[DecodedFrame, AffordancePrediction]:
        """Decode the frame and run the model under the model lock (worker and ~/query share it)."""
        decoded = decode_frame(frame, self._params.min_depth_m, self._params.max_depth_m)
        with self._predictor_lock:
            return decoded, self._predictor(decoded.rgb, decoded.depth_m, instruction, decoded.K)

    def _publish(
        self, frame: Frame, decoded: DecodedFrame, instruction: str, prediction: AffordancePrediction
    ) -> None:
        """Publish every output of one prediction with the RGB image's header."""
        header = frame.rgb.header
        mask = conversions.numpy_to_image(prediction.mask, "mono8", header)
        self._mask_pub.publish(mask)
        if self._debug_pub is not None and self._debug_pub.get_subscription_count() > 0:  # drawn only when watched
            overlay = draw_overlay(
                decoded.rgb, prediction, decoded.K, instruction, self._params.axis_marker_length_m
            )
            self._debug_pub.publish(conversions.numpy_to_image(overlay, "rgb8", header))
        if prediction.valid_3d:
            self._pose_pub.publish(conversions.prediction_to_pose(prediction, header))
            self._axis_pub.publish(
                conversions.prediction_to_axis_marker(prediction, header, self._params.axis_marker_length_m)
            )
            self._path_pub.publish(conversions.prediction_to_path(prediction, header))
            self._markers_pub.publish(
                conversions.prediction_to_markers(prediction, header, instruction, self._params.axis_marker_length_m)
            )
            self._result_pub.publish(conversions.prediction_to_result(prediction, header, instruction, mask))
        else:
            self.get_logger().warning(
                "no valid depth at the predicted interaction point: published the mask only",
                throttle_duration_sec=_LOG_THROTTLE_S,
            )
        latency_ms = (self.get_clock().now().nanoseconds - frame.stamp_ns) * 1e-6
        self._stats.processed(latency_ms, prediction.timings["total"])

    def _first_in_while(self, text: str) -> bool:
        """True when ``text`` was not logged in the last ``_LOG_THROTTLE_S``: a throttle per distinct
        text, so each kind of bad input gets its own line and a stream of bad frames does not flood."""
        now = time.monotonic()
        if now - self._last_logged.get(text, -_LOG_THROTTLE_S) < _LOG_THROTTLE_S:
            return False
        if len(self._last_logged) > 100:
            self._last_logged.clear()
        self._last_logged[text] = now
        return True

    def destroy_node(self) -> None:
        """Stop the worker (it finishes its frame), then destroy the node."""
        self._stop.set()
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)
        logging.getLogger("segaff_core").removeHandler(self._core_log_handler)
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> int:
    """Run the node until Ctrl-C or shutdown; 1 when it cannot start (the reason is logged)."""
    rclpy.init(args=args)
    node: Optional[PerceptionNode] = None
    try:
        node = PerceptionNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except StartupError as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        if rclpy.ok():
            raise
        # Ctrl-C shut the context down while the executor was building its next wait set: a normal stop.
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
