"""The ``main`` of the perception node and of the synthetic camera: a Ctrl-C that shuts the ROS context down
while the executor builds its next wait set is a normal stop (exit 0, the node destroyed); the same error with
the context alive is not."""
from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")

import rclpy  # noqa: E402
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402

from segaff_ros import perception_node, synthetic_camera  # noqa: E402

pytestmark = pytest.mark.ros


class _StubNode(Node):
    destroyed = 0

    def __init__(self) -> None:
        super().__init__("segaff_shutdown_stub")

    def autostart(self) -> bool:
        return False

    def destroy_node(self) -> None:
        _StubNode.destroyed += 1
        super().destroy_node()


def _executor_failing_on_spin(shut_down_first: bool) -> type:
    class Executor:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def add_node(self, node: Node) -> None:
            pass

        def spin(self) -> None:
            if shut_down_first:
                rclpy.shutdown()  # what the SIGINT handler does, just before the wait set is built
            raise _rclpy.RCLError("failed to initialize wait set: the given context is not valid")

    return Executor


MAINS = {"perception_node": (perception_node, "PerceptionNode"),
         "synthetic_camera": (synthetic_camera, "SyntheticCamera")}


@pytest.mark.parametrize("process", sorted(MAINS))
def test_ctrl_c_racing_the_wait_set_is_a_normal_stop(process: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module, node_class = MAINS[process]
    monkeypatch.setattr(module, node_class, _StubNode)
    monkeypatch.setattr(module, "SingleThreadedExecutor", _executor_failing_on_spin(shut_down_first=True))
    _StubNode.destroyed = 0
    assert module.main([]) == 0
    assert _StubNode.destroyed >= 1 and not rclpy.ok()  # (rclpy.shutdown destroys its nodes too)


@pytest.mark.parametrize("process", sorted(MAINS))
def test_the_same_error_with_the_context_alive_is_raised(process: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module, node_class = MAINS[process]
    monkeypatch.setattr(module, node_class, _StubNode)
    monkeypatch.setattr(module, "SingleThreadedExecutor", _executor_failing_on_spin(shut_down_first=False))
    _StubNode.destroyed = 0
    with pytest.raises(_rclpy.RCLError, match="wait set"):
        module.main([])
    assert _StubNode.destroyed >= 1 and not rclpy.ok()  # still cleaned up


class _StubNodeInterruptedWhileLoading(_StubNode):
    def autostart(self) -> bool:
        rclpy.shutdown()  # what the SIGINT handler does while the model loads
        return False


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_while_the_model_loads_is_a_normal_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The executor exists before the model loads: one made after the context was shut down fails in its
    constructor and prints an ignored AttributeError from its ``__del__``."""
    monkeypatch.setattr(perception_node, "PerceptionNode", _StubNodeInterruptedWhileLoading)
    _StubNode.destroyed = 0
    assert perception_node.main([]) == 0
    assert _StubNode.destroyed >= 1 and not rclpy.ok()


class _StubCameraInterruptedWhileRendering(_StubNode):
    def __init__(self) -> None:
        super().__init__()
        rclpy.shutdown()  # what the SIGINT handler does during the first render, before it raises
        raise KeyboardInterrupt


def test_ctrl_c_during_the_cameras_first_render_is_a_normal_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic_camera, "SyntheticCamera", _StubCameraInterruptedWhileRendering)
    assert synthetic_camera.main([]) == 0
    assert not rclpy.ok()
