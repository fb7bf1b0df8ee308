"""Pipeline counters and their DiagnosticStatus, without DDS."""
from __future__ import annotations

import pytest

pytest.importorskip("diagnostic_msgs.msg", reason="diagnostic_msgs (ROS 2 wheel) is not installed")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from segaff_ros.diagnostics import PipelineStats, to_diagnostic_status  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_window_rates_latency_and_totals() -> None:
    clock = FakeClock()
    stats = PipelineStats(["rgb", "depth"], clock=clock)
    for _ in range(30):
        stats.count("frames_in")
    for _ in range(20):
        stats.count("dropped_replaced")
    stats.processed(latency_ms=100.0, inference_ms=60.0)
    stats.processed(latency_ms=300.0, inference_ms=80.0)
    clock.now += 2.0
    snapshot = stats.snapshot()
    assert snapshot.window_s == pytest.approx(2.0)
    assert snapshot.input_hz == pytest.approx(15.0)
    assert snapshot.processed_hz == pytest.approx(1.0)
    assert snapshot.latency_mean_ms == pytest.approx(200.0)
    assert snapshot.latency_max_ms == pytest.approx(300.0)
    assert snapshot.inference_mean_ms == pytest.approx(70.0)
    assert (snapshot.frames_in, snapshot.frames_processed, snapshot.dropped_replaced) == (30, 2, 20)
    assert "input 15.0 Hz" in snapshot.summary()

    clock.now += 1.0
    quiet = stats.snapshot()  # the window restarts, the totals stay
    assert quiet.input_hz == 0.0 and quiet.processed_hz == 0.0 and quiet.latency_max_ms == 0.0
    assert quiet.frames_in == 30 and quiet.frames_processed == 2


def test_status_levels() -> None:
    clock = FakeClock()
    stats = PipelineStats(["rgb/image", "depth/image", "rgb/camera_info"], clock=clock)
    clock.now += 1.0
    idle = to_diagnostic_status(stats.snapshot(), "perception", "hw", processing=False)
    assert idle.level == DiagnosticStatus.OK and "idle" in idle.message

    stats.count("frames_in")
    stats.count("bad_frames")
    clock.now += 1.0
    bad = to_diagnostic_status(stats.snapshot(), "perception", "hw", processing=True)
    assert bad.level == DiagnosticStatus.WARN and "1 bad" in bad.message
    assert {kv.key: kv.value for kv in bad.values}["bad_frames"] == "1"

    stats.count("frames_in")
    clock.now += 1.0
    recovered = to_diagnostic_status(stats.snapshot(), "perception", "hw", processing=True)
    assert recovered.level == DiagnosticStatus.OK, "a bad frame in an earlier window must not warn forever"

    for _ in range(5):
        stats.input_received("rgb/image")
        stats.input_received("depth/image")
    clock.now += 1.0
    snapshot = stats.snapshot()
    assert snapshot.unsynchronized()
    unsynced = to_diagnostic_status(snapshot, "perception", "hw", processing=True)
    assert unsynced.level == DiagnosticStatus.WARN
    assert "rgb/camera_info: 0" in unsynced.message and "do not synchronize" in unsynced.message


def test_a_node_that_is_not_active_reports_its_lifecycle_state_and_its_totals() -> None:
    clock = FakeClock()
    stats = PipelineStats(["rgb/image"], clock=clock)
    stats.count("bad_frames")
    stats.count("dropped_no_transform")
    clock.now += 1.0
    status = to_diagnostic_status(stats.snapshot(), "perception", "hw", processing=True, lifecycle_state="inactive")
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK and status.message == "inactive (not processing)"
    assert (values["lifecycle_state"], values["bad_frames"], values["dropped_no_transform"]) == ("inactive", "1", "1")


def test_frames_without_a_transform_warn() -> None:
    clock = FakeClock()
    stats = PipelineStats(["rgb/image"], clock=clock)
    stats.count("frames_in")
    stats.count("dropped_no_transform")
    clock.now += 1.0
    status = to_diagnostic_status(stats.snapshot(), "perception", "hw", processing=True)
    assert status.level == DiagnosticStatus.WARN and "1 frames skipped without a transform" in status.message
    assert {kv.key: kv.value for kv in status.values}["lifecycle_state"] == "active"
