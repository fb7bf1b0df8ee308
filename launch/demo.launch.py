"""Demo without hardware: the synthetic camera, the perception node and RViz.

    ros2 launch segaff_ros demo.launch.py [instruction:="open the top drawer"] [checkpoint:=...] \
        [device:=cpu] [rviz:=false]

The same set-up as ``scripts/demo.sh`` (``python -m segaff_ros.demo``), which runs without a ROS
distribution: the synthetic camera (segaff_ros/synthetic_camera.py) publishes a procedural furniture scene
under /camera, seen from a viewpoint that sways slowly about the part the instruction names (seed -1: the
first scene that has such a part), and publishes the instruction on /segaff/instruction once a second, as
``ros2 topic pub`` would. The perception node listens there and publishes under /segaff_perception. The
camera publishes the static transform base_link -> its optical frame (1 m up, looking along +x, 15 degrees
down), the node outputs in ``target_frame`` (base_link where tf2_ros is importable, else the camera frame)
and RViz shows base_link.
"""
import importlib.util
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "segaff_ros"
OPTICAL_FRAME = "camera_color_optical_frame"
BASE_FRAME = "base_link"
#: Outputs in base_link need tf2_ros in the node; without it they stay in the camera frame.
DEFAULT_TARGET_FRAME = BASE_FRAME if importlib.util.find_spec("tf2_ros") is not None else ""
CAMERA_NAMESPACE = "/camera"  # as segaff_ros/demo.py
INSTRUCTION_TOPIC = "/segaff/instruction"  # as segaff_ros/demo.py


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    arguments = [
        DeclareLaunchArgument("checkpoint", default_value="", description="SegAffordance .ckpt; empty = shipped"),
        DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz"),
        DeclareLaunchArgument("instruction", default_value="open the top drawer",
                              description="published on /segaff/instruction once a second; the camera aims at "
                              "the part it names"),
        DeclareLaunchArgument("seed", default_value="-1",
                              description="synthetic scene seed; -1 = the first scene with the part the "
                              "instruction names"),
        DeclareLaunchArgument("depth_encoding", default_value="16UC1", description="16UC1 | 32FC1"),
        DeclareLaunchArgument("backend", default_value="", description="inference runtime; empty = auto"),
        DeclareLaunchArgument("target_frame", default_value=DEFAULT_TARGET_FRAME,
                              description="frame of the 3D outputs; empty = the camera's optical frame"),
    ]
    camera = Node(
        package=PACKAGE,
        executable="synthetic_camera",
        name="synthetic_camera",
        namespace=CAMERA_NAMESPACE,
        output="screen",
        parameters=[{
            "seed": LaunchConfiguration("seed"),
            "target_instruction": ParameterValue(LaunchConfiguration("instruction"), value_type=str),
            "depth_encoding": LaunchConfiguration("depth_encoding"),
            "frame_id": OPTICAL_FRAME,
            "parent_frame": BASE_FRAME,
            "publish_instruction": True,
        }],
        remappings=[("instruction", INSTRUCTION_TOPIC)],
    )
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / "perception.launch.py")),
        launch_arguments={
            "checkpoint": LaunchConfiguration("checkpoint"),
            "device": LaunchConfiguration("device"),
            "backend": LaunchConfiguration("backend"),
            "target_frame": LaunchConfiguration("target_frame"),
            "camera_namespace": CAMERA_NAMESPACE,
            "rgb_topic": "rgb/image",
            "depth_topic": "depth/image",
            "camera_info_topic": "rgb/camera_info",
            "instruction_topic": INSTRUCTION_TOPIC,
            "rviz": LaunchConfiguration("rviz"),
        }.items(),
    )
    return LaunchDescription([*arguments, camera, perception])
