"""The perception launch file under ``launch_testing``, the ROS 2 tool for tests of launch files.

This file has two roles. pytest runs :func:`test_launch_testing_of_the_perception_launch_file`, which runs
``launch_test`` on this very file, as ROS packages run their launch tests (``add_launch_test``); launch_testing's
own pytest plugin does not load under this project's pytest, so it is disabled in pytest.ini. ``launch_test``
then uses the rest: :func:`generate_test_description` (the synthetic camera on a RealSense driver's topics, the
package's perception.launch.py, the README's ``ros2 topic pub`` of the instruction), the active tests of
:class:`NodeOutputs` while they run, and :class:`CleanShutdown` once launch_testing has stopped them (one
SIGINT each, as ``ros2 launch`` sends). Those classes are unittest cases for launch_test only (``__test__`` is
False, so pytest does not collect them).
"""
from __future__ import annotations

import re
import unittest
from pathlib import Path

import pytest

try:
    import launch_testing
    import launch_testing.asserts
except ImportError:  # pytest's part skips below; launch_test is never run without it
    launch_testing = None

pytestmark = [pytest.mark.ros, pytest.mark.ros_tools, pytest.mark.slow]

INSTRUCTION = "open the top drawer"
RESULT_TOPIC = "/segaff_perception/result"
WIDTH, HEIGHT = 128, 96


def test_launch_testing_of_the_perception_launch_file(tmp_path_factory: pytest.TempPathFactory,
                                                      small_checkpoint: Path) -> None:
    from tools_helpers import shared_workspace, small_params_file

    workspace = shared_workspace(tmp_path_factory)
    params = small_params_file(tmp_path_factory.mktemp("launch_testing") / "params.yaml")
    command = f"launch_test {Path(__file__)} checkpoint:={small_checkpoint} params_file:={params}"
    result = workspace.run(command, timeout_s=240.0, retry_s=0.0)
    assert result.returncode == 0, str(result)
    ran = re.findall(r"^(test_\w+) \(", result.output, re.MULTILINE)
    expected = {"test_the_node_comes_up_on_the_realsense_topics", "test_results_answer_the_instruction",
                "test_the_node_and_the_camera_exit_cleanly", "test_each_log_line_is_written_once"}
    assert expected <= set(ran), result.output


# ---- what launch_test runs ---------------------------------------------------------------------------


def generate_test_description():  # noqa: ANN201 (launch_testing's entry point)
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    share = Path(get_package_share_directory("segaff_ros"))
    camera = Node(
        package="segaff_ros", executable="synthetic_camera", name="synthetic_camera", namespace="/camera",
        parameters=[{"width": WIDTH, "height": HEIGHT, "orbit_amplitude_deg": 0.0}],
        remappings=[("rgb/image", "color/image_raw"), ("depth/image", "aligned_depth_to_color/image_raw"),
                    ("rgb/camera_info", "color/camera_info")],
    )
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / "perception.launch.py")),
        launch_arguments={"checkpoint": LaunchConfiguration("checkpoint"), "device": "cpu",
                          "params_file": LaunchConfiguration("params_file")}.items(),
    )
    instruction = ExecuteProcess(
        cmd=["ros2", "topic", "pub", "/segaff/instruction", "std_msgs/String", f"data: '{INSTRUCTION}'"],
        name="instruction")
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", description="the small test checkpoint"),
        DeclareLaunchArgument("params_file", description="parameters with a small input size"),
        camera, perception, instruction, launch_testing.actions.ReadyToTest(),
    ]), {"camera": camera}


if launch_testing is not None:
    import launch_testing.actions

    class NodeOutputs(unittest.TestCase):
        """Active tests, while the launch runs."""

        __test__ = False  # launch_test's, not pytest's

        def test_the_node_comes_up_on_the_realsense_topics(self, proc_output) -> None:  # noqa: ANN001
            proc_output.assertWaitFor(
                re.compile(r"synchroniz\w+ /camera/color/image_raw, /camera/aligned_depth_to_color/image_raw, "
                           r"/camera/color/camera_info \(message_filters"), timeout=120)

        def test_results_answer_the_instruction(self) -> None:
            from launch_testing_ros import WaitForTopics

            from segaff_msgs.msg import AffordanceResult

            with WaitForTopics([(RESULT_TOPIC, AffordanceResult)], timeout=120.0,
                               messages_received_buffer_length=3) as waited:
                results = waited.received_messages(RESULT_TOPIC)
            self.assertTrue(results)
            for result in results:
                self.assertEqual(result.instruction, INSTRUCTION)
                self.assertEqual(result.header.frame_id, "camera_color_optical_frame")
                mask = result.mask
                self.assertEqual((mask.width, mask.height, mask.encoding), (WIDTH, HEIGHT, "mono8"))
                self.assertEqual(len(result.trajectory), 20)

    @launch_testing.post_shutdown_test()
    class CleanShutdown(unittest.TestCase):
        """After launch_testing stopped every process."""

        __test__ = False  # launch_test's, not pytest's

        def test_the_node_and_the_camera_exit_cleanly(self, proc_info, camera) -> None:  # noqa: ANN001
            """(``ros2 topic pub`` exits 2 when interrupted, as ros2cli's verbs do.)"""
            launch_testing.asserts.assertExitCodes(proc_info, process="perception_node")
            launch_testing.asserts.assertExitCodes(proc_info, process=camera)

        def test_each_log_line_is_written_once(self, proc_output) -> None:  # noqa: ANN001
            text = "".join(output.text.decode(errors="replace") for output in proc_output)
            self.assertNotRegex(text, re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):", re.MULTILINE),
                                "a line logged again through Python's root logger")
            self.assertEqual(len(re.findall(r"warm-up: ", text)), 1, text)
