"""The ``~/perceive`` action (``segaff_msgs/action/Perceive``): one instruction over several new frames, fused.

A goal names an instruction, a frame count (0 = :data:`DEFAULT_FRAMES`) and a timeout (0 =
:func:`default_timeout_s`). The server takes the synchronized frames that arrive after the goal started
(the newest one each time the model is free, as the worker does), runs the model on each, publishes
each frame's result as feedback, and answers with :func:`segaff_core.fusion.fuse_predictions` over them and
how much they agreed. Frames that cannot be used (bad frame, no depth at the interaction point, no
transform to ``target_frame``) are skipped and do not count.

Outcomes: all frames in -> SUCCEEDED, ``success`` True. Cancelled -> CANCELED; timed out, or the node
deactivated -> ABORTED; both with ``success`` False, a message saying why, and the fusion of the frames
collected so far when there is at least one (``frames_used`` says how many). Goals are rejected while the
node is not active, and for an empty instruction, too many frames or a negative timeout (logged).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from segaff_core.fusion import fuse_predictions
from segaff_msgs.action import Perceive
from segaff_ros import conversions
from segaff_ros.frame_input import Frame
from segaff_ros.off_executor import in_thread
from segaff_ros.outputs import FrameOutput
from segaff_ros.synchronizer import LatestSlot

DEFAULT_FRAMES = 5
MAX_FRAMES = 100
#: Default timeout: this margin plus this much per frame (a slow model on a CPU still makes it).
TIMEOUT_MARGIN_S = 5.0
TIMEOUT_PER_FRAME_S = 1.0
MAX_INSTRUCTION_CHARS = 1000
_POLL_S = 0.1  # how often a waiting goal looks at cancel requests and the deadline


def default_timeout_s(frames: int) -> float:
    """The timeout of a goal that gives none: :data:`TIMEOUT_MARGIN_S` + frames x :data:`TIMEOUT_PER_FRAME_S`."""
    return TIMEOUT_MARGIN_S + frames * TIMEOUT_PER_FRAME_S


@dataclass(frozen=True)
class PerceiveGoal:
    """A goal with its defaults filled in."""

    instruction: str
    frames: int
    timeout_s: float

    @staticmethod
    def from_request(request: Perceive.Goal) -> "PerceiveGoal":
        """The goal, or ValueError saying why it cannot be served."""
        instruction = request.instruction.strip()[:MAX_INSTRUCTION_CHARS]
        if not instruction:
            raise ValueError("empty instruction")
        frames = request.frames or DEFAULT_FRAMES
        if frames > MAX_FRAMES:
            raise ValueError(f"frames is {frames}: at most {MAX_FRAMES}")
        if not math.isfinite(request.timeout_s) or request.timeout_s < 0.0:
            raise ValueError(f"timeout_s is {request.timeout_s}: expected 0 (default) or a positive number of s")
        return PerceiveGoal(instruction, frames, request.timeout_s or default_timeout_s(frames))


class PerceiveServer:
    """The action server. ``run_frame(frame, instruction)`` runs the model on one frame and returns its
    output in the output frame (raising on a frame it cannot use); ``is_active()`` says whether the node
    is active. The node hands every new synchronized frame to :meth:`offer`."""

    def __init__(
        self, node: Node, run_frame: Callable[[Frame, str], FrameOutput], is_active: Callable[[], bool]
    ) -> None:
        self._node = node
        self._logger = node.get_logger()
        self._run_frame = run_frame
        self._is_active = is_active
        self._lock = threading.Lock()
        self._slots: set[LatestSlot[Frame]] = set()
        self._server = ActionServer(
            node, Perceive, "~/perceive",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),  # cancel requests are served while a goal runs
        )

    def offer(self, frame: Frame) -> None:
        """A new synchronized frame: every running goal will take it (or a newer one)."""
        with self._lock:
            for slot in self._slots:
                slot.put(frame)

    def destroy(self) -> None:
        """Stop serving (node shutdown)."""
        with self._lock:
            for slot in self._slots:
                slot.close()
        self._server.destroy()

    def _on_goal(self, request: Perceive.Goal) -> GoalResponse:
        """Accept a goal only while the node is active and the goal is valid; the reason is logged."""
        if not self._is_active():
            self._logger.warning("~/perceive goal rejected: the node is not active (ros2 lifecycle set ... activate)")
            return GoalResponse.REJECT
        try:
            PerceiveGoal.from_request(request)
        except ValueError as error:
            self._logger.warning(f"~/perceive goal rejected: {error}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    async def _execute(self, goal_handle: ServerGoalHandle) -> Perceive.Result:
        """The goal in a thread of its own, awaited: the executor goes on delivering frames and cancel requests."""
        return await in_thread(self._node, "segaff_perceive", self._run_goal, goal_handle)

    def _run_goal(self, goal_handle: ServerGoalHandle) -> Perceive.Result:
        """Collect the goal's frames (feedback for each), then fuse; see the module docstring for outcomes."""
        goal = PerceiveGoal.from_request(goal_handle.request)
        slot: LatestSlot[Frame] = LatestSlot()
        with self._lock:
            self._slots.add(slot)
        try:
            return self._collect(goal_handle, goal, slot)
        finally:
            with self._lock:
                self._slots.discard(slot)

    def _collect(self, goal_handle: ServerGoalHandle, goal: PerceiveGoal, slot: LatestSlot[Frame]) -> Perceive.Result:
        outputs: list[FrameOutput] = []
        skipped: list[str] = []
        deadline = time.monotonic() + goal.timeout_s
        while len(outputs) < goal.frames:
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                return self._result(outputs, goal, False, f"canceled after {len(outputs)} of {goal.frames} frames")
            if not self._is_active():
                goal_handle.abort()
                return self._result(outputs, goal, False, "the node was deactivated")
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0.0:
                goal_handle.abort()
                reason = f"; skipped {len(skipped)}, the last because: {skipped[-1]}" if skipped else ""
                return self._result(outputs, goal, False, f"timed out after {goal.timeout_s:.1f} s with "
                                    f"{len(outputs)} of {goal.frames} frames{reason}")
            frame = slot.take(timeout_s=min(remaining_s, _POLL_S))
            if frame is None:
                continue
            try:
                output = self._run_frame(frame, goal.instruction)
            except Exception as error:  # noqa: BLE001 - a frame the model cannot use is skipped, not fatal
                skipped.append(f"{type(error).__name__}: {error}")
                continue
            if not output.prediction.valid_3d:
                skipped.append("no valid depth at the interaction point")
                continue
            outputs.append(output)
            goal_handle.publish_feedback(Perceive.Feedback(
                frame_index=len(outputs) - 1, frames=goal.frames, frame_result=output.result()
            ))
        goal_handle.succeed()
        return self._result(outputs, goal, True, f"fused {len(outputs)} frames")

    def _result(self, outputs: list[FrameOutput], goal: PerceiveGoal, success: bool, message: str) -> Perceive.Result:
        """The action result: the fusion of ``outputs`` (when any) with the agreement figures."""
        result = Perceive.Result(success=success, message=message, frames_used=len(outputs))
        if not outputs:
            return result
        fused = fuse_predictions([output.prediction for output in outputs])
        last = outputs[-1]
        mask = conversions.numpy_to_image(fused.prediction.mask, "mono8", last.image_header)
        result.result = conversions.prediction_to_result(fused.prediction, last.header, goal.instruction, mask)
        agreement = fused.agreement
        result.motion_type_agreement = float(agreement.motion_type_agreement)
        result.axis_spread_deg = float(agreement.axis_spread_deg)
        result.point_spread_m = float(agreement.point_spread_m)
        result.mask_iou = float(agreement.mask_iou)
        return result

