import re, time
import pytest
from tools_helpers import TestNode, shared_workspace
from test_ros_tools_readme_launch import CAMERA, README_LAUNCH, README_INSTRUCTION, NODE, OUTPUT_TYPES, INSTRUCTION

@pytest.mark.parametrize("i", range(6))
def test_stop(tmp_path_factory, i):
    ws = shared_workspace(tmp_path_factory)
    camera = ws.start(CAMERA, f"c{i}.log"); launch = ws.start(README_LAUNCH, f"l{i}.log"); ins = ws.start(README_INSTRUCTION, f"i{i}.log")
    client = TestNode(f"g{i}")
    try:
        first = ws.run(f"ros2 topic echo --once {NODE}/result {OUTPUT_TYPES['result']}", timeout_s=120.0, retry_s=0.0)
        assert first.returncode == 0
        fb, res, st = client.send_perceive_goal(f"{NODE}/perceive", INSTRUCTION, frames=100, timeout_s=60.0, cancel_after_feedback=2)
        if i % 2:
            ws.check(f"ros2 action send_goal --feedback {NODE}/perceive segaff_msgs/action/Perceive \"{{instruction: '{INSTRUCTION}', frames: 3, timeout_s: 10.0}}\"", timeout_s=60.0)
        t = time.monotonic()
        code = launch.stop()
        print("stop took", time.monotonic() - t)
        log = launch.output()
        assert re.search(r"\[perception_node-1\]: process has finished cleanly", log), log
    finally:
        client.close()
        for c in (ins, camera, launch): c.stop()
