"""The README's robot commands, run literally with the real ROS 2 tools against the shipped checkpoint.

One ``ros2 launch segaff_ros perception.launch.py camera_namespace:=/camera device:=cuda`` (the README's
line, without RViz) on the synthetic camera remapped to a RealSense driver's topics, the README's
``ros2 topic pub`` of the instruction, then what a user checks next: ``ros2 node info``, ``ros2 topic
echo/hz``, ``ros2 service call``, ``ros2 param describe/get/set``, ``ros2 lifecycle get/set``, the
``~/perceive`` action and a runtime ``target_frame``, and Ctrl-C. The camera stands still
(``orbit_amplitude_deg:=0.0``), so every frame is the same and outputs can be compared across frames.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from tools_helpers import (
    NO_DAEMON, BackgroundCommand, NodeCommands, TestNode, Workspace, action_verb_available, average_rates_hz,
    echoed_message, quaternion, rotate, shared_workspace, xyz,
)

pytestmark = [pytest.mark.ros, pytest.mark.ros_tools, pytest.mark.slow]

NODE = "/segaff_perception"
WIDTH, HEIGHT = 160, 120
OPTICAL_FRAME = "camera_color_optical_frame"  # the synthetic camera's default, as a RealSense names it
INSTRUCTION = "open the top drawer"
CAMERA_RATE_HZ = 5.0  # enough for every check; the node and the camera run for the whole module on 2 shared cores
CAMERA = ("ros2 run segaff_ros synthetic_camera --ros-args -r __ns:=/camera -r rgb/image:=color/image_raw "
          "-r depth/image:=aligned_depth_to_color/image_raw -r rgb/camera_info:=color/camera_info "
          f"-p width:={WIDTH} -p height:={HEIGHT} -p orbit_amplitude_deg:=0.0 -p rate_hz:={CAMERA_RATE_HZ}")
README_LAUNCH = "ros2 launch segaff_ros perception.launch.py camera_namespace:=/camera device:=cuda rviz:=false"
README_INSTRUCTION = "ros2 topic pub /segaff/instruction std_msgs/String \"data: 'open the top drawer'\""
#: The node's outputs and their types (``ros2 topic echo`` given the type waits for a topic not there yet).
OUTPUT_TYPES = {
    "mask": "sensor_msgs/msg/Image", "interaction_pose": "geometry_msgs/msg/PoseStamped",
    "axis_marker": "visualization_msgs/msg/Marker", "trajectory": "nav_msgs/msg/Path",
    "markers": "visualization_msgs/msg/MarkerArray", "result": "segaff_msgs/msg/AffordanceResult",
    "debug_image": "sensor_msgs/msg/Image", "part_points": "sensor_msgs/msg/PointCloud2",
}
#: base_link -> optical frame: the camera 0.5 m up, 0.1 m ahead, 0.2 m right, looking along base_link's x.
BASE_TO_OPTICAL_TRANSLATION_M = (0.1, -0.2, 0.5)
BASE_TO_OPTICAL_ROTATION_XYZW = (-0.5, 0.5, -0.5, 0.5)
#: Python logging's default format: a line the node also logged through Python's root logger (a duplicate).
ROOT_LOGGER_LINE = re.compile(r"^\[perception_node-\d+\] (DEBUG|INFO|WARNING|ERROR|CRITICAL):", re.MULTILINE)


@dataclass
class Running:
    workspace: Workspace
    launch: BackgroundCommand
    camera: BackgroundCommand
    instruction: BackgroundCommand
    node: NodeCommands  # ros2 lifecycle / param, each once the services it calls are discovered

    @property
    def graph(self) -> TestNode:
        """A long-lived participant of the test: sees the node's services and topics before a command asks."""
        return self.node.graph

    def echo(self, topic: str, timeout_s: float = 15.0, tries: int = 3) -> dict[str, Any]:
        """``ros2 topic echo --once`` of one of the node's outputs, as a dict; tried again when no message
        came within ``timeout_s`` (on a loaded machine a new participant's discovery can stall)."""
        for _ in range(tries):
            result = self.workspace.run(f"ros2 topic echo --once {NODE}/{topic} {OUTPUT_TYPES[topic]}", timeout_s,
                                        retry_s=0.0)
            if result.returncode == 0:
                return echoed_message(result.output)
        raise AssertionError(f"{result}\n--- launch:\n{self.launch.with_stacks()}\n--- camera:\n{self.camera}")

    def param_set(self, name: str, value: str) -> str:
        return self.node.param(f"set {name} {value}").output


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workspace = shared_workspace(tmp_path_factory)
    camera = workspace.start(CAMERA, "readme_camera.log")
    launch = workspace.start(README_LAUNCH, "readme_launch.log")
    instruction = workspace.start(README_INSTRUCTION, "readme_instruction.log")
    graph = TestNode("segaff_readme_graph")
    running = Running(workspace, launch, camera, instruction, NodeCommands(workspace, graph, NODE))
    try:
        first = workspace.run(f"ros2 topic echo --once {NODE}/result {OUTPUT_TYPES['result']}", timeout_s=120.0,
                              retry_s=0.0)
        assert first.returncode == 0, f"no result within 120 s\n{first}\n--- launch:\n{launch}\n--- camera:\n{camera}"
        yield running
    finally:
        for command in (instruction, camera, launch):
            command.stop()
        graph.close()
        workspace.stop_daemon()


def test_the_launch_file_wires_the_node_to_the_realsense_topics(running: Running) -> None:
    expected = {
        "Subscribers": ["/camera/color/image_raw: sensor_msgs/msg/Image",
                        "/camera/aligned_depth_to_color/image_raw: sensor_msgs/msg/Image",
                        "/camera/color/camera_info: sensor_msgs/msg/CameraInfo",
                        "/segaff/instruction: std_msgs/msg/String"],
        "Publishers": [f"{NODE}/{output}: {msg_type}" for output, msg_type in OUTPUT_TYPES.items()],
        "Service Servers": [f"{NODE}/query: segaff_msgs/srv/Query"],
        "Action Servers": [f"{NODE}/perceive: segaff_msgs/action/Perceive"],
    }
    # Without a daemon, `ros2 node info` reports what discovery found while it spun; on a loaded machine a
    # node's subscriptions and services can arrive after its publishers. A user asks again; so does the test.
    running.graph.wait_for_service(f"{NODE}/query")
    running.graph.wait_for_publisher(f"{NODE}/result")
    for _ in range(5):
        info = running.workspace.check(f"ros2 node info {NO_DAEMON} {NODE}")
        sections = dict(re.findall(r"^  (\w[\w ]*):\n((?:    .*\n?)*)", info, re.MULTILINE))
        missing = [entry for section, entries in expected.items() for entry in entries
                   if entry not in sections.get(section, "")]
        if not missing:
            return
    raise AssertionError(f"missing from `ros2 node info` after 5 tries: {missing}\n{info}")


def test_the_node_logs_its_start_once_on_message_filters(running: Running) -> None:
    log = running.launch.output()
    assert re.search(r"synchroniz\w+ /camera/color/image_raw, /camera/aligned_depth_to_color/image_raw, "
                     r"/camera/color/camera_info \(message_filters", log), log
    assert "instruction: 'open the top drawer'" in log, log
    assert not ROOT_LOGGER_LINE.search(log), f"lines logged twice (Python's root logger):\n{log}"
    assert len(re.findall(r"warm-up: ", log)) == 1, log


def test_topic_echo_shows_every_output_in_the_cameras_frame(running: Running) -> None:
    mask = running.echo("mask")
    assert (mask["header"]["frame_id"], mask["encoding"], mask["width"], mask["height"], mask["step"]) == (
        OPTICAL_FRAME, "mono8", WIDTH, HEIGHT, WIDTH)
    debug = running.echo("debug_image")
    assert (debug["header"]["frame_id"], debug["encoding"], debug["width"], debug["height"], debug["step"]) == (
        OPTICAL_FRAME, "rgb8", WIDTH, HEIGHT, 3 * WIDTH)

    pose = running.echo("interaction_pose")
    assert pose["header"]["frame_id"] == OPTICAL_FRAME
    orientation = pose["pose"]["orientation"]
    assert np.linalg.norm([orientation[k] for k in "xyzw"]) == pytest.approx(1.0, abs=1e-3)
    point = xyz(pose["pose"]["position"])
    assert 0.1 <= point[2] <= 10.0, f"interaction point {point} outside the valid depth range"

    arrow = running.echo("axis_marker")
    assert (arrow["header"]["frame_id"], arrow["type"], arrow["action"]) == (OPTICAL_FRAME, 0, 0)  # ARROW, ADD
    start, end = (xyz(p) for p in arrow["points"])
    assert np.linalg.norm(end - start) == pytest.approx(0.2, abs=1e-4)  # axis_marker_length_m's default

    trajectory = running.echo("trajectory")
    assert trajectory["header"]["frame_id"] == OPTICAL_FRAME
    assert len(trajectory["poses"]) == 20
    assert all(p["header"]["frame_id"] == OPTICAL_FRAME for p in trajectory["poses"])
    np.testing.assert_allclose(xyz(trajectory["poses"][0]["pose"]["position"]), point, atol=1e-4)  # still camera

    markers = running.echo("markers")["markers"]
    assert [m["type"] for m in markers] == [0, 4, 2, 9]  # ARROW, LINE_STRIP, SPHERE, TEXT_VIEW_FACING
    assert {m["header"]["frame_id"] for m in markers} == {OPTICAL_FRAME}
    assert re.match(rf"{INSTRUCTION}: (translation|rotation) \(\d+%\), mask \d\.\d\d$", markers[3]["text"])
    np.testing.assert_allclose(xyz(markers[2]["pose"]["position"]), point, atol=1e-4)  # the SPHERE

    result = running.echo("result")
    assert (result["header"]["frame_id"], result["instruction"]) == (OPTICAL_FRAME, INSTRUCTION)
    assert (result["mask"]["width"], result["mask"]["height"]) == (WIDTH, HEIGHT)
    assert 0 <= result["interaction_u"] < WIDTH and 0 <= result["interaction_v"] < HEIGHT
    assert result["motion_type"] in (0, 1)
    assert np.linalg.norm(xyz(result["axis"])) == pytest.approx(1.0, abs=1e-3)
    assert len(result["trajectory"]) == 20
    np.testing.assert_allclose(xyz(result["interaction_pose"]["position"]), point, atol=1e-4)

    cloud = running.echo("part_points")
    assert cloud["header"]["frame_id"] == OPTICAL_FRAME
    assert [(f["name"], f["offset"], f["datatype"]) for f in cloud["fields"]] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7)]  # FLOAT32
    assert cloud["point_step"] == 16 and cloud["height"] == 1 and cloud["width"] > 0
    assert cloud["row_step"] == 16 * cloud["width"]
    assert cloud["width"] <= (WIDTH // 2) * (HEIGHT // 2)  # every cloud_stride-th (2) pixel at most


def test_topic_hz_of_the_result_follows_the_camera(running: Running) -> None:
    running.graph.wait_for_publisher(f"{NODE}/result")
    for _ in range(3):  # a new participant's discovery can stall on a loaded machine: a fresh one then
        hz = running.workspace.run(f"ros2 topic hz {NODE}/result --window 20", timeout_s=12.0, retry_s=0.0)
        rates = average_rates_hz(hz.output)
        if rates:
            break
    assert rates, str(hz)
    assert 0.4 * CAMERA_RATE_HZ <= rates[-1] <= 1.1 * CAMERA_RATE_HZ, \
        f"result at {rates[-1]} Hz from a {CAMERA_RATE_HZ} Hz camera\n{hz}"


def test_service_call_of_the_query_answers_on_the_newest_frame(running: Running) -> None:
    running.graph.wait_for_service(f"{NODE}/query")
    called = running.workspace.check(
        f"ros2 service call {NODE}/query segaff_msgs/srv/Query \"{{instruction: 'open the drawer'}}\"")
    response = called.split("response:", 1)[1]
    assert "success=True" in response, called
    assert "instruction='open the drawer'" in response
    assert f"height={HEIGHT}, width={WIDTH}, encoding='mono8'" in response
    assert f"frame_id='{OPTICAL_FRAME}'" in response


def test_param_describe_get_and_set_at_runtime(running: Running) -> None:
    described = running.node.param("describe mask_threshold checkpoint").output
    assert "Parameter name: mask_threshold" in described and "Type: double" in described
    assert "Min value: 0.01" in described and "Max value: 0.99" in described
    assert "Parameter name: checkpoint" in described and "Type: string" in described
    device = running.node.param("get device").output
    assert "String value is: cuda" in device  # the launch argument

    assert "Set parameter successful" in running.param_set("axis_marker_length_m", "0.35")

    def arrow_length_m() -> float:
        start, end = (xyz(p) for p in running.echo("axis_marker")["points"])
        return float(np.linalg.norm(end - start))

    assert wait_for_value(arrow_length_m, 0.35), "the new axis_marker_length_m did not apply"
    assert "Set parameter successful" in running.param_set("axis_marker_length_m", "0.2")

    refusals = {
        ("mask_threshold", "1.5"): "mask_threshold",  # out of its range
        ("max_rate_hz", "fast"): "type",  # a string for a double
        ("min_depth_m", "20.0"): "max_depth_m",  # not below max_depth_m
        ("target_frame", "/base_link"): "target_frame",  # a leading slash
        ("checkpoint", "/tmp/other.ckpt"): "configure",  # a model parameter while active
    }
    for (name, value), reason in refusals.items():
        output = running.param_set(name, value)
        assert "Setting parameter failed" in output and reason in output, f"{name}={value}: {output}"
    kept = running.node.param("get mask_threshold").output
    assert "Double value is: 0.5" in kept


def wait_for_value(read: Callable[[], float], expected: float, tries: int = 5) -> bool:
    """Whether ``read()`` gives ``expected`` (within 1e-4) within ``tries`` reads (messages already on their
    way when a parameter changed still carry the old value)."""
    return any(abs(read() - expected) < 1e-4 for _ in range(tries))


def wait_for_message(read: Callable[[], dict[str, Any]], accept: Callable[[dict[str, Any]], bool],
                     tries: int = 5) -> dict[str, Any]:
    """The first message ``read()`` gives that ``accept`` takes, within ``tries`` reads (the last one otherwise)."""
    for _ in range(tries):
        message = read()
        if accept(message):
            break
    return message


def test_runtime_target_frame_expresses_3d_outputs_in_it(running: Running) -> None:
    before = running.echo("result")
    point_cam = xyz(before["interaction_pose"]["position"])
    approach_cam = rotate(quaternion(before["interaction_pose"]["orientation"]), [0.0, 0.0, 1.0])
    axis_cam = xyz(before["axis"])
    probe = TestNode()
    try:
        probe.publish_static_transform("base_link", OPTICAL_FRAME, BASE_TO_OPTICAL_TRANSLATION_M,
                                       BASE_TO_OPTICAL_ROTATION_XYZW)
        assert "Set parameter successful" in running.param_set("target_frame", "base_link")
        pose = wait_for_message(lambda: running.echo("interaction_pose"),
                                lambda msg: msg["header"]["frame_id"] == "base_link")
        assert pose["header"]["frame_id"] == "base_link"
        expected = rotate(BASE_TO_OPTICAL_ROTATION_XYZW, point_cam) + BASE_TO_OPTICAL_TRANSLATION_M
        np.testing.assert_allclose(xyz(pose["pose"]["position"]), expected, atol=1e-3)
        approach = rotate(quaternion(pose["pose"]["orientation"]), [0.0, 0.0, 1.0])  # +z: into the surface
        np.testing.assert_allclose(approach, rotate(BASE_TO_OPTICAL_ROTATION_XYZW, approach_cam), atol=1e-3)
        result = running.echo("result")
        np.testing.assert_allclose(xyz(result["axis"]), rotate(BASE_TO_OPTICAL_ROTATION_XYZW, axis_cam), atol=1e-3)
        np.testing.assert_allclose(xyz(result["interaction_pose"]["position"]), expected, atol=1e-3)
        assert result["mask"]["header"]["frame_id"] == OPTICAL_FRAME  # the mask stays an image of the camera
        assert running.echo("part_points")["header"]["frame_id"] == "base_link"

        assert "Set parameter successful" in running.param_set("target_frame", "nowhere")
        assert running.launch.wait_for_output(r"(?=.*nowhere)(?=.*camera_color_optical_frame).*", 15.0), (
            f"no warning naming both frames:\n{running.launch}")
    finally:
        running.param_set("target_frame", "''")
        probe.close()
    back = wait_for_message(lambda: running.echo("interaction_pose"),
                            lambda msg: msg["header"]["frame_id"] == OPTICAL_FRAME)
    np.testing.assert_allclose(xyz(back["pose"]["position"]), point_cam, atol=1e-4)


def test_lifecycle_deactivate_stops_the_outputs_and_activate_resumes_them(running: Running) -> None:
    workspace = running.workspace
    assert re.search(r"^active \[3\]", running.node.lifecycle("get").output, re.MULTILINE)
    deactivated = running.node.lifecycle("deactivate")
    assert "Transitioning successful" in deactivated.output, str(deactivated)
    try:
        silent = workspace.run(f"ros2 topic echo --once --timeout 3 {NODE}/result {OUTPUT_TYPES['result']}",
                               timeout_s=20.0, retry_s=0.0)
        assert "instruction:" not in silent.output, f"a result while inactive:\n{silent}"
        refused = workspace.check(f"ros2 service call {NODE}/query segaff_msgs/srv/Query \"{{instruction: 'x'}}\"")
        assert "success=False" in refused and "active" in refused.split("response:", 1)[1], refused
    finally:
        activated = running.node.lifecycle("activate")
    assert "Transitioning successful" in activated.output, str(activated)
    assert running.echo("result")["instruction"] == INSTRUCTION


def test_perceive_action_fuses_frames_with_feedback(running: Running) -> None:
    """What ``ros2 action send_goal --feedback`` does, with rclpy's ActionClient (the verb is tested below
    where the tools have it)."""
    client = TestNode()
    try:
        feedback, result, status = client.send_perceive_goal(f"{NODE}/perceive", INSTRUCTION, frames=5, timeout_s=10.0)
        assert status == 4, f"goal status {status}, result {result}"  # SUCCEEDED
        # Feedback is a topic of its own and may lose its first messages while the client's subscription is
        # still being matched (ros2/rclcpp#1679): the result is required, and at least one feedback in order.
        indices = [f.frame_index for f in feedback]
        assert indices and indices == sorted(set(indices)) and set(indices) <= {0, 1, 2, 3, 4}, indices
        assert {f.frames for f in feedback} == {5}
        assert all(f.frame_result.instruction == INSTRUCTION for f in feedback)
        assert result.success and result.frames_used == 5
        assert result.result.instruction == INSTRUCTION
        assert (result.result.mask.width, result.result.mask.height) == (WIDTH, HEIGHT)
        # a still camera: the same frame five times, so the frames agree completely
        assert result.motion_type_agreement == pytest.approx(1.0)
        assert result.axis_spread_deg == pytest.approx(0.0, abs=0.5)
        assert result.point_spread_m == pytest.approx(0.0, abs=1e-3)
        assert result.mask_iou == pytest.approx(1.0, abs=1e-3)
        single = feedback[0].frame_result
        np.testing.assert_allclose(
            [result.result.axis.x, result.result.axis.y, result.result.axis.z],
            [single.axis.x, single.axis.y, single.axis.z], atol=1e-3)

        feedback, result, status = client.send_perceive_goal(f"{NODE}/perceive", INSTRUCTION, frames=100,
                                                             timeout_s=60.0, cancel_after_feedback=2)
        assert status == 5, f"goal status {status} after a cancel, result {result}"  # CANCELED
        assert len(feedback) < 100
    finally:
        client.close()


def test_ros2_action_send_goal(running: Running) -> None:
    if not action_verb_available(running.workspace):
        pytest.skip("these ROS 2 tools have no `ros2 action` verb (../shared/ros2-src's ros2cli has none); "
                    "the action is driven with an ActionClient above")
    sent = running.workspace.check(
        f"ros2 action send_goal --feedback {NODE}/perceive segaff_msgs/action/Perceive "
        f"\"{{instruction: '{INSTRUCTION}', frames: 3, timeout_s: 10.0}}\"", timeout_s=60.0)
    assert "Goal accepted" in sent and "SUCCEEDED" in sent, sent
    assert 1 <= sent.count("frame_index:") <= 3, sent  # feedback may lose its first messages (see above)
    assert "frames_used: 3" in sent, sent


def test_ctrl_c_stops_the_launch_cleanly(running: Running) -> None:
    code = running.launch.stop()
    log = running.launch.output()
    assert re.search(r"\[perception_node-1\]: process has finished cleanly", log), log
    assert "Traceback" not in log, log
    assert code in (0, -2, 130), f"ros2 launch exited {code}"  # SIGINT reached bash and ros2 launch
