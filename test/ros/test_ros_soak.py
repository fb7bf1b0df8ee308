"""A half-minute soak (bench/soak.py) as a test: 30 Hz synchronized input into a node process; its memory,
latency and output must stay steady (generous bounds: a shared two-core machine)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")
pytest.importorskip("psutil")

from ros_helpers import REPO_ROOT  # noqa: E402

pytestmark = pytest.mark.ros

MINUTES = 0.5
WINDOW_S = 10.0
RATE_HZ = 30.0
MAX_RSS_GROWTH_MB = 50.0


def test_soak_keeps_memory_latency_and_output_steady(small_checkpoint: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    command = [
        sys.executable, str(REPO_ROOT / "bench" / "soak.py"), "--checkpoint", str(small_checkpoint),
        "--device", "cpu", "--input", "64", "--threads", "1", "--rate-hz", str(RATE_HZ),
        "--minutes", str(MINUTES), "--window-s", str(WINDOW_S), "--max-rss-growth-mb", str(MAX_RSS_GROWTH_MB),
        "--json", str(report_path), "--node-log", str(tmp_path / "node.log"),
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    printed = f"{run.stdout[-4000:]}\n{run.stderr[-3000:]}"
    assert report_path.is_file(), f"the soak did not finish (exit {run.returncode}):\n{printed}"
    report = json.loads(report_path.read_text())
    windows = report["windows"]

    assert len(windows) == round(MINUTES * 60 / WINDOW_S), printed
    assert report["node_alive"] and report["node_exit_code"] == 0, printed
    assert report["frames_sent"] >= 0.6 * RATE_HZ * MINUTES * 60, f"the soak could not publish at {RATE_HZ} Hz"
    assert all(w["results"] > 0 for w in windows), f"a window without results:\n{printed}"
    growth_mb = windows[-1]["rss_mb"] - windows[0]["rss_mb"]
    assert growth_mb < MAX_RSS_GROWTH_MB, f"RSS grew by {growth_mb:.0f} MB after warm-up:\n{printed}"
    first, last = windows[0]["latency_p50_ms"], windows[-1]["latency_p50_ms"]
    assert last <= 2.0 * first + 500.0, f"latency grows: median {first:.0f} -> {last:.0f} ms:\n{printed}"
    assert windows[-1]["counters"]["failed_frames"] == 0 and windows[-1]["counters"]["bad_frames"] == 0, printed
    assert run.returncode == 0, f"a verdict of the soak failed:\n{printed}"
