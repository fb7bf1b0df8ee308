"""``ros2 launch segaff_ros perception.launch.py autostart:=false`` with every other launch argument the README
launch does not use, left to a lifecycle manager (here: ``ros2 lifecycle set``), on a machine without
``message_filters`` (the node's own synchroniser).

The small random checkpoint at a 64 x 64 input keeps it quick. ``message_filters`` is hidden from the node by a
package of that name first on its PYTHONPATH whose import fails, as on a machine without it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tools_helpers import (
    BackgroundCommand, NodeCommands, TestNode, Workspace, echoed_message, shared_workspace, small_params_file,
)

pytestmark = [pytest.mark.ros, pytest.mark.ros_tools, pytest.mark.slow]

NODE = "/robot1/segaff_perception"
BASE_FRAME = "robot1_base"
OPTICAL_FRAME = "robot1_camera_optical_frame"
RESULT_TYPE = "segaff_msgs/msg/AffordanceResult"
WIDTH, HEIGHT = 128, 96
CAMERA = ("ros2 run segaff_ros synthetic_camera --ros-args -r __ns:=/robot1/cam "
          f"-p width:={WIDTH} -p height:={HEIGHT} -p orbit_amplitude_deg:=0.0 -p frame_id:={OPTICAL_FRAME} "
          f"-p parent_frame:={BASE_FRAME} -p rate_hz:=5.0")  # enough for every check, lighter on 2 shared cores
INSTRUCTION = "ros2 topic pub /robot1/say std_msgs/String \"data: 'pull the left door open'\""


@dataclass
class Running:
    workspace: Workspace
    launch: BackgroundCommand
    small_checkpoint: Path
    node: NodeCommands


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, small_checkpoint: Path) -> Iterator[Running]:
    workspace = shared_workspace(tmp_path_factory)
    folder = tmp_path_factory.mktemp("lifecycle_launch")
    params = small_params_file(folder / "params.yaml")
    hidden = folder / "without_message_filters" / "message_filters"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("message_filters is hidden by the test")\n')
    launch_command = (
        f"ros2 launch segaff_ros perception.launch.py autostart:=false namespace:=robot1 "
        f"camera_namespace:=/robot1/cam rgb_topic:=rgb/image depth_topic:=/robot1/cam/depth/image "
        f"camera_info_topic:=rgb/camera_info instruction_topic:=/robot1/say checkpoint:={small_checkpoint} "
        f"device:=cpu backend:=torch target_frame:={BASE_FRAME} params_file:={params} rviz:=false")
    camera = workspace.start(CAMERA, "lifecycle_camera.log")
    launch = workspace.start(f"PYTHONPATH={hidden.parent}:$PYTHONPATH {launch_command}", "lifecycle_launch.log")
    instruction = workspace.start(INSTRUCTION, "lifecycle_instruction.log")
    graph = TestNode("segaff_lifecycle_graph")
    try:
        node = NodeCommands(workspace, graph, NODE)
        started = node.lifecycle("get")
        assert started.returncode == 0, f"the node's lifecycle services do not answer\n{started}\n{launch}"
        yield Running(workspace, launch, small_checkpoint, node)
    finally:
        for command in (instruction, camera, launch):
            command.stop()
        graph.close()


def test_autostart_false_leaves_the_node_unconfigured(running: Running) -> None:
    assert running.node.lifecycle_state() == "unconfigured"
    silent = running.workspace.run(f"ros2 topic echo --once --timeout 3 {NODE}/result {RESULT_TYPE}", timeout_s=20.0,
                                   retry_s=0.0)
    assert "instruction:" not in silent.output, f"a result while unconfigured:\n{silent}"
    running.node.graph.wait_for_service(f"{NODE}/query")
    refused = running.workspace.check(f"ros2 service call {NODE}/query segaff_msgs/srv/Query \"{{instruction: 'x'}}\"")
    assert "success=False" in refused, refused


def test_a_failed_configure_says_why_and_a_fixed_parameter_configures(running: Running) -> None:
    node = running.node
    missing = "/nonexistent/segaff_model.ckpt"
    assert "Set parameter successful" in node.param(f"set checkpoint {missing}").output
    failed = node.lifecycle("configure")
    assert "Transitioning failed" in failed.output, str(failed)
    assert running.launch.wait_for_output(re.escape(missing), 10.0), f"the reason is not logged:\n{running.launch}"
    assert running.node.lifecycle_state() == "unconfigured"

    fixed = node.param(f"set checkpoint {running.small_checkpoint}")
    assert "Set parameter successful" in fixed.output, str(fixed)
    assert "Transitioning successful" in node.lifecycle("configure").output
    assert "Transitioning successful" in node.lifecycle("activate").output
    assert running.node.lifecycle_state() == "active"


def test_the_launch_arguments_reach_the_node(running: Running) -> None:
    """namespace, camera topics (relative and absolute), instruction topic, backend, target_frame,
    params_file (the 64 x 64 input) and the own synchroniser, read back from the node and its log."""
    result = running.workspace.run(f"ros2 topic echo --once {NODE}/result {RESULT_TYPE}", timeout_s=90.0,
                                   retry_s=0.0)
    assert result.returncode == 0, f"{result}\n--- launch:\n{running.launch.with_stacks()}"
    message = echoed_message(result.output)
    assert message["instruction"] == "pull the left door open"
    assert message["header"]["frame_id"] == BASE_FRAME  # target_frame, through the camera's static transform
    assert (message["mask"]["header"]["frame_id"], message["mask"]["width"], message["mask"]["height"]) == (
        OPTICAL_FRAME, WIDTH, HEIGHT)
    log = running.launch.output()
    assert re.search(r"synchroniz\w+ /robot1/cam/rgb/image, /robot1/cam/depth/image, /robot1/cam/rgb/camera_info "
                     r"\(own synchronizer", log), log
    assert re.search(r"input 64x64", log) and re.search(r"backend torch", log), log
    dump = running.node.param("dump")
    assert dump.returncode == 0, str(dump)
    dumped = yaml.safe_load(dump.output)
    parameters = dumped[NODE]["ros__parameters"]
    assert (parameters["input_height"], parameters["input_width"], parameters["backend"], parameters["target_frame"],
            parameters["autostart"], parameters["device"]) == (64, 64, "torch", BASE_FRAME, False, "cpu")


def test_cleanup_frees_the_model_so_model_parameters_can_change(running: Running) -> None:
    node = running.node
    refused = node.param("set input_height 96").output
    assert "Setting parameter failed" in refused and "configure" in refused, refused
    for transition in ("deactivate", "cleanup"):
        changed = node.lifecycle(transition)
        assert "Transitioning successful" in changed.output, f"{changed}\n--- launch:\n{running.launch.with_stacks()}"
    assert running.node.lifecycle_state() == "unconfigured"
    assert "Set parameter successful" in node.param("set input_height 96").output
    assert "Transitioning successful" in node.lifecycle("shutdown").output
    assert running.node.lifecycle_state() == "finalized"
