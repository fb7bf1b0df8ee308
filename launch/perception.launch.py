"""Launch the SegAffordance perception node on a camera, optionally with RViz.

    ros2 launch segaff_ros perception.launch.py camera_namespace:=/camera \
        rgb_topic:=color/image_raw depth_topic:=aligned_depth_to_color/image_raw \
        camera_info_topic:=color/camera_info checkpoint:=/path/to/model.ckpt device:=cuda rviz:=true

Relative topic arguments are resolved under ``camera_namespace``; absolute ones are used as they are.
Parameters come from ``params_file`` (default: the package's config/perception.yaml); a non-empty
``checkpoint`` or ``device`` argument overrides the file.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "segaff_ros"


def _resolve(namespace: str, topic: str) -> str:
    """``topic`` under ``namespace`` unless it is absolute."""
    if topic.startswith("/") or not namespace:
        return topic
    return f"{namespace.rstrip('/')}/{topic}"


def _nodes(context: LaunchContext) -> list[Node]:
    """The perception node (and RViz) with the launch arguments substituted."""

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    camera = value("camera_namespace")
    overrides = {name: value(name) for name in ("checkpoint", "device") if value(name)}
    share = Path(get_package_share_directory(PACKAGE))
    perception = Node(
        package=PACKAGE,
        executable="perception_node",
        name="segaff_perception",
        namespace=value("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[value("params_file"), overrides],
        remappings=[
            ("rgb/image", _resolve(camera, value("rgb_topic"))),
            ("depth/image", _resolve(camera, value("depth_topic"))),
            ("rgb/camera_info", _resolve(camera, value("camera_info_topic"))),
            ("instruction", value("instruction_topic")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", str(share / "rviz" / "segaff.rviz")],
        condition=IfCondition(value("rviz")),
        output="screen",
    )
    return [perception, rviz]


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    arguments = [
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="SegAffordance .ckpt; empty = the params file's (the shipped default)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N; empty = the params file's"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the perception node"),
        DeclareLaunchArgument("camera_namespace", default_value="/camera",
                              description="namespace of the camera topics below"),
        DeclareLaunchArgument("rgb_topic", default_value="color/image_raw",
                              description="sensor_msgs/Image rgb8/bgr8/rgba8/bgra8"),
        DeclareLaunchArgument("depth_topic", default_value="aligned_depth_to_color/image_raw",
                              description="sensor_msgs/Image 16UC1 (mm) or 32FC1 (m), registered to the RGB image"),
        DeclareLaunchArgument("camera_info_topic", default_value="color/camera_info",
                              description="sensor_msgs/CameraInfo of the RGB image"),
        DeclareLaunchArgument("instruction_topic", default_value="/segaff/instruction",
                              description="std_msgs/String instruction (sticky; empty = stop)"),
        DeclareLaunchArgument("params_file", default_value=str(share / "config" / "perception.yaml"),
                              description="parameters of the node"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with rviz/segaff.rviz"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
