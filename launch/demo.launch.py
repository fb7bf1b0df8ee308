"""Demo without hardware: the synthetic camera, the perception node and RViz.

    ros2 launch segaff_ros demo.launch.py [checkpoint:=...] [device:=cpu] [rviz:=false]

The synthetic camera (segaff_ros/synthetic_camera.py) publishes a procedural furniture scene under
/camera and, once a second, the description of a visible part on /segaff/instruction; a static transform
places its optical frame under camera_link (x forward, z up) for RViz.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "segaff_ros"
OPTICAL_FRAME = "camera_color_optical_frame"


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    arguments = [
        DeclareLaunchArgument("checkpoint", default_value="", description="SegAffordance .ckpt; empty = shipped"),
        DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz"),
        DeclareLaunchArgument("seed", default_value="0", description="synthetic scene seed"),
        DeclareLaunchArgument("depth_encoding", default_value="16UC1", description="16UC1 | 32FC1"),
    ]
    camera = Node(
        package=PACKAGE,
        executable="synthetic_camera",
        name="synthetic_camera",
        namespace="camera",
        output="screen",
        parameters=[{
            "seed": LaunchConfiguration("seed"),
            "depth_encoding": LaunchConfiguration("depth_encoding"),
            "frame_id": OPTICAL_FRAME,
            "publish_instruction": True,
        }],
        remappings=[("instruction", "/segaff/instruction")],
    )
    optical_frame = Node(
        package="tf2_ros",
        executable="static_transform_publisher",
        name="camera_optical_frame_publisher",
        arguments=["--yaw", "-1.5707963", "--roll", "-1.5707963",
                   "--frame-id", "camera_link", "--child-frame-id", OPTICAL_FRAME],
    )
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / "perception.launch.py")),
        launch_arguments={
            "checkpoint": LaunchConfiguration("checkpoint"),
            "device": LaunchConfiguration("device"),
            "camera_namespace": "/camera",
            "rgb_topic": "rgb/image",
            "depth_topic": "depth/image",
            "camera_info_topic": "rgb/camera_info",
            "instruction_topic": "/segaff/instruction",
            "rviz": LaunchConfiguration("rviz"),
        }.items(),
    )
    return LaunchDescription([*arguments, camera, optical_frame, perception])
