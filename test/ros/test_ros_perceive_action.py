"""The ``~/perceive`` action, in this process: feedback per frame, the fused result, cancel, timeout, rejection.

An rclpy ActionClient on the helper node talks to the node over DDS; frames are handed to the node's
synchronized-frame callback at 10 Hz (as its synchronizer would), all the same view, so the fused result
equals each frame's and the frames agree fully.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.action", reason="segaff_msgs is not built with the Perceive action")

from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402

from in_process import NODE, SpunNode, call_until_answered  # noqa: E402
from ros_helpers import wait_until  # noqa: E402
from segaff_msgs.action import Perceive  # noqa: E402
from segaff_ros.conversions import stamp_to_ns  # noqa: E402
from segaff_ros.perceive_action import DEFAULT_FRAMES, PerceiveGoal, default_timeout_s  # noqa: E402

pytestmark = pytest.mark.ros

INSTRUCTION = "open the top drawer"
TIMEOUT_S = 30.0


@pytest.fixture
def spun(small_checkpoint: Path) -> Iterator[tuple[SpunNode, ActionClient]]:
    spun = SpunNode(small_checkpoint)
    assert spun.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert spun.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    client = ActionClient(spun.helper, Perceive, f"{NODE}/perceive")
    assert client.wait_for_server(timeout_sec=TIMEOUT_S)
    try:
        yield spun, client
    finally:
        client.destroy()
        spun.close()


class Goal:
    """A sent goal: its handle, the feedback received, and its result."""

    def __init__(self, client: ActionClient, frames: int = 0, timeout_s: float = 0.0) -> None:
        self.feedback: list[Any] = []
        self._lock = threading.Lock()
        request = Perceive.Goal(instruction=INSTRUCTION, frames=frames, timeout_s=timeout_s)
        # A goal sent again when unanswered is a second goal; the first, if it ever runs, is left alone.
        self.handle = call_until_answered(lambda: client.send_goal_async(request, feedback_callback=self._keep),
                                          TIMEOUT_S)

    def _keep(self, msg: Any) -> None:
        with self._lock:
            self.feedback.append(msg)

    def received(self) -> list[Any]:
        """This goal's feedback (not that of a goal sent before it and never answered)."""
        with self._lock:
            goal_id = bytes(self.handle.goal_id.uuid)
            return [msg.feedback for msg in self.feedback if bytes(msg.goal_id.uuid) == goal_id]

    def result(self) -> Any:
        return call_until_answered(self.handle.get_result_async, TIMEOUT_S)


def test_goal_defaults_and_validation() -> None:
    goal = PerceiveGoal.from_request(Perceive.Goal(instruction="  open it  "))
    assert (goal.instruction, goal.frames, goal.timeout_s) == ("open it", DEFAULT_FRAMES, default_timeout_s(5))
    assert PerceiveGoal.from_request(Perceive.Goal(instruction="x", frames=3, timeout_s=2.5)).timeout_s == 2.5
    for bad, reason in [({"instruction": " "}, "empty"), ({"instruction": "x", "frames": 1000}, "at most"),
                        ({"instruction": "x", "timeout_s": -1.0}, "timeout_s")]:
        with pytest.raises(ValueError, match=reason):
            PerceiveGoal.from_request(Perceive.Goal(**bad))


def test_feedback_for_each_new_frame_then_the_fused_result(spun: tuple[SpunNode, ActionClient]) -> None:
    node_spun, client = spun
    old = node_spun.frame()
    node_spun.node._on_synchronized(old.rgb, old.depth, old.camera_info)  # before the goal: not to be used
    goal = Goal(client, frames=3)
    assert goal.handle.accepted
    with node_spun.feed(10.0) as feeder:
        answer = goal.result()
    assert answer.status == GoalStatus.STATUS_SUCCEEDED
    result = answer.result
    assert result.success and result.frames_used == 3, result.message
    feedback = goal.received()
    assert [f.frame_index for f in feedback] == [0, 1, 2] and {f.frames for f in feedback} == {3}
    stamps = [stamp_to_ns(f.frame_result.header.stamp) for f in feedback]
    assert len(set(stamps)) == 3 and set(stamps) <= set(feeder.stamps), "not three new frames"
    # Identical views: the frames agree fully, the fusion equals each frame's result.
    assert result.motion_type_agreement == pytest.approx(1.0)
    assert result.axis_spread_deg == pytest.approx(0.0, abs=1e-3)
    assert result.point_spread_m == pytest.approx(0.0, abs=1e-6)
    assert result.mask_iou == pytest.approx(1.0)
    fused, single = result.result, feedback[-1].frame_result
    assert fused.instruction == INSTRUCTION and fused.header == single.header
    np.testing.assert_allclose([fused.axis.x, fused.axis.y, fused.axis.z],
                               [single.axis.x, single.axis.y, single.axis.z], atol=1e-5)
    position, expected = fused.interaction_pose.position, single.interaction_pose.position
    np.testing.assert_allclose([position.x, position.y, position.z], [expected.x, expected.y, expected.z], atol=1e-5)
    assert fused.motion_type == single.motion_type and bytes(fused.mask.data) == bytes(single.mask.data)
    assert fused.inference_time_ms == pytest.approx(sum(f.frame_result.inference_time_ms for f in feedback), rel=1e-4)


def test_cancel_returns_what_was_collected(spun: tuple[SpunNode, ActionClient]) -> None:
    node_spun, client = spun
    with node_spun.feed(10.0):
        goal = Goal(client, frames=50, timeout_s=60.0)
        assert goal.handle.accepted
        assert wait_until(lambda: len(goal.received()) >= 2, TIMEOUT_S)
        call_until_answered(goal.handle.cancel_goal_async, TIMEOUT_S)
        answer = goal.result()
    assert answer.status == GoalStatus.STATUS_CANCELED
    assert not answer.result.success and "canceled" in answer.result.message
    assert answer.result.frames_used >= 2
    assert answer.result.result.instruction == INSTRUCTION, "the frames collected are fused"


def test_timeout_without_frames_aborts_with_a_message(spun: tuple[SpunNode, ActionClient]) -> None:
    _, client = spun
    goal = Goal(client, frames=2, timeout_s=0.5)
    answer = goal.result()
    assert answer.status == GoalStatus.STATUS_ABORTED
    assert not answer.result.success and "timed out" in answer.result.message
    assert answer.result.frames_used == 0 and goal.received() == []


def test_timeout_after_some_frames_fuses_them(spun: tuple[SpunNode, ActionClient]) -> None:
    node_spun, client = spun
    goal = Goal(client, frames=5, timeout_s=3.0)
    frame = node_spun.frame()
    node_spun.node._on_synchronized(frame.rgb, frame.depth, frame.camera_info)  # one frame, then none
    answer = goal.result()
    assert answer.status == GoalStatus.STATUS_ABORTED and "1 of 5 frames" in answer.result.message
    assert answer.result.frames_used == 1 and stamp_to_ns(answer.result.result.header.stamp) == frame.stamp_ns


def test_goals_are_rejected_while_the_node_is_not_active(spun: tuple[SpunNode, ActionClient]) -> None:
    node_spun, client = spun
    assert node_spun.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert not Goal(client, frames=2).handle.accepted
    assert node_spun.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert not Goal(client, frames=1000).handle.accepted, "too many frames must be rejected"

