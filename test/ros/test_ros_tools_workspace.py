"""The README's robot workspace built by colcon, as the real ROS 2 tools see it."""
from __future__ import annotations

from pathlib import Path

import pytest

from tools_helpers import Workspace, shared_workspace

pytestmark = [pytest.mark.ros, pytest.mark.ros_tools]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return shared_workspace(tmp_path_factory)


def test_colcon_builds_both_packages_of_the_readme_layout(workspace: Workspace) -> None:
    assert "Summary: 2 packages finished" in workspace.build_output, workspace.build_output[-3000:]
    packages = set(workspace.check("ros2 pkg list").split())
    assert {"segaff_ros", "segaff_msgs"} <= packages
    prefix = workspace.check("ros2 pkg prefix segaff_ros").strip()
    assert Path(prefix) == workspace.path / "install" / "segaff_ros"
    executables = set(workspace.check("ros2 pkg executables segaff_ros").split())
    assert {"perception_node", "synthetic_camera"} <= executables


def test_symlink_install_points_the_share_folder_at_the_sources(workspace: Workspace) -> None:
    """--symlink-install: an edit of a launch file or of config/ in the clone shows without a rebuild."""
    share = workspace.path / "install" / "segaff_ros" / "share" / "segaff_ros"
    clone = workspace.path / "src" / "segaffordance"
    for relative in ("launch/perception.launch.py", "launch/demo.launch.py", "config/perception.yaml",
                     "rviz/segaff.rviz", "checkpoints/segaff_default.ckpt"):
        installed = share / relative
        assert installed.is_symlink(), f"{installed} is a copy"
        assert installed.resolve() == (clone / relative).resolve()


def test_ros2_interface_shows_the_packages_interfaces(workspace: Workspace) -> None:
    listed = set(workspace.check("ros2 interface package segaff_msgs").split())
    assert {"segaff_msgs/msg/AffordanceResult", "segaff_msgs/srv/Query", "segaff_msgs/action/Perceive"} <= listed
    query = workspace.check("ros2 interface show segaff_msgs/srv/Query")
    assert "string instruction" in query and "bool success" in query
    perceive = workspace.check("ros2 interface show segaff_msgs/action/Perceive")
    goal, result, feedback = perceive.split("---")
    assert "string instruction" in goal and "frames" in goal and "timeout_s" in goal
    assert "segaff_msgs/AffordanceResult result" in result
    assert "AffordanceResult" in feedback
