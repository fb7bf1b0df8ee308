"""Launch the SegAffordance perception node (a managed lifecycle node) on a camera, optionally with RViz.

    ros2 launch segaff_ros perception.launch.py camera_namespace:=/camera \
        rgb_topic:=color/image_raw depth_topic:=aligned_depth_to_color/image_raw \
        camera_info_topic:=color/camera_info checkpoint:=/path/to/model.ckpt device:=cuda \
        backend:=auto target_frame:=base_link rviz:=true

Relative topic arguments are resolved under ``camera_namespace``; absolute ones are used as they are.
Parameters come from ``params_file`` (default: the package's config/perception.yaml); a non-empty
``checkpoint``, ``device``, ``backend`` or ``target_frame`` argument overrides the file. ``autostart:=false``
leaves the node unconfigured for a lifecycle manager (``ros2 lifecycle set /segaff_perception configure``).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "segaff_ros"
#: String parameters a non-empty launch argument of the same name overrides.
_STRING_OVERRIDES = ("checkpoint", "device", "backend", "target_frame")


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
    overrides: dict[str, object] = {
        name: ParameterValue(value(name), value_type=str) for name in _STRING_OVERRIDES if value(name)
    }
    overrides["autostart"] = value("autostart").strip().lower() in ("true", "1", "yes", "on")
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
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | torch | onnxruntime | openvino | tensorrt; empty = the params "
                              "file's"),
        DeclareLaunchArgument("target_frame", default_value="",
                              description="frame of the 3D outputs (tf2); empty = the params file's (the camera's "
                              "optical frame)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate at start; false = leave it to a lifecycle "
                              "manager"),
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
