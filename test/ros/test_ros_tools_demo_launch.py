"""``ros2 launch segaff_ros demo.launch.py rviz:=false``: the synthetic camera, its static transform and the
node answer the demo's instruction in base_link (every demo launch argument but rviz's default exercised)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tools_helpers import echoed_message, shared_workspace, xyz

pytestmark = [pytest.mark.ros, pytest.mark.ros_tools, pytest.mark.slow]

INSTRUCTION = "open the left door"


def test_demo_launch_answers_its_instruction_in_base_link(tmp_path_factory: pytest.TempPathFactory,
                                                          small_checkpoint: Path) -> None:
    workspace = shared_workspace(tmp_path_factory)
    launch = workspace.start(
        f"ros2 launch segaff_ros demo.launch.py rviz:=false checkpoint:={small_checkpoint} device:=cpu "
        f"backend:=torch target_frame:=base_link instruction:='{INSTRUCTION}' seed:=-1 depth_encoding:=32FC1",
        "demo_launch.log")
    try:
        result = workspace.run("ros2 topic echo --once /segaff_perception/result segaff_msgs/msg/AffordanceResult",
                               timeout_s=120.0, retry_s=0.0)
        assert result.returncode == 0, f"{result}\n--- launch:\n{launch}"
        message = echoed_message(result.output)
        assert message["instruction"] == INSTRUCTION  # the camera publishes it as `ros2 topic pub` would
        assert message["header"]["frame_id"] == "base_link"  # through the camera's static transform
        assert message["mask"]["header"]["frame_id"] == "camera_color_optical_frame"
        assert (message["mask"]["width"], message["mask"]["height"]) == (320, 240)
        point = xyz(message["interaction_pose"]["position"])
        # base_link: x forward, z up; the camera looks along +x from 1 m up, pitched 15 degrees down, so a point
        # it sees lies ahead, within its field of view above or below its height (the random model's point
        # may be anywhere in the image)
        assert 0.1 < point[0] < 10.0 and abs(point[2] - 1.0) < point[0], f"interaction point {point} not in view"
        assert np.linalg.norm(xyz(message["axis"])) == pytest.approx(1.0, abs=1e-3)
        assert re.search(r"scene \d+: viewpoint on \S*door", launch.output()), launch.output()  # seed -1: aimed
        depth = workspace.run("ros2 topic echo --once --no-arr /camera/depth/image sensor_msgs/msg/Image", 60.0)
        assert echoed_message(depth.output)["encoding"] == "32FC1", str(depth)
    finally:
        launch.stop()
