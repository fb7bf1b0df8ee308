"""Faults around the perception node: the GPU running out of memory on a frame, the camera driver restarting.

Out of memory: a node in this process (conftest's ``node_in_process``, never spun) whose Predictor raises
``torch.cuda.OutOfMemoryError`` once; its per-frame processing and ``~/query`` are called directly, so no
GPU is needed. Restart: a node process and a ``synthetic_camera`` process over real DDS; the camera is
stopped (Ctrl-C, then SIGKILL as a crashed driver) and started again.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")

import torch  # noqa: E402

from ros_helpers import FrameSpec, NodeProcess, Probe, wait_until  # noqa: E402
from segaff_msgs.srv import Query  # noqa: E402
from segaff_ros.conversions import stamp_to_ns  # noqa: E402
from segaff_ros.frame_input import Frame  # noqa: E402
from segaff_ros.perception_node import PerceptionNode  # noqa: E402

pytestmark = pytest.mark.ros

TIMEOUT_S = 60.0
INSTRUCTION = "open the left door"


class OutOfMemoryOnce:
    """Stands in for the node's Predictor: the first ``__call__`` raises torch.cuda.OutOfMemoryError as
    CUDA would, every other call (and ``set_instruction``) goes to the real Predictor."""

    def __init__(self, predictor: Any) -> None:
        self._predictor = predictor
        self.calls = 0

    def set_instruction(self, text: str) -> None:
        self._predictor.set_instruction(text)

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self._predictor(*args)


def test_out_of_gpu_memory_drops_one_frame_and_the_node_goes_on(
    node_in_process: PerceptionNode, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    node = node_in_process
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    messages = dict(FrameSpec().messages(time.time_ns()))
    frame = Frame(messages["rgb/image"], messages["depth/image"], messages["rgb/camera_info"], time.time_ns())
    predictor = OutOfMemoryOnce(node._predictor)
    monkeypatch.setattr(node, "_predictor", predictor)

    node._process(frame, INSTRUCTION)  # the worker's per-frame step: must not raise
    after_oom = node._stats.snapshot()
    assert (after_oom.failed_frames, after_oom.frames_processed) == (1, 0)
    assert emptied, "the CUDA cache was not emptied after running out of memory"
    assert "out of GPU memory: frame dropped" in capfd.readouterr().err  # rclpy logs to the process's stderr

    node._process(frame, INSTRUCTION)
    after = node._stats.snapshot()
    assert (after.failed_frames, after.frames_processed, predictor.calls) == (1, 1, 2)

    monkeypatch.setattr(node, "_predictor", OutOfMemoryOnce(predictor._predictor))
    node._latest_frame = frame
    refused = node._answer_query(Query.Request(instruction=INSTRUCTION), Query.Response())
    assert not refused.success and "out of GPU memory" in refused.message
    answered = node._answer_query(Query.Request(instruction=INSTRUCTION), Query.Response())
    assert answered.success, answered.message
    assert len(emptied) == 2


# ---- camera driver restarts over DDS ----------------------------------------------------------------


def start_camera(log_path: Path) -> NodeProcess:
    """The synthetic camera as its own process: one pre-rendered view, 160 x 120 at 10 Hz."""
    return NodeProcess(log_path, ["-p", "num_views:=1", "-p", "width:=160", "-p", "height:=120",
                                  "-p", "rate_hz:=10.0"], module="segaff_ros.synthetic_camera")


def masks_since(probe: Probe, stamp_ns: int) -> int:
    """How many masks the node published for frames stamped after ``stamp_ns``."""
    return sum(stamp_to_ns(m.header.stamp) > stamp_ns for m in probe.messages("mask"))


def test_node_resumes_when_the_camera_driver_restarts(small_checkpoint: Path, tmp_path: Path) -> None:
    probe = Probe("segaff_restart_probe")
    node = NodeProcess(tmp_path / "node.log", ["-p", f"checkpoint:={small_checkpoint}", "-p", "device:=cpu",
                                               "-p", "input_height:=64", "-p", "input_width:=64"])
    camera = start_camera(tmp_path / "camera_0.log")
    try:
        assert probe.wait_for_perception_node(), f"the node did not come up:\n{node.log()}"
        for restart, stop in enumerate(["first start", "ctrl-c", "sigkill"]):
            if restart:
                if stop == "sigkill":
                    camera.popen.kill()  # a crashed driver: no goodbye on DDS
                camera.stop()
                stopped_ns = probe.now_ns()
                time.sleep(2.0)  # the node without a camera
                assert node.alive(), f"the node died when the camera stopped ({stop}):\n{node.log()[-3000:]}"
                assert masks_since(probe, stopped_ns) == 0, "results without a camera"
                camera = start_camera(tmp_path / f"camera_{restart}.log")
            started_ns = probe.now_ns()
            resumed = wait_until(lambda: masks_since(probe, started_ns) >= 3, TIMEOUT_S,
                                 action=lambda: probe.instruct(INSTRUCTION))
            assert resumed, (f"no results within {TIMEOUT_S} s after the camera's {stop}:\n"
                             f"node:\n{node.log()[-3000:]}\ncamera:\n{camera.log()[-2000:]}")
        assert "Traceback" not in node.log(), node.log()[-3000:]
    finally:
        camera.stop()
        code = node.stop()
        probe.close()
    assert code == 0, f"the node did not shut down cleanly (exit {code}):\n{node.log()[-3000:]}"
