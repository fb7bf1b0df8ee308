"""The demo as a user runs it (``python -m segaff_ros.demo``): two node processes over real DDS, the outputs
it writes, its exit status, and that it never leaves a process behind."""
from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")

import cv2  # noqa: E402
import psutil  # noqa: E402

from ros_helpers import REPO_ROOT, wait_until  # noqa: E402
from segaff_core.visualize import POINT_COLOR  # noqa: E402
from segaff_ros import demo  # noqa: E402
from segaff_ros.synthetic_camera import choose_scene  # noqa: E402

pytestmark = pytest.mark.ros

TIMEOUT_S = 120.0
_PIDS = re.compile(r"synthetic camera \(pid (\d+)\) and the perception node \(pid (\d+)")


def _demo_command(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "segaff_ros.demo", "--checkpoint", str(checkpoint), "--out", str(out), *extra]


def _run_demo(checkpoint: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The demo to its end; ROS_DOMAIN_ID is the test process's own (conftest), one torch thread."""
    return subprocess.run(
        _demo_command(checkpoint, out, *extra), capture_output=True, text=True, timeout=TIMEOUT_S + 60.0,
        cwd=REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def _assert_children_gone(stderr: str) -> None:
    """The camera and the node the demo logged as started no longer run (nor linger as zombies)."""
    match = _PIDS.search(stderr)
    assert match, f"the demo did not log its processes:\n{stderr}"
    for pid in map(int, match.groups()):
        try:
            status = psutil.Process(pid).status()
        except psutil.NoSuchProcess:
            continue
        assert status == psutil.STATUS_ZOMBIE, f"process {pid} still runs after the demo ended"


def test_demo_writes_the_overlay_and_the_result(small_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    completed = _run_demo(small_checkpoint, out, "--num-results", "1", "--timeout", str(TIMEOUT_S), "--device", "cpu")
    report = f"exit {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, report
    _assert_children_gone(completed.stderr)
    for module in ("segaff_ros.synthetic_camera", "segaff_ros.perception_node"):
        assert f"{module} stopped (exit code 0)" in completed.stderr, f"{module} did not stop cleanly:\n{report}"
    assert "SegAffordance answered 'open the top drawer'" in completed.stdout, report

    overlay = cv2.imread(str(out / "overlay.png"), cv2.IMREAD_UNCHANGED)
    assert overlay is not None and overlay.shape == (240, 320, 3) and overlay.dtype == np.uint8
    assert overlay.std() > 5.0, "the overlay is blank"

    result = json.loads((out / "result.json").read_text())
    assert result["instruction"] == "open the top drawer"
    assert result["frame_id"] == "camera_color_optical_frame"
    assert result["stamp"]["sec"] > 0 and 0 <= result["stamp"]["nanosec"] < 1_000_000_000
    assert 0.0 <= result["mask_score"] <= 1.0 and 0 < result["mask_pixels"] <= 320 * 240
    u, v = result["interaction_px"]
    assert 0 <= u < 320 and 0 <= v < 240
    marker_bgr = overlay[int(round(v)), int(round(u))].astype(int)  # the overlay marks the result's point
    assert np.abs(marker_bgr - np.array(POINT_COLOR[::-1])).max() < 30, marker_bgr
    position = np.array(result["interaction_pose"]["position"])
    assert 0.1 < position[2] < 10.0  # in front of the camera, within the node's depth range
    assert np.linalg.norm(result["interaction_pose"]["orientation_xyzw"]) == pytest.approx(1.0, abs=1e-6)
    assert np.linalg.norm(result["approach"]) == pytest.approx(1.0, abs=1e-6)
    assert result["motion_type"] in ("translation", "rotation")
    assert 0.5 <= result["motion_type_confidence"] <= 1.0  # the more likely of two types
    assert np.linalg.norm(result["axis"]) == pytest.approx(1.0, abs=1e-5)
    assert len(result["origin"]) == 3
    trajectory = np.array(result["trajectory"])
    assert trajectory.shape == (20, 3)
    np.testing.assert_allclose(trajectory[0], position, atol=1e-5)
    assert result["inference_time_ms"] > 0.0

    run = result["demo"]
    assert run["scene_seed"] == choose_scene("open the top drawer") and run["scene_has_the_named_part"]
    assert run["num_results"] >= 1 and run["image_size"] == [320, 240]
    assert 0.0 < run["latency_ms"] < 1000.0 * TIMEOUT_S and 0.0 < run["first_result_s"] < TIMEOUT_S
    assert f"scene {run['scene_seed']}: viewpoint on" in (out / "camera.log").read_text()


def test_a_node_that_cannot_configure_fails_the_demo_with_its_log(small_checkpoint: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint" * 64)
    started = time.monotonic()
    completed = _run_demo(garbage, tmp_path / "demo", "--timeout", str(TIMEOUT_S))
    assert completed.returncode == demo.EXIT_FAILED, completed.stderr
    assert "the perception node could not be configured" in completed.stderr, completed.stderr
    assert "configure failed: cannot load checkpoint" in completed.stderr, "the node's log tail is missing"
    assert time.monotonic() - started < TIMEOUT_S, "the demo waited for its timeout instead of the node's reason"
    assert "Traceback" not in completed.stderr
    _assert_children_gone(completed.stderr)
    assert not (tmp_path / "demo" / "result.json").exists()


def test_ctrl_c_stops_both_processes(small_checkpoint: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        # More results than it can get before the interrupt: the demo cannot end by itself first.
        _demo_command(small_checkpoint, tmp_path / "demo", "--timeout", str(TIMEOUT_S), "--num-results", "100000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        # Ctrl-C as in a terminal: a test run started in the background ('cmd &' without job control)
        # inherits SIGINT ignored, and so would the demo, which then never sees the interrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Both node processes run: interrupt the demo while it waits (starting or answering).
        assert wait_until(lambda: len(psutil.Process(process.pid).children()) == 2, 60.0), "no node processes"
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == demo.EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr
    assert stderr.count(" stopped (exit code ") == 2, f"the demo did not stop both processes itself:\n{stderr}"
    _assert_children_gone(stderr)


def test_missing_default_checkpoint_is_a_clear_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(["--checkpoint", str(tmp_path / "missing.ckpt")])
    assert exit_info.value.code == 2


def test_demo_matches_the_launch_file_and_the_core() -> None:
    from segaff_core.checkpoint import DEFAULT_CHECKPOINT

    assert demo.DEFAULT_CHECKPOINT == DEFAULT_CHECKPOINT
    tree = ast.parse((REPO_ROOT / "launch" / "demo.launch.py").read_text())
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert {demo.CAMERA_NAMESPACE, demo.INSTRUCTION_TOPIC, demo.DEFAULT_INSTRUCTION} <= strings
