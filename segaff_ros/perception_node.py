"""The ``segaff_perception`` node: synchronized RGB-D + a language instruction in, affordance out.

A managed (lifecycle) node. ``configure`` reads and checks the parameters and loads and warms up the model
(:mod:`~segaff_ros.model_loading`); ``activate`` subscribes to ``rgb/image``, ``depth/image``,
``rgb/camera_info`` (:mod:`~segaff_ros.camera_inputs`) and starts the worker (:mod:`~segaff_ros.frame_worker`);
``deactivate`` stops both and keeps the model; ``cleanup`` frees it. With ``autostart`` (default) ``main`` configures
and activates it before spinning. ``instruction`` (sticky; empty = stop), ``~/query``,
``~/perceive`` (:mod:`~segaff_ros.perceive_action`) and ``/diagnostics`` are there in every state; the query and
the action answer only while active. Outputs (:mod:`~segaff_ros.outputs`) are in ``target_frame`` when set.
Parameters and which of them change at runtime: :mod:`~segaff_ros.node_parameters`.

Threads: ``main`` spins the node in a single-threaded executor whose callbacks only store messages (a
multi-threaded executor's wake-ups cost more than the small model's inference). The worker thread runs the
model on the newest frame; ``~/query`` and ``~/perceive`` goals await their own threads
(:mod:`~segaff_ros.off_executor`), so waiting for the model, a transform or frames never holds the executor;
all three share the model under a lock.
"""
from __future__ import annotations

import gc
import importlib.util
import signal
import sys
import threading
import time
from typing import Any, Optional

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from segaff_core.crash_reports import dump_stacks_on_signal, enable_crash_tracebacks, report_stall
from segaff_core.inference import AffordancePrediction, Predictor
from segaff_msgs.srv import Query
from segaff_ros import conversions, node_parameters
from segaff_ros.camera_inputs import INPUT_TOPICS, SynchronizedCameraInputs
from segaff_ros.diagnostics import PipelineStats, to_diagnostic_status
from segaff_ros.frame_input import DecodedFrame, Frame, decode_frame
from segaff_ros.frame_memory import keep_frame_buffers_mapped
from segaff_ros.frame_worker import FrameWorker
from segaff_ros.model_loading import ConfigurationError, free_gpu_memory, load_predictor
from segaff_ros.node_logging import CoreLogForwarding, TextThrottle
from segaff_ros.node_parameters import PerceptionParams
from segaff_ros.off_executor import in_thread
from segaff_ros.outputs import FrameOutput, OutputPublishers, to_output_frame
from segaff_ros.perceive_action import PerceiveServer
from segaff_ros.publishing import publish_or_warn
from segaff_ros.spinning import spin_until_shutdown
from segaff_ros.target_frame import TargetFrameResolver, TransformUnavailable

NODE_NAME = "segaff_perception"
#: Longer instructions are truncated (with a warning); the text encoder keeps 77 tokens anyway.
MAX_INSTRUCTION_CHARS = 1000
_LOG_THROTTLE_S = 5.0
_STOP_STALL_REPORT_S = 3.0  # every thread's traceback when clean-up takes longer (ros2 launch sends SIGTERM at 5 s)
_SUCCESS, _FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class PerceptionNode(LifecycleNode):
    """SegAffordance on a ROS 2 camera: see the module docstring for the lifecycle, topics and threads."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        # What destroy_node needs comes first: rclpy destroys a node that failed half-way through __init__.
        self._state = "unconfigured"  # the lifecycle state as this node's callbacks last left it
        self._predictor: Optional[Predictor] = None
        self._predictor_lock = threading.Lock()
        self._resolver: Optional[TargetFrameResolver] = None
        self._outputs: Optional[OutputPublishers] = None
        self._inputs: Optional[SynchronizedCameraInputs] = None
        self._worker: Optional[FrameWorker] = None
        self._perceive: Optional[PerceiveServer] = None
        self._log_forwarding = CoreLogForwarding(self.get_logger())

        self._refused_overrides: dict[str, str] = node_parameters.declare_all(self)
        self._params: PerceptionParams = PerceptionParams.from_values(node_parameters.current_values(self))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        self._stats = PipelineStats([topic for topic, _ in INPUT_TOPICS])
        self._frame_lock = threading.Lock()
        self._latest_frame: Optional[Frame] = None
        self._instruction: str = ""
        self._encoded_instruction: str = ""
        self._throttle = TextThrottle(_LOG_THROTTLE_S)
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(String, "instruction", self._on_instruction, 10, callback_group=self._input_group)
        self.create_service(Query, "~/query", self._on_query, callback_group=MutuallyExclusiveCallbackGroup())
        self._perceive = PerceiveServer(self, self._run_frame, self.is_active)
        self.create_timer(1.0, self._on_diagnostics_timer, self._input_group)

    def is_active(self) -> bool:
        """Whether the node is in the active state (processing frames, answering queries and goals)."""
        return self._state == "active"

    # ---- lifecycle ----------------------------------------------------------------------------------

    def autostart(self) -> bool:
        """With the ``autostart`` parameter: configure, then activate (``main`` calls it before spinning, so a
        Ctrl-C while the model loads stops the process at once). A failed configure is logged with the way
        out and leaves the node unconfigured. Returns whether the node is active."""
        if not self._params.autostart:
            return False
        if self.trigger_configure() != _SUCCESS:
            if not self.context.ok():  # Ctrl-C while the model was loading: stopping, nothing to fix
                return False
            name = self.get_fully_qualified_name()
            self.get_logger().error(
                f"autostart: not configured (see above); fix it with `ros2 param set {name} NAME VALUE`, then "
                f"`ros2 lifecycle set {name} configure` and `ros2 lifecycle set {name} activate`"
            )
            return False
        return self.trigger_activate() == _SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read and check the parameters, load and warm up the model; FAILURE (reason logged) leaves the node
        unconfigured, so that a ``ros2 param set`` can fix it before the next ``configure``."""
        self._state = "configuring"
        started_s = time.monotonic()
        try:
            params = self._checked_params()
            self._params = params
            predictor = load_predictor(params, self.get_logger())
            if params.target_frame:
                self._ensure_resolver()
        except ConfigurationError as error:
            self.get_logger().error(f"configure failed: {error}")
            self._state = "unconfigured"
            return _FAILURE
        with self._predictor_lock:
            self._predictor = predictor
        self._encoded_instruction = ""
        self._outputs = OutputPublishers(self)
        self._state = "inactive"
        self.get_logger().info(f"configured in {time.monotonic() - started_s:.1f} s")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Activate the publishers, subscribe to the camera and start the worker."""
        result = super().on_activate(state)
        params = self._params
        self._worker = FrameWorker(
            lambda frame, instruction: self._process(frame, instruction), lambda: self._instruction,
            lambda: self._params, lambda: self.get_clock().now().nanoseconds, self._stats, self.get_logger(),
        )
        self._worker.start()
        self._inputs = SynchronizedCameraInputs(
            self, params.image_qos, params.sync_queue_size, params.sync_slop_s, self._on_synchronized,
            self._stats.input_received, self._input_group,
        )
        self._state = "active"
        self.get_logger().info(
            f"active: synchronizing {', '.join(self.resolve_topic_name(t) for t, _ in INPUT_TOPICS)} "
            f"({self._inputs.implementation}, slop {params.sync_slop_s} s); outputs in "
            f"{params.target_frame or 'the camera frame'}; waiting for an instruction on "
            f"{self.resolve_topic_name('instruction')}"
        )
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop processing (the model stays loaded)."""
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model (and its GPU memory) and the publishers."""
        result = super().on_cleanup(state)
        self._free_configuration()
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any state: stop processing and free everything."""
        self._stop_processing()
        self._free_configuration()
        self._state = "finalized"
        return _SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: free everything and go back to unconfigured."""
        self.get_logger().error(f"error while leaving {state.label}: back to unconfigured")
        self._stop_processing()
        self._free_configuration()
        return _SUCCESS

    def _stop_processing(self) -> None:
        if self._state == "active":
            self._state = "inactive"
        if self._inputs is not None:
            self._inputs.destroy()
            self._inputs = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def _free_configuration(self) -> None:
        with self._predictor_lock:
            self._predictor = None
        if self._outputs is not None:
            self._outputs.destroy()
            self._outputs = None
        if self._resolver is not None:
            self._resolver.close()
            self._resolver = None
        free_gpu_memory()
        self._state = "unconfigured"

    # ---- parameters ---------------------------------------------------------------------------------

    def _checked_params(self) -> PerceptionParams:
        """The parameters for ``configure``; ConfigurationError naming the first bad one."""
        if self._refused_overrides:
            raise ConfigurationError(
                "; ".join(self._refused_overrides.values()) + " (the default was kept: set a valid value with "
                "`ros2 param set`, then configure)"
            )
        values = node_parameters.current_values(self)
        if reason := node_parameters.check_values(values):
            raise ConfigurationError(reason)
        return PerceptionParams.from_values(values)

    def _on_set_parameters(self, parameters: list[Parameter[Any]]) -> SetParametersResult:
        """Accept or refuse a ``ros2 param set`` (types and ranges are the descriptors'); the reason is
        returned to the caller and logged."""
        changes = {parameter.name: parameter.value for parameter in parameters}
        reason = node_parameters.review_change(
            node_parameters.current_values(self), changes, configured=self._state != "unconfigured",
            node_name=self.get_fully_qualified_name(),
        )
        if reason is None and changes.get("target_frame") and importlib.util.find_spec("tf2_ros") is None:
            reason = "target_frame needs tf2_ros, which is not importable here"
        if reason is not None:
            self.get_logger().warning(f"parameter change refused: {reason}")
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _after_set_parameters(self, parameters: list[Parameter[Any]]) -> None:
        """Apply accepted changes at once: the model's thresholds, the tf2 resolver, the worker's figures."""
        for parameter in parameters:
            self._refused_overrides.pop(parameter.name, None)
        params = PerceptionParams.from_values(node_parameters.current_values(self))
        with self._predictor_lock:
            if self._predictor is not None:
                self._predictor.mask_threshold = params.mask_threshold
                self._predictor.min_depth_m, self._predictor.max_depth_m = params.min_depth_m, params.max_depth_m
        if params.target_frame and self._state not in ("unconfigured", "configuring"):
            try:
                self._ensure_resolver()
            except ConfigurationError as error:
                self.get_logger().error(str(error))
        if self._resolver is not None:
            self._resolver.timeout_s = params.tf_timeout_s
        self._params = params
        self.get_logger().info("parameters set: " + ", ".join(f"{p.name}={p.value!r}" for p in parameters))

    def _ensure_resolver(self) -> None:
        """The tf2 listener, made the first time a target frame is asked for."""
        if self._resolver is None:
            try:
                self._resolver = TargetFrameResolver(self, self._params.tf_timeout_s)
            except RuntimeError as error:
                raise ConfigurationError(str(error)) from error

    # ---- callbacks (cheap: they only store messages) ------------------------------------------------

    def _on_synchronized(self, rgb: Image, depth: Image, camera_info: CameraInfo) -> None:
        """A synchronized set: kept for ``~/query``, offered to ``~/perceive`` goals and the worker."""
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
        self._perceive.offer(frame)
        worker = self._worker
        if not self._instruction:
            self._stats.count("dropped_idle")
        elif worker is not None:
            worker.offer(frame)

    def _on_instruction(self, msg: String) -> None:
        """A new sticky instruction (kept in every state); empty or whitespace stops processing."""
        full_text = msg.data.strip()
        text = full_text[:MAX_INSTRUCTION_CHARS]
        if text == self._instruction:  # the same instruction again (ros2 topic pub repeats it): nothing to do
            return
        if len(full_text) > MAX_INSTRUCTION_CHARS:
            self.get_logger().warning(
                f"instruction of {len(full_text)} characters truncated to {MAX_INSTRUCTION_CHARS}"
            )
        self._instruction = text
        with self._frame_lock:
            frame = self._latest_frame
        worker, outputs = self._worker, self._outputs
        if text:
            self.get_logger().info(f"instruction: {text!r}")
            if frame is not None and worker is not None:  # answer on the newest frame now, not on the next one
                worker.offer(frame)
            return
        self.get_logger().info("empty instruction: processing stopped until the next instruction")
        if frame is not None and outputs is not None and self.is_active():
            outputs.clear_markers(Header(frame_id=self._params.target_frame or frame.rgb.header.frame_id,
                                         stamp=frame.rgb.header.stamp))

    async def _on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        """``~/query``: :meth:`_answer_query` in a thread of its own, awaited (the executor goes on)."""
        return await in_thread(self, "segaff_query", self._answer_query, request, response)

    def _answer_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        """Run the model once on the newest synchronized frame with ``request.instruction``.

        Returns the response: ``success`` False and a ``message`` when the node is not active, there is no
        frame or no instruction, the frame cannot be processed, no transform to ``target_frame`` is known,
        or no valid depth lies under the interaction point.
        """
        text = request.instruction.strip()[:MAX_INSTRUCTION_CHARS]
        with self._frame_lock:
            frame = self._latest_frame
        response.success = False
        if not self.is_active():
            response.message = f"the node is not active (lifecycle state: {self._state}): activate it first"
        elif not text:
            response.message = "empty instruction"
        elif frame is None:
            response.message = "no synchronized RGB, depth and camera_info frame received yet"
        else:
            try:
                output = self._run_frame(frame, text)
            except ValueError as error:  # BadFrame, or the Predictor's own check of shapes and K
                response.message = f"bad frame: {error}"
            except TransformUnavailable as error:
                response.message = str(error)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()  # give the worker's next frame a chance
                response.message = "out of GPU memory: the query was not answered"
            except Exception as error:  # a failed query must not take the service down
                response.message = f"inference failed: {type(error).__name__}: {error}"
            else:
                response.result = output.result()
                response.success = output.prediction.valid_3d
                if not output.prediction.valid_3d:
                    response.message = "no valid depth at the interaction point: only the mask is meaningful"
        return response

    def _on_diagnostics_timer(self) -> None:
        """Once a second: log the pipeline figures (debug) and publish them on /diagnostics."""
        snapshot = self._stats.snapshot()
        self.get_logger().debug(snapshot.summary())
        if self.is_active() and snapshot.unsynchronized():
            received = ", ".join(f"{n} on {self.resolve_topic_name(t)}" for t, n in snapshot.window_inputs.items())
            self.get_logger().warning(
                f"inputs arrive but do not synchronize (last {snapshot.window_s:.1f} s: {received}): check "
                f"that all three topics publish and that their stamps agree within sync_slop_s = "
                f"{self._params.sync_slop_s} s; the synchronizer's queues are cleared each time",
                throttle_duration_sec=_LOG_THROTTLE_S,
            )
            if self._inputs is not None:  # leftovers stamped in the future must not block it for good
                self._inputs.clear()
        status = to_diagnostic_status(
            snapshot, f"{self.get_name()}: affordance perception", self.get_fully_qualified_name(),
            processing=bool(self._instruction), lifecycle_state=self._state,
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        publish_or_warn(self._diagnostics_pub, array, self.get_logger())

    # ---- the model on one frame ---------------------------------------------------------------------

    def _process(self, frame: Frame, instruction: str) -> None:
        """The worker's step: run the model on one frame and publish; any failure drops this frame only."""
        try:
            if instruction != self._encoded_instruction:
                with self._predictor_lock:
                    self._loaded_predictor().set_instruction(instruction)
                self._encoded_instruction = instruction
                self._stats.count("instructions_set")
            output = self._run_frame(frame, instruction)
            outputs = self._outputs
            if outputs is None:  # cleaned up meanwhile
                return
            outputs.publish(output, self._params, self.get_logger())
            latency_ms = (self.get_clock().now().nanoseconds - frame.stamp_ns) * 1e-6
            self._stats.processed(latency_ms, output.prediction.timings["total"])
        except TransformUnavailable as error:
            self._stats.count("dropped_no_transform")
            self.get_logger().warning(f"skipping frame: {error}", throttle_duration_sec=_LOG_THROTTLE_S)
        except ValueError as error:  # BadFrame, or the Predictor's own check of shapes and K
            self._stats.count("bad_frames")
            if self._throttle.first_in_while(text := f"skipping frame: {error}"):
                self.get_logger().warning(text)
        except torch.cuda.OutOfMemoryError:
            self._stats.count("failed_frames")
            torch.cuda.empty_cache()
            if self._throttle.first_in_while(text := "out of GPU memory: frame dropped"):
                self.get_logger().error(text)
        except Exception as error:  # one failed frame must not stop the node
            if not self.context.ok():  # Ctrl-C shut ROS down while this frame was being processed
                return
            self._stats.count("failed_frames")
            text = f"inference failed, frame dropped: {type(error).__name__}: {error}"
            if self._throttle.first_in_while(text):
                self.get_logger().error(text)

    def _run_frame(self, frame: Frame, instruction: str) -> FrameOutput:
        """The model's output on one frame, in the output frame (worker, ``~/query`` and ``~/perceive``)."""
        params = self._params
        decoded, prediction = self._infer(frame, instruction, params)
        return to_output_frame(frame.rgb.header, decoded, prediction, instruction, params.target_frame,
                               self._resolver)

    def _infer(
        self, frame: Frame, instruction: str, params: PerceptionParams
    ) -> tuple[DecodedFrame, AffordancePrediction]:
        """Decode the frame and run the model under the model lock."""
        decoded = decode_frame(frame, params.min_depth_m, params.max_depth_m)
        with self._predictor_lock:
            return decoded, self._loaded_predictor()(decoded.rgb, decoded.depth_m, instruction, decoded.K)

    def _loaded_predictor(self) -> Predictor:
        if self._predictor is None:
            raise RuntimeError(f"the model is not loaded (lifecycle state: {self._state})")
        return self._predictor

    def destroy_node(self) -> None:
        """Stop the worker (it finishes its frame), free the model, then destroy the node."""
        self._stop_processing()
        self._free_configuration()
        if self._perceive is not None:
            self._perceive.destroy()
            self._perceive = None
        self._log_forwarding.close()
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> int:
    """Run the node until Ctrl-C or shutdown."""
    enable_crash_tracebacks()
    dump_stacks_on_signal()  # `kill -USR1 PID`: where each thread is, when the node stops answering
    keep_frame_buffers_mapped()  # frame-sized buffers reused, not mapped and zeroed again each frame
    rclpy.init(args=args)
    node: Optional[PerceptionNode] = None
    try:
        executor = SingleThreadedExecutor()  # before a Ctrl-C during the model's loading can shut the context down
        node = PerceptionNode()
        node.autostart()
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C while the model loads
        pass
    finally:
        # A terminal's Ctrl-C reaches the node twice under `ros2 launch` (the process group's SIGINT, then the
        # one launch forwards): the second must not interrupt the clean-up half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with report_stall(_STOP_STALL_REPORT_S):
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        # Everything is released: spare the interpreter's last garbage collection the half million objects of
        # torch, OpenVINO and rclpy (2.5-3 s of a 2-core CPU, past launch's 5 s SIGTERM deadline under load).
        gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
